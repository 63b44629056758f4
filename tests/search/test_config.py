"""Study config validation: one-line errors naming the key and what is valid."""
from __future__ import annotations

import re

import pytest
import yaml

from hypersweep.models.errors import UserError
from hypersweep.search.config import apply_overrides, load_config, parse_config
from tests.conftest import quickstart


def error_for(write_config, raw, *sets: str) -> str:
    path = write_config(raw)
    with pytest.raises(UserError) as e:
        load_config(path, sets)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def with_(path: str, value):
    raw = quickstart()
    return apply_overrides(raw, [f"{path}={value}"])


def test_quickstart_is_valid(write_config):
    cfg = load_config(write_config(quickstart()))
    assert cfg.model == "mlp" and cfg.search.strategy == "tpe"
    assert cfg.search.objectives[0].metric == "val_accuracy"


def test_unknown_top_level_key_suggests_the_right_one(write_config):
    raw = quickstart()
    raw["serach"] = raw.pop("search")
    msg = error_for(write_config, raw)
    assert msg.startswith("serach: unknown key (did you mean 'search'?)")
    assert "valid:" in msg and "space" in msg


def test_unknown_nested_key(write_config):
    msg = error_for(write_config, with_("search.trails", 3))
    assert msg.startswith("search.trails: unknown key (did you mean 'trials'?)")


def test_unknown_builder_lists_registry(write_config):
    msg = error_for(write_config, with_("model", "mpl"))
    assert msg.startswith("model: unknown builder 'mpl' (did you mean 'mlp'?)")
    assert "linear" in msg


def test_unknown_hyperparameter_in_space(write_config):
    raw = quickstart()
    raw["space"]["widht"] = {"int": [1, 4]}
    msg = error_for(write_config, raw)
    assert msg.startswith("space.widht: unknown hyperparameter 'widht' (did you mean 'width'?)")


def test_low_not_below_high(write_config):
    raw = quickstart()
    raw["space"]["depth"] = {"int": [4, 1]}
    msg = error_for(write_config, raw)
    assert msg.startswith("space.depth") and "4" in msg and "1" in msg


def test_log_range_with_nonpositive_low(write_config):
    raw = quickstart()
    raw["space"]["lr"] = {"loguniform": [0.0, 0.1]}
    msg = error_for(write_config, raw)
    assert msg.startswith("space.lr") and "> 0" in msg


def test_wrong_type_in_params(write_config):
    msg = error_for(write_config, with_("params.epochs", "many"))
    assert msg.startswith("params.epochs: expected an integer")


def test_wrong_type_in_schema(write_config):
    msg = error_for(write_config, with_("search.trials", "lots"))
    assert msg.startswith("search.trials:") and "'lots'" in msg


@pytest.mark.parametrize("key,value,bound", [
    ("search.seed", -1, "must be >= 0, got -1"),
    ("search.seed", 2 ** 32, "must be <= 4294967295, got 4294967296"),
    ("data.split_seed", -1, "must be >= 0, got -1"),
])
def test_seeds_outside_what_numpy_takes(write_config, key, value, bound):
    """A seed numpy's samplers or scikit-learn's split refuse is bad input, named by
    its key (it traced back from inside Optuna, or blamed data.val_fraction)."""
    msg = error_for(write_config, with_(key, value))
    assert msg.startswith(f"{key}:") and bound in msg
    load_config(write_config(with_(key, 2 ** 32 - 1)))      # the largest is valid


@pytest.mark.parametrize("key,value,message", [
    # A key that takes several types: each is named, not pydantic's tag for it.
    ("resources.parallel", "abc", "resources.parallel: expected an integer or 'auto', got 'abc'"),
    ("search.objective", 5, "search.objective: expected a mapping or a list, got 5"),
    # The type the input meant: the error inside it.
    ("search.objective", [5], "search.objective[0]: expected a mapping, got 5"),
    ("search.objective", {"metrik": "val_loss"},
     "search.objective.metrik: unknown key (did you mean 'metric'?); valid: metric, direction"),
    # Plain words, not pydantic's (its class names, its "Value error, ").
    ("search.pruner", 5, "search.pruner: expected a mapping, got 5"),
    ("search.deterministic", "maybe", "search.deterministic: expected true or false, got 'maybe'"),
    ("search.trials", 1.5, "search.trials: expected an integer, got 1.5"),
    ("resources.parallel", 0, "resources.parallel: must be >= 1 or 'auto', got 0"),
])
def test_type_errors_name_the_key_and_the_types_it_takes(write_config, key, value, message):
    assert error_for(write_config, with_(key, value)) == message


def test_bad_choice_for_a_literal_hyperparameter(write_config):
    msg = error_for(write_config, with_("params.activation", "relu6"))
    assert msg.startswith("params.activation: unknown value 'relu6' (did you mean 'relu'?)")


def test_unknown_strategy_and_pruner(write_config):
    assert error_for(write_config, with_("search.strategy", "tpee")).startswith(
        "search.strategy: unknown strategy 'tpee' (did you mean 'tpe'?)")
    assert error_for(write_config, with_("search.pruner", "meadian")).startswith(
        "search.pruner: unknown pruner 'meadian' (did you mean 'median'?)")


def test_objective_must_be_a_metric_the_task_reports(write_config):
    msg = error_for(write_config, with_("search.objective.metric", "val_acc"))
    assert msg.startswith("search.objective.metric: unknown metric 'val_acc'")
    assert "val_accuracy" in msg


def test_unknown_dataset(write_config):
    msg = error_for(write_config, with_("data.name", "digit"))
    assert msg.startswith("data.name: unknown dataset 'digit' (did you mean 'digits'?)")


def test_missing_required_key(write_config):
    raw = quickstart()
    del raw["model"]
    assert error_for(write_config, raw) == "model: required key is missing"


def test_same_name_fixed_and_searched(write_config):
    msg = error_for(write_config, with_("params.lr", 0.01))
    assert msg.startswith("params.lr: fixed in params and searched in space")


def test_missing_file_and_malformed_yaml(tmp_path, write_config):
    with pytest.raises(UserError, match="no such study config file"):
        load_config(tmp_path / "nope.yaml")
    bad = write_config("study: x\nmodel: [mlp\n", name="bad.yaml")
    with pytest.raises(UserError, match=r"malformed YAML \(line \d+, column \d+\)"):
        load_config(bad)
    tabbed = write_config("study: x\nparams:\n\tepochs: 2\n", name="tabbed.yaml")
    with pytest.raises(UserError) as e:
        load_config(tabbed)
    assert str(e.value) == (f"{tabbed}: malformed YAML (line 3, column 1): found character "
                            "'\\t' that cannot start any token; YAML takes spaces, not tabs, to "
                            "indent (and before a # comment)")
    # A directory, a binary file, an empty file: named as such (the binary traced back).
    binary = tmp_path / "model.pt"
    binary.write_bytes(bytes(range(256)))
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    for path, message in ((tmp_path, "a directory; give a study config file (YAML)"),
                          (binary, "not a text file; a study config is YAML (UTF-8)"),
                          (empty, "the file is empty; a study config is a YAML mapping")):
        with pytest.raises(UserError, match="^" + re.escape(f"{path}: {message}")):
            load_config(path)


def test_overrides_parse_values_as_yaml():
    raw = apply_overrides(quickstart(), ["params.epochs=5", "search.objective.direction=minimize",
                                         "space.depth={int: [1, 2]}"], trials=3, seed=11)
    cfg = parse_config(raw)
    assert cfg.params["epochs"] == 5 and cfg.search.trials == 3 and cfg.search.seed == 11
    assert cfg.space["depth"] == {"int": [1, 2]}
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        apply_overrides(quickstart(), ["params.epochs"])


def test_overrides_reach_into_lists_and_names_given_alone():
    """`--set search.objective.1.direction=...` said "search.objective is not a
    mapping"; `--set data.name=...` on `data: digits` said "data is not a mapping"."""
    two = [{"metric": "val_accuracy", "direction": "maximize"},
           {"metric": "param_count", "direction": "minimize"}]
    raw = {**quickstart(), "data": "digits", "search": {"objective": two, "pruner": "asha"}}
    out = apply_overrides(raw, ["search.objective.1.direction=maximize", "data.name=moons",
                                "data.options.n=100", "search.pruner.min_resource=2"])
    assert out["search"]["objective"][1] == {"metric": "param_count", "direction": "maximize"}
    assert out["data"] == {"name": "moons", "options": {"n": 100}}
    assert out["search"]["pruner"] == {"name": "asha", "min_resource": 2}
    assert raw["search"]["objective"][1]["direction"] == "minimize"    # the config's, untouched
    for item, error in (
            ("search.objective.2.direction=maximize", "--set search.objective.2.direction: "
             "search.objective is a list of 2; give an index from 0 to 1 (search.objective.0...), "
             "or set the whole list"),
            ("search.objective.metric=val_loss", "--set search.objective.metric: "
             "search.objective is a list of 2;"),
            ("study.name=x", "--set study.name: study is not a mapping")):
        with pytest.raises(UserError) as e:
            apply_overrides(raw, [item])
        assert str(e.value).startswith(error), str(e.value)


def test_no_space_means_the_builders_default_space(write_config):
    raw = quickstart()
    del raw["space"]
    raw["params"]["dropout"] = 0.1
    cfg = load_config(write_config(raw))
    assert cfg.space["lr"] == {"loguniform": [1.0e-4, 1.0e-1]}
    assert "dropout" not in cfg.space and cfg.params["dropout"] == 0.1
    assert "space:" in cfg.to_yaml()


def test_every_default_space_is_valid_for_its_builder():
    from hypersweep.models.registry import builder_names
    from hypersweep.models.train import hyperparameters
    from hypersweep.spaces import check_against, parse_space
    from hypersweep.spaces.defaults import builders_with_defaults, default_space

    assert set(builders_with_defaults()) <= set(builder_names())
    for name in builder_names():
        raw = default_space(name)
        assert raw, f"builder {name} has no default space"
        check_against(parse_space(raw), hyperparameters(name))


@pytest.mark.parametrize("model,data,metric,other_task_metric", [
    ("mlp", "diabetes", "val_mse", "val_accuracy"),          # the dataset decides
    ("rnn", "copy", "val_sequence_accuracy", "val_accuracy"),
    ("char_lm", "text", "val_bpc", "val_accuracy"),
    ("seq2seq", "reverse", "val_token_accuracy", "val_mse"),
])
def test_objectives_come_from_the_task_the_trials_train(write_config, model, data, metric,
                                                        other_task_metric):
    from hypersweep.search.config import natural_direction
    raw = {"study": "s", "model": model, "data": {"name": data}, "space": {},
           "params": {"head": "many_to_many"} if model == "rnn" else {},
           "search": {"objective": {"metric": metric,
                                    "direction": natural_direction(metric)}}}
    assert load_config(write_config(raw)).search.objectives[0].metric == metric
    msg = error_for(write_config, raw, f"search.objective.metric={other_task_metric}")
    assert msg.startswith(f"search.objective.metric: unknown metric '{other_task_metric}'")
    assert metric in msg


def test_data_options_are_checked_before_any_trial(write_config):
    raw = quickstart()
    raw["data"] = {"name": "adding", "options": {"lenght": 20}}
    assert error_for(write_config, raw).startswith(
        "data.options.lenght: unknown option 'lenght' (did you mean 'length'?)")
    raw["data"] = {"name": "text", "options": {"path": "/no/such/corpus.txt"}}
    assert error_for(write_config, raw) == ("data.options.path: no such text file: "
                                            "/no/such/corpus.txt")


@pytest.mark.parametrize("model,data,params,message", [
    ("lenet", "seq_digits", {}, "model: lenet needs images"),
    ("char_lm", "digits", {}, "model: char_lm needs windows"),
    # kernel is not in params: its default is named, not a key the user never wrote
    ("lenet", "digits", {"padding": "valid"}, "kernel (its default, 5): a 5x5 kernel"),
    # the head at its default is the knob to change: named as kernel's is (it said model:)
    ("gru", "copy", {}, "head (its default, 'many_to_one'): sequence_transduction needs one "
                        "output per time step"),
    ("gru", "copy", {"head": "many_to_one"}, "params.head: sequence_transduction needs one"),
    ("mlp", "copy", {}, "model: sequence_transduction needs one output per time step"),  # no head
])
def test_a_model_that_cannot_fit_the_data_is_refused_before_the_study(
        write_config, model, data, params, message):
    raw = {"study": "s", "model": model, "data": {"name": data}, "params": params,
           "space": {"lr": {"loguniform": [1e-3, 1e-1]}}}
    assert error_for(write_config, raw).startswith(message)


def test_searched_builder_knobs_may_still_fit(write_config):
    # Some sampled kernels fit 8x8 digits with valid padding: the trials decide.
    raw = {"study": "s", "model": "lenet", "data": {"name": "digits"},
           "params": {"padding": "valid"}, "space": {"kernel": {"int": [1, 5]}}}
    assert load_config(write_config(raw)).params["padding"] == "valid"
    raw["data"] = {"name": "seq_digits"}        # but no kernel makes a CNN take sequences
    assert error_for(write_config, raw).startswith("model: lenet needs images")


def test_augmenting_sequences_is_refused_at_validation(write_config):
    raw = {"study": "s", "model": "rnn", "data": {"name": "seq_digits"},
           "params": {"augment": "flip"}, "space": {"lr": {"loguniform": [1e-3, 1e-1]}}}
    assert error_for(write_config, raw).startswith("params.augment: 'flip' needs images")


def test_a_mismatch_counts_even_when_other_knobs_are_searched(write_config):
    raw = {"study": "s", "model": "rnn", "data": {"name": "copy"},
           "params": {"head": "many_to_one"}, "space": {"hidden": {"int": [8, 16]}},
           "search": {"objective": {"metric": "val_token_accuracy", "direction": "maximize"}}}
    assert "head: many_to_many" in error_for(write_config, raw)
    raw["params"] = {}
    raw["space"]["head"] = {"choice": ["many_to_one", "many_to_many"]}
    assert load_config(write_config(raw)).space["head"]      # searched: the trials decide


HEAD_MISFIT = ("classification needs one output per sample for targets of shape (2,); the model "
               "gives one per time step, (2, 8, 10) (for rnn/lstm/gru set head: many_to_one)")
KERNEL_MISFIT = ("a 9x9 kernel (stride 1, padding valid) does not fit the 8x8 feature map of "
                 "lenet's conv 1; use padding: same, a smaller kernel or stride")


@pytest.mark.parametrize("model, data, params, space, message", [
    ("rnn", "seq_digits", {}, {"head": "many_to_many"}, f"space.head: {HEAD_MISFIT}"),
    ("rnn", "seq_digits", {}, {"head": {"fixed": "many_to_many"}}, f"space.head: {HEAD_MISFIT}"),
    ("rnn", "seq_digits", {}, {"head": {"choice": ["many_to_many"]}},
     f"space.head: {HEAD_MISFIT}"),
    ("rnn", "seq_digits", {}, {"head": {"choice": {"many_to_many": {"hidden": 8}}}},
     f"space.head: {HEAD_MISFIT}"),                         # a conditional of one branch
    ("lenet", "digits", {"padding": "valid"}, {"kernel": {"choice": [9]}},
     f"space.kernel: {KERNEL_MISFIT}"),
    ("lenet", "digits", {}, {"padding": "valid", "kernel": 9}, f"space.kernel: {KERNEL_MISFIT}"),
])
def test_a_value_the_space_fixes_is_tried_on_the_data_as_params_are(
        write_config, model, data, params, space, message):
    """Counted as searched, a misfit value the space fixed passed validation, and
    every trial failed on it; under params it was refused."""
    raw = {"study": "s", "model": model, "data": data, "params": params,
           "space": {**space, "lr": {"loguniform": [1e-3, 1e-1]}}}
    assert error_for(write_config, raw) == message


@pytest.mark.parametrize("model, data, params, space", [
    ("rnn", "seq_digits", {}, {"head": {"choice": ["many_to_one", "many_to_many"]}}),
    ("rnn", "seq_digits", {}, {"head": {"choice": {"many_to_many": {"hidden": 8},
                                                    "many_to_one": {}}}}),
    ("lenet", "digits", {"padding": "valid"}, {"kernel": {"choice": [3, 9]}}),
    ("lenet", "digits", {}, {"padding": "valid", "kernel": {"int": [3, 9]}}),
])
def test_the_same_value_searched_among_values_that_fit_stays_valid(
        write_config, model, data, params, space):
    raw = {"study": "s", "model": model, "data": data, "params": params, "space": space}
    assert load_config(write_config(raw)).space == space


@pytest.mark.parametrize("space, message", [
    ({"cell": {"choice": {"lstm": {"head": "many_to_many"}, "gru": {}}}},
     f"space.cell.choice.lstm.head: {HEAD_MISFIT}"),
    ({"optimizer": {"choice": {"adam": {"padding": "valid", "kernel": {"choice": [9]}},
                               "sgd": {}}}},
     f"space.optimizer.choice.adam.kernel: {KERNEL_MISFIT}"),
    ({"optimizer": {"choice": {"adam": {"padding": "valid",
                                        "pool": {"choice": {"max": {"kernel": 9}, "avg": {}}}},
                               "sgd": {}}}},
     f"space.optimizer.choice.adam.pool.choice.max.kernel: {KERNEL_MISFIT}"),
    # Fixed in one branch and searched in the other: the trials of the first all fail.
    ({"optimizer": {"choice": {"adam": {"kernel": 9, "padding": "valid"},
                               "sgd": {"kernel": {"int": [3, 5]}}}}},
     f"space.optimizer.choice.adam.kernel: {KERNEL_MISFIT}"),
    # With the branch's own choice: fixed too, in every trial of the branch
    ({"padding": {"choice": {"valid": {"kernel": 9}, "same": {"kernel": {"int": [3, 5]}}}}},
     f"space.padding.choice.valid.kernel: {KERNEL_MISFIT}"),
    ({"kernel": {"choice": {3: {}, 9: {"padding": "valid"}}}},
     f"space.kernel.choice.9: {KERNEL_MISFIT}"),
])
def test_a_value_a_branch_fixes_is_tried_on_the_data_in_that_branch(write_config, space,
                                                                    message):
    """Every trial of the branch takes it, with the branch's condition: tried so."""
    model, data = ("rnn", "seq_digits") if "cell" in space else ("lenet", "digits")
    raw = {"study": "s", "model": model, "data": data, "space": space}
    assert error_for(write_config, raw) == message
    # Where the condition's value alone cannot fit (head: many_to_many, which the
    # branch's hidden does not change), it is a searched value's error: the trials'.
    raw = {"study": "s", "model": "rnn", "data": "seq_digits", "space": {
        "head": {"choice": {"many_to_many": {"hidden": 8}, "many_to_one": {"hidden": 16}}}}}
    assert load_config(write_config(raw))


def test_store_urls_are_shown_and_stored_without_their_password():
    from hypersweep.search.config import without_password
    assert without_password("postgresql://u:p@ss@db.internal:5432/optuna?sslmode=require") == \
        "postgresql://u:***@db.internal:5432/optuna?sslmode=require"
    assert without_password("http://u:secret@mlflow.internal:5000") == "http://u:***@mlflow.internal:5000"
    for url in ("sqlite:///optuna.db", "sqlite:////abs/mlflow.db", "postgresql://u@db/optuna",
                "http://mlflow.internal:5000"):
        assert without_password(url) == url


def test_relative_files_are_made_absolute_where_the_command_runs(write_config, tmp_path, monkeypatch):
    """The config is stored with the study and read back by `resume`, `rerun` and
    `final` from wherever they run: relative store files and data paths are taken
    against the directory of the command that read the config."""
    from hypersweep.search.config import absolute_url
    raw = quickstart()
    raw["tracking"] = {"uri": "sqlite:///runs/mlflow.db?timeout=30", "storage": "sqlite:///optuna.db"}
    raw["data"] = {"name": "text", "options": {"path": "corpus.txt"}}
    raw["model"], raw["params"], raw["space"] = "char_lm", {"epochs": 1}, {}
    raw["search"]["objective"] = {"metric": "val_bpc", "direction": "minimize"}
    path = write_config(raw)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("some text to model, " * 100)
    cfg = load_config(path)
    assert cfg.tracking.uri == f"sqlite:///{tmp_path}/runs/mlflow.db?timeout=30"
    assert cfg.tracking.storage == f"sqlite:///{tmp_path}/optuna.db"
    assert cfg.data.options["path"] == str(tmp_path / "corpus.txt")
    assert parse_config(cfg.snapshot()) == cfg          # read back elsewhere: unchanged
    for url in ("sqlite:////abs/x.db", "sqlite://", "sqlite:///:memory:", "postgresql://u@db/optuna",
                "http://127.0.0.1:5000", "databricks", "file:///abs/mlruns"):
        assert absolute_url(url) == url
    assert absolute_url("sqlite+pysqlite:///x.db") == f"sqlite+pysqlite:///{tmp_path}/x.db"
    assert absolute_url("file:mlruns") == absolute_url("./mlruns") == (tmp_path / "mlruns").as_uri()
    # `..` resolved: the name stored is the file opened
    (tmp_path / "runs").mkdir()
    assert absolute_url("sqlite:///runs/../x.db") == f"sqlite:///{tmp_path}/x.db"
    cfg = load_config(path, ["data.options.path=runs/../corpus.txt"])
    assert cfg.data.options["path"] == str(tmp_path / "corpus.txt")


def test_a_missing_objective_for_a_task_without_accuracy_says_it_was_not_set(write_config):
    """The default objective is classification's val_accuracy: for another task the
    error named a key the config does not have."""
    raw = {"study": "ae", "model": "autoencoder", "data": {"name": "digits"}, "params": {"epochs": 1}}
    msg = error_for(write_config, raw)
    assert msg.startswith("search.objective: not set, and the default (val_accuracy) is not a "
                          "metric of this model's task; set one, e.g. search.objective: "
                          "{metric: val_loss, direction: minimize}; valid metrics: ")
    assert "val_mse" in msg
    raw["search"] = {"objective": {"metric": "val_loss", "direction": "minimize"}}
    assert load_config(write_config(raw)).search.objectives[0].metric == "val_loss"


def test_a_parameter_fixed_and_searched_inside_a_branch(write_config):
    """The branch's value would silently win over the fixed one."""
    msg = error_for(write_config, quickstart(),
                    "space.optimizer={choice: {adam: {epochs: {int: [3, 4]}}, sgd: {}}}")
    assert msg == ("params.epochs: fixed in params and searched in "
                   "space.optimizer.choice.adam.epochs; keep one")


@pytest.mark.parametrize("override, message", [
    ("space.dropout={uniform: [0.1, 1.5]}", "space.dropout: must be in [0, 1), got 1.5"),
    ("space.depth={int: [-3, 2]}", "space.depth: must be >= 0, got -3"),
    ("space.width={intlog: [1, 8]}", None),                 # a valid range stays valid
    ("space.lr={uniform: [0.0, 0.1]}", "space.lr: must be > 0, got 0.0"),
    ("space.optimizer={choice: {momentum: {momentum: {uniform: [0.5, 1.2]}}, adam: {}}}",
     "space.optimizer.choice.momentum.momentum: must be in [0, 1), got 1.2"),
    # each choice, each fixed value, each value a branch fixes
    ("space.dropout={choice: [0.0, 1.5]}", "space.dropout: must be in [0, 1), got 1.5"),
    ("space.lr={choice: [0.01, -0.01]}", "space.lr: must be > 0, got -0.01"),
    ("space.dropout={fixed: 1.5}", "space.dropout: must be in [0, 1), got 1.5"),
    ("space.dropout=1.5", "space.dropout: must be in [0, 1), got 1.5"),
    ("space.optimizer={choice: {adam: {beta2: 1.5}, momentum: {}}}",
     "space.optimizer.choice.adam.beta2: must be in [0, 1), got 1.5"),
    ("space.dropout={choice: [0.0, 0.5]}", None),
    # a schedule's decay factor: above 1 the lr would grow every step
    ("space.schedule={choice: {step: {gamma: {uniform: [0.5, 1.5]}}, constant: {}}}",
     "space.schedule.choice.step.gamma: must be in (0, 1], got 1.5"),
    ("space.schedule={choice: {exponential: {gamma: {uniform: [0.5, 1.0]}}, constant: {}}}",
     None),
])
def test_each_value_the_space_names_is_one_the_hyperparameter_takes(
        write_config, override, message):
    """Out-of-range range ends, choices and fixed values were accepted, and failed
    every trial that drew them."""
    if message is None:
        load_config(write_config(quickstart()), [override])
    else:
        assert error_for(write_config, quickstart(), override) == message


@pytest.mark.parametrize("overrides, message", [
    (["data.name=diabetes", "search.objective={metric: val_loss, direction: minimize}",
      "space.label_smoothing={uniform: [0.0, 0.2]}"],
     "space.label_smoothing: regression has no class labels to smooth; got 0.2, use 0"),
    (["data.name=diabetes", "search.objective={metric: val_loss, direction: minimize}",
      "space.label_smoothing={choice: [0.0]}"], None),      # a choice is not a range
    (["space.label_smoothing={uniform: [0.0, 0.2]}"], None),     # classification smooths
    (["data.name=moons", "space.augment={choice: [none, flip]}"],
     "space.augment: 'flip' needs images (channels, height, width); dataset 'moons' gives (2,)"),
    (["space.augment={choice: [none, flip]}"], None),            # digits are images
])
def test_a_range_of_an_option_the_data_takes_only_at_0_is_refused(write_config, overrides,
                                                                  message):
    """Every trial that drew a value above 0 failed."""
    if message is None:
        load_config(write_config(quickstart()), overrides)
    else:
        assert error_for(write_config, quickstart(), *overrides) == message


def lr_only() -> dict:
    """Quickstart with only the learning rate searched, and no builder params fixed."""
    return {**quickstart(), "params": {"epochs": 2}, "space": {"lr": {"loguniform": [1e-3, 1e-2]}}}


@pytest.mark.parametrize("sets, key", [
    (["params.width=1000000000", "params.depth=1"], "params.width"),
    (["space.width={fixed: 1000000000}", "params.depth=1"], "space.width"),
    (["space.width={choice: [1000000000]}", "params.depth=1"], "space.width"),
])
def test_a_model_too_large_for_memory_is_one_line_naming_its_key(write_config, sets, key):
    """The key is the one the user wrote: a width the space fixes is `space.width`."""
    msg = error_for(write_config, lr_only(), *sets)
    assert msg == (f"{key}: mlp with width 1000000000 has 75,000,000,010 weights (300.0 GB "
                   "as float32), more than this machine's memory holds")


@pytest.mark.parametrize("sets, message", [
    (["space.width={choice: [64, 1000000000]}", "params.depth=1"],
     "space.width: mlp with width 1000000000 has 75,000,000,010 weights (300.0 GB as float32), "
     "more than this machine's memory holds"),
    (["space.width={intlog: [32, 1000000000]}", "params.depth=1"],
     "space.width: mlp with width 1000000000 has 75,000,000,010 weights (300.0 GB as float32), "
     "more than this machine's memory holds"),
    (["space.optimizer={choice: {sgd: {width: {choice: [64, 1000000000]}}, adam: {}}}",
      "params.depth=1"],
     "space.optimizer.choice.sgd.width: mlp with width 1000000000 has 75,000,000,010 weights "
     "(300.0 GB as float32), more than this machine's memory holds"),
    (["space.width={int: [32, 1000000000000000000000]}"],
     "space.width: mlp with width 1000000000000000000000 has more weights than torch can count"),
    (["space.width={int: [32, 200000]}"],     # at the default depth 2: 160 GB
     "space.width: mlp with width 200000 has 40,015,200,010 weights (160.1 GB as float32), "
     "more than this machine's memory holds"),
    # At depth 1, a width of 200,000 has 15 million weights: trials drawing a deeper
    # one fail, each with the words above.
    (["space.width={int: [32, 200000]}", "space.depth={int: [1, 3]}"], None),
    # Lows of the value's own branch only: depth 1 is another branch's, never tanh's.
    (["space={activation: {choice: {relu: {depth: {int: [1, 3]}}, "
      "tanh: {width: {choice: [64, 200000]}}}}, lr: 0.01}"],
     "space.activation.choice.tanh.width: mlp with width 200000 has 40,015,200,010 weights "
     "(160.1 GB as float32), more than this machine's memory holds"),
    (["space={activation: {choice: {relu: {depth: {int: [1, 3]}}, "
      "tanh: {depth: 2, width: {choice: [64, 200000]}}}}, lr: 0.01}"],
     "space.activation.choice.tanh.width: mlp with width 200000 has 40,015,200,010 weights "
     "(160.1 GB as float32), more than this machine's memory holds"),
    # Too large whatever the space draws: the fixed value's error, not the space's,
    # counted at the smallest model the space allows (depth 1).
    (["params.width=1000000000", "space={depth: {int: [1, 2]}, lr: 0.01}"],
     "params.width: mlp with width 1000000000 has 75,000,000,010 weights "
     "(300.0 GB as float32), more than this machine's memory holds"),
    # A branch's fixed depth of 1 meets the width: its trials fit.
    (["space={activation: {choice: {relu: {depth: 1}, tanh: {depth: 3}}}, "
      "width: {choice: [64, 200000]}, lr: 0.01}"], None),
    # A fixed width that fits at the searched depth's low end, not at its default.
    (["params.width=200000", "space={depth: {int: [1, 3]}, lr: 0.01}"], None),
    (["params.width=200000", "space={depth: {choice: [3, 1]}, lr: 0.01}"], None),
    (["params.width=200000", "space={depth: {int: [2, 3]}, lr: 0.01}"],
     "params.width: mlp with width 200000 has 40,015,200,010 weights (160.1 GB as float32), "
     "more than this machine's memory holds"),
    # Every tanh trial is 3 deep: refused, though relu's trials fit.
    (["params.width=200000", "space={activation: {choice: {relu: {depth: 1}, "
      "tanh: {depth: 3}}}, lr: 0.01}"],
     "params.width: mlp with width 200000, depth 3 has 80,015,400,010 weights (320.1 GB as "
     "float32), more than this machine's memory holds"),
    (["params.width=200000", "space={activation: {choice: {relu: {depth: 1}, "
      "tanh: {depth: {int: [1, 3]}}}}, lr: 0.01}"], None),
    # tanh's trials take the default depth, 2.
    (["params.width=200000", "space={activation: {choice: {relu: {depth: {int: [1, 3]}}, "
      "tanh: {}}}, lr: 0.01}"],
     "params.width: mlp with width 200000 has 40,015,200,010 weights (160.1 GB as float32), "
     "more than this machine's memory holds"),
    # Every trial is one deep, in either branch.
    (["params.width=200000", "space={activation: {choice: {relu: {depth: 1}, "
      "tanh: {depth: 1}}}, lr: 0.01}"], None),
    (["params.width=200000", "space={optimizer: {choice: {sgd: {activation: {choice: {relu: "
      "{depth: 1}, tanh: {depth: 3}}}}, adam: {depth: 1}}}, lr: 0.01}"],
     "params.width: mlp with width 200000, depth 3 has 80,015,400,010 weights (320.1 GB as "
     "float32), more than this machine's memory holds"),
])
def test_a_searched_value_whose_model_cannot_fit_in_memory_is_refused(write_config, sets,
                                                                      message):
    """Each trial that drew it failed with torch's allocator text; `validate` passed."""
    if message is None:
        load_config(write_config(lr_only()), sets)
    else:
        assert error_for(write_config, lr_only(), *sets) == message


@pytest.mark.parametrize("sets, message", [
    # Both fixed by the space: a width that fits at the default depth (2), not at 4.
    (["space={width: 20000, depth: 4, lr: 0.01}"],
     "space.width: mlp with width 20000 (at depth 4, the least the space gives) has "
     "1,201,560,010 weights (4.8 GB as float32), more than this machine's memory holds"),
    (["space={width: {choice: [64, 20000]}, depth: {int: [4, 5]}, lr: 0.01}"],
     "space.width: mlp with width 20000 (at depth 4, the least the space gives) has "
     "1,201,560,010 weights (4.8 GB as float32), more than this machine's memory holds"),
    # Counted at depth 1, the least, not the default 2 (4.0 EB).
    (["space={width: {int: [32, 1000000000]}, depth: {int: [1, 3]}, lr: 0.01}"],
     "space.width: mlp with width 1000000000 (at depth 1, the least the space gives) has "
     "75,000,000,010 weights (300.0 GB as float32), more than this machine's memory holds"),
    (["space={width: {choice: [64, 20000]}, depth: {int: [1, 5]}, lr: 0.01}"], None),
])
def test_a_value_is_counted_with_the_others_at_the_least_the_space_gives(
        write_config, monkeypatch, sets, message):
    """Not at the builder's defaults, which a space may never give: a width of 20,000
    fits at the default depth 2 (1.6 GB) of a 4 GB machine, not at depth 4, the
    least of every trial."""
    from hypersweep.models import train
    monkeypatch.setattr(train, "memory_bytes", lambda: 4_000_000_000)
    if message is None:
        load_config(write_config(lr_only()), sets)
    else:
        assert error_for(write_config, lr_only(), *sets) == message


def test_a_model_too_large_for_memory_is_refused_before_it_is_built(monkeypatch):
    """Counted on the meta device first: each layer of 20,000 x 20,000 is allocated
    lazily, and filling the weights of one too many got the process killed. Keyed
    by the config's key of the value (a TooLarge keyed again kept its kind)."""
    from hypersweep.models import train
    monkeypatch.setattr(train, "memory_bytes", lambda: 4_000_000_000)
    built = []
    monkeypatch.setattr(train.torch.nn.Linear, "reset_parameters",
                        lambda self: built.append(self.weight.device.type))
    with pytest.raises(train.TooLarge) as e:
        train.check_fit("mlp", {"name": "digits"}, {"width": 20000, "depth": 4},
                        keys={"width": "space.width", "depth": "space.depth"})
    assert str(e.value).startswith("space.width: mlp with width 20000, depth 4 has "
                                   "1,201,560,010 weights (4.8 GB as float32)")
    assert built and set(built) == {"meta"}


@pytest.mark.parametrize("gb, shown", [(300.0, "300.0 GB"), (4_000_000_304.0, "4.0 EB"),
                                       (1234.5, "1.2 TB"), (0.25, "0.2 GB")])
def test_sizes_are_shown_in_a_unit_of_few_digits(gb, shown):
    from hypersweep.models.train import _gigabytes
    assert _gigabytes(int(gb * 1e9)) == shown


@pytest.mark.parametrize("sets, message", [
    (["data.name=seq_digits", "model=rnn", "params.head=many_to_many"],     # its key, not model
     "params.head: classification needs one output per sample for targets of shape (2,); the "
     "model gives one per time step, (2, 8, 10) (for rnn/lstm/gru set head: many_to_one)"),
    (["data.name=diabetes", "model=gan", "search.objective={metric: val_fid, direction: minimize}"],
     "data.name: generation is scored by a classifier of the data, so it needs a labelled "
     "dataset; 'diabetes' is regression"),
])
def test_a_model_its_data_cannot_train_is_refused_before_any_trial(write_config, sets, message):
    assert error_for(write_config, lr_only(), *sets) == message


LOWER = " (val_loss is better lower: direction: minimize)"


@pytest.mark.parametrize("objective, key, hint", [
    ("{metric: val_loss}", "search.objective.direction", LOWER),
    ("[{metric: val_loss}, {metric: param_count, direction: minimize}]",
     "search.objective[0].direction", LOWER),
    ("{metric: param_count}", "search.objective.direction", ""),   # a cost: either way
])
def test_an_objective_needs_its_direction(write_config, objective, key, hint):
    """`{metric: val_loss}` was maximized: the best trial was the worst one. Where the
    metric has a better side, the message says which."""
    msg = error_for(write_config, quickstart(), f"search.objective={objective}")
    assert msg == f"{key}: required key is missing; valid: maximize, minimize{hint}"


def test_without_an_objective_a_study_maximizes_val_accuracy(write_config):
    raw = quickstart()
    del raw["search"]["objective"]
    (objective,) = load_config(write_config(raw)).search.objectives
    assert (objective.metric, objective.direction) == ("val_accuracy", "maximize")


def test_numbers_in_scientific_notation_are_numbers(write_config):
    """PyYAML reads `1e-4` as a string (YAML 1.1 wants `1.0e-4`): `params` refused it
    while `space` took it."""
    path = write_config("study: sci\nmodel: mlp\nparams: {epochs: 1, weight_decay: 1e-4, lr: 3E-3}\n"
                        "space: {dropout: {uniform: [0, 5e-1]}}\n", name="sci.yaml")
    cfg = load_config(path, ["params.l1=2e-5"])
    assert (cfg.params["weight_decay"], cfg.params["lr"], cfg.params["l1"]) == (1e-4, 3e-3, 2e-5)
    assert cfg.space["dropout"] == {"uniform": [0, 0.5]}


def test_a_key_given_twice_is_an_error(write_config):
    path = write_config("study: a\nmodel: mlp\nmodel: cnn\n", name="twice.yaml")
    with pytest.raises(UserError) as e:
        load_config(path)
    assert str(e.value) == (f"{path}: malformed YAML (line 3, column 1): key 'model' appears "
                            "twice in one mapping")


@pytest.mark.parametrize("text, problem", [
    ("study: x\nmodel: mlp\nparams: {[1]: 2}\n", " (line 3, column 10): found unhashable key"),
    ("? [a, b]\n: 1\n", " (line 1, column 3): found unhashable key"),
    ("study: x\nmodel: mlp\ndescription: " + "[" * 2000 + "]" * 2000 + "\n", ": nested too deeply"),
    ("study: x\nmodel: mlp\nspace: &s {lr: {loguniform: [0.001, 0.1]}, o: {choice: {a: *s}}}\n",
     ": an alias refers to the anchor it is inside (&name ... *name), which nests without end"),
    ("study: x\nmodel: mlp\ndata: &d {name: moons, options: *d}\n",
     ": an alias refers to the anchor it is inside (&name ... *name), which nests without end"),
])
def test_yaml_that_pyyaml_cannot_hold_is_malformed_yaml(write_config, text, problem):
    """A list as a key, nesting deeper than the reader's recursion, and an alias
    inside its own anchor: a traceback (TypeError, RecursionError) before."""
    path = write_config(text, name="odd.yaml")
    with pytest.raises(UserError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: malformed YAML{problem}"


@pytest.mark.parametrize("key", ["search.trials", "search.seed", "search.grid_points",
                                 "resources.parallel", "resources.cpus_per_trial",
                                 "data.val_fraction"])
def test_true_and_false_are_not_numbers(write_config, key):
    """`trials: true` ran one trial: pydantic took YAML's true for 1."""
    msg = error_for(write_config, with_(key, "true"))
    assert msg.startswith(f"{key}: expected a") and msg.endswith(", got true")
    if key == "resources.parallel":     # as for any other value it does not take
        assert msg == "resources.parallel: expected an integer or 'auto', got true"
    assert load_config(write_config(quickstart()), ["search.deterministic=true"])  # a bool key


@pytest.mark.parametrize("name, message", [
    ("'   '", "study: a blank name; give the study a name, got '   '"),
    ('"a\\nb"', "study: a name cannot hold control characters (a newline, a tab, ...), "
                 "got 'a\\nb'"),
])
def test_a_study_name_is_printable(write_config, name, message):
    """A newline in the name split `studies`' table row in two."""
    assert error_for(write_config, with_("study", name)) == message


def test_a_merge_key_takes_the_base_s_keys_and_overrides_some():
    """`<<: *base` was "could not determine a constructor for the tag ...merge"."""
    from hypersweep.search.config import load_yaml
    loaded = load_yaml("params: &p {epochs: 1, lr: 0.1}\n"
                       "space:\n  opt: {choice: {adam: {<<: *p, lr: 0.2}, sgd: {}}}\n")
    assert loaded["space"]["opt"]["choice"]["adam"] == {"epochs": 1, "lr": 0.2}
    with pytest.raises(yaml.YAMLError, match="key 'lr' appears twice"):
        load_yaml("params: {<<: {a: 1}, lr: 0.1, lr: 0.2}\n")


def test_an_alias_used_twice_is_read_once_each_time():
    """Shared, not nested in itself: fine, and walked once (ten levels of ten
    aliases each would be 10**10 values to walk)."""
    from hypersweep.search.config import load_yaml
    levels = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 11))
    loaded = load_yaml("l0: &l0 [1]\n" + levels)
    assert loaded["l10"][0] is loaded["l10"][9] and loaded["l1"] == [[1]] * 10


def test_one_sqlite_file_cannot_be_both_stores(write_config, tmp_path, monkeypatch):
    """It was made an MLflow store, then refused as Optuna storage: a file left behind."""
    monkeypatch.chdir(tmp_path)
    msg = error_for(write_config, quickstart(), "tracking.storage=sqlite:///./mlflow.db?timeout=5")
    assert msg.startswith("tracking.storage: the same file as tracking.uri "
                          "(sqlite:///mlflow.db); the Optuna storage and the MLflow "
                          "store are two files")
    assert not (tmp_path / "mlflow.db").exists()
    # Through a symlink to its directory: the same file, written as an MLflow store
    # before Optuna refused it (the URLs were compared as strings).
    (tmp_path / "linked").symlink_to(tmp_path)
    msg = error_for(write_config, quickstart(),
                    f"tracking.storage=sqlite:///{tmp_path}/linked/mlflow.db")
    assert msg.startswith("tracking.storage: the same file as tracking.uri")
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("override, message", [
    ("search.trials=0", "search.trials: must be >= 1, got 0"),
    ("search.grid_points=1", "search.grid_points: must be >= 2, got 1"),
    ("data.split_seed=4294967296", "data.split_seed: must be <= 4294967295, got 4294967296"),
    # Both passed, then crashed the run inside Ray (a C int; an infinite wait)
    ("resources.max_retries=2147483648", "resources.max_retries: must be <= 1000, got "
                                         "2147483648"),
    ("resources.trial_timeout=.inf", "resources.trial_timeout: must be a finite number, got inf"),
    ("resources.trial_timeout=40000000", "resources.trial_timeout: must be <= 31536000 (a year, "
                                         "in seconds), got 40000000"),
    ("resources.cpus_per_trial=0", "resources.cpus_per_trial: must be > 0, got 0"),
    # Passed, then crashed `run` in Ray's traceback ("cannot go beyond 0.0001")
    ("resources.cpus_per_trial=1e-9", "resources.cpus_per_trial: must be at least 0.0001 (Ray "
                                      "counts CPUs and GPUs in ten-thousandths), got 1e-09"),
    ("resources.gpus_per_trial=0.00005", "resources.gpus_per_trial: must be 0 or at least 0.0001 "
                                         "(Ray counts CPUs and GPUs in ten-thousandths), got "
                                         "5e-05"),
])
def test_bounds_read_as_the_model_checks_read(write_config, override, message):
    """Not pydantic's "Input should be greater than or equal to 1"."""
    assert error_for(write_config, quickstart(), override) == message


@pytest.mark.parametrize("override, message", [
    # `lr > 0` holds for infinity: validate said ok, and every trial's loss went NaN
    ("params.weight_decay=.inf", "params.weight_decay: must be a finite number, got inf"),
    ("space.weight_decay={choice: [.inf, 0.01]}",
     "space.weight_decay: must be a finite number, got inf"),
])
def test_an_infinite_hyperparameter_is_refused(write_config, override, message):
    assert error_for(write_config, quickstart(), override) == message


def test_data_may_be_a_dataset_name_alone(write_config):
    """`data: digits` was "data: expected a mapping", where `pruner: asha` works."""
    raw = {**quickstart(), "data": "moons"}
    assert load_config(write_config(raw)).data.name == "moons"
    assert error_for(write_config, {**quickstart(), "data": "digts"}).startswith(
        "data.name: unknown dataset 'digts' (did you mean 'digits'?)")


@pytest.mark.parametrize("override, message", [
    ("search.objective={metric: val_accuracy, direction: max}",
     "search.objective.direction: unknown value 'max' (did you mean 'maximize'?); valid: "
     "maximize, minimize"),
    ("search.on_interrupt=retri",
     "search.on_interrupt: unknown value 'retri' (did you mean 'retry'?); valid: fail, retry"),
    ("resources.executor=slurm", "resources.executor: unknown value 'slurm'; valid: serial, ray"),
])
def test_a_value_out_of_a_list_reads_as_the_registries_read(write_config, override, message):
    """Not pydantic's "Input should be 'maximize' or 'minimize'": as an unknown
    strategy or model is said, with the closest valid value."""
    assert error_for(write_config, quickstart(), override) == message


def test_a_storage_that_is_not_a_database_url_is_refused_before_any_store(write_config,
                                                                           tmp_path, monkeypatch):
    """The MLflow store had been made before Optuna refused `--storage optuna.db`."""
    monkeypatch.chdir(tmp_path)
    msg = error_for(write_config, quickstart(), "tracking.storage=optuna.db")
    assert msg == ("tracking.storage: 'optuna.db' is not a database URL; for a SQLite file: "
                   "sqlite:///optuna.db")
    assert not (tmp_path / "mlflow.db").exists()
    # A scheme SQLAlchemy has no dialect for: `postgres://` (Heroku's, dropped by
    # SQLAlchemy 1.4) passed validate, and run printed its header before the error.
    msg = error_for(write_config, quickstart(), "tracking.storage=postgres://u:pw@db/optuna")
    assert msg == ("tracking.storage: 'postgres://u:***@db/optuna': no database 'postgres'; "
                   "PostgreSQL's is postgresql://; valid: sqlite, postgresql, mysql, mariadb, "
                   "oracle, mssql")
    assert error_for(write_config, quickstart(), "tracking.storage=foo://bar").startswith(
        "tracking.storage: 'foo://bar': no database 'foo'; valid: sqlite, ")
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("override, fixed", [
    ("tracking.storage=sqlite://optuna.db", "sqlite:///optuna.db"),
    ("tracking.storage=sqlite:/optuna.db", "sqlite:///optuna.db"),
    ("tracking.uri=sqlite://mlflow.db", "sqlite:///mlflow.db"),
    ("tracking.uri=sqlite+pysqlite://runs/m.db?timeout=5",
     "sqlite+pysqlite:///runs/m.db?timeout=5"),
])
def test_a_sqlite_url_without_three_slashes_is_refused_before_any_store(
        write_config, tmp_path, monkeypatch, override, fixed):
    """`sqlite://optuna.db` passed validate (SQLAlchemy reads optuna.db as a host);
    run then made the MLflow store before the storage refused it, and
    `sqlite:/optuna.db` got the hint sqlite:///sqlite:/optuna.db."""
    monkeypatch.chdir(tmp_path)
    key, _, url = override.partition("=")
    msg = error_for(write_config, quickstart(), override)
    assert msg == (f"{key}: {url!r} is not a SQLite URL; a SQLite file's URL has three slashes "
                   f"before a relative path (four before an absolute one): {fixed}")
    assert not any(p.suffix == ".db" for p in tmp_path.iterdir())


@pytest.mark.parametrize("uri, message", [
    ("mlflow.db", "tracking.uri: 'mlflow.db' is a file name; a SQLite store's URI is "
                  "sqlite:///mlflow.db"),
    ("sqlite://", "tracking.uri: 'sqlite://' is an in-memory SQLite database, gone when the "
                  "command ends with all it holds; name a file: sqlite:///mlflow.db"),
    # As written: it quoted the file:// URI made of it, which the user never wrote
    ("./mlruns", "tracking.uri: './mlruns' is an MLflow file store, which MLflow 3 "
                 "refuses unless MLFLOW_ALLOW_FILE_STORE=true is set; a SQLite store "
                 "(sqlite:///mlflow.db, the default) has every feature"),
])
def test_tracking_uris_mlflow_would_refuse_are_one_line(write_config, tmp_path, monkeypatch,
                                                        uri, message):
    """MLflow's five-sentence refusal of file stores, after the header was printed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    msg = error_for(write_config, quickstart(), f"tracking.uri={uri}")
    assert msg == message.format(tmp=tmp_path)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")      # the user's choice stands
    if uri.startswith("./"):
        assert load_config(write_config(quickstart()), [f"tracking.uri={uri}"])


@pytest.mark.parametrize("uri, message", [
    # MLflow: "Model registry functionality is unavailable; got unsupported URI ..."
    ("htp://127.0.0.1:5000", "tracking.uri: 'htp://127.0.0.1:5000': MLflow has no store of "
     "scheme 'htp'; valid: sqlite:///FILE, postgresql://, mysql://, mssql://, "
     "http://HOST:PORT, https://HOST:PORT, databricks, file:DIR"),
    ("sqlit:///mlflow.db", "tracking.uri: 'sqlit:///mlflow.db': MLflow has no store of scheme "
     "'sqlit'; valid: sqlite:///FILE, postgresql://, mysql://, mssql://, http://HOST:PORT, "
     "https://HOST:PORT, databricks, file:DIR"),
    # MLflow took these for folders; with MLFLOW_ALLOW_FILE_STORE it tracked the study
    # in ./http/127.0.0.1:5000/
    ("http//127.0.0.1:5000", "tracking.uri: no colon after the scheme 'http'; meant "
     "http://127.0.0.1:5000?"),
    ("https//u:pw@host/mlflow", "tracking.uri: no colon after the scheme 'https'; meant "
     "https://u:***@host/mlflow?"),
    # The hint was sqlite:///sqlite//mlflow.db
    ("sqlite//mlflow.db", "tracking.uri: no colon after the scheme 'sqlite'; meant "
     "sqlite:///mlflow.db?"),
    ("sqlite////tmp/mlflow.db", "tracking.uri: no colon after the scheme 'sqlite'; meant "
     "sqlite:////tmp/mlflow.db?"),
])
def test_a_tracking_uri_of_no_scheme_mlflow_knows_is_one_line(write_config, tmp_path,
                                                               monkeypatch, uri, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert error_for(write_config, quickstart(), f"tracking.uri={uri}") == message
    assert not any(p.suffix == ".db" or p.is_dir() for p in tmp_path.iterdir())


@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "postgresql+psycopg2://u@h/db",
                                 "HTTP://127.0.0.1:5000", "databricks", "https://h/mlflow"])
def test_tracking_uris_of_mlflows_schemes_pass(uri):
    from hypersweep.search.config import check_tracking_scheme
    check_tracking_scheme(uri)


def test_a_command_given_a_tracking_uri_of_no_scheme_mlflow_knows_says_so(tmp_path,
                                                                           monkeypatch):
    from typer.testing import CliRunner

    from hypersweep.cli.app import app
    monkeypatch.chdir(tmp_path)
    for command in (["rerun", "0" * 32], ["replay", "0" * 32], ["ui"]):
        res = CliRunner().invoke(app, [*command, "--tracking-uri", "htp://127.0.0.1:5000"])
        assert res.exit_code == 2
        assert res.output.startswith("error: --tracking-uri: 'htp://127.0.0.1:5000': MLflow "
                                     "has no store of scheme 'htp'"), command
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("url, message", [
    ("mysql://u@127.0.0.1:1/optuna", "its database driver (MySQLdb) is not installed; pip "
     "install mysqlclient (or pymysql, with mysql+pymysql://)"),
    ("mssql+pyodbc://u@h/optuna", "its database driver (pyodbc) is not installed; pip "
     "install pyodbc"),
])
def test_a_storage_whose_driver_is_not_installed_fails_validate(write_config, tmp_path,
                                                                 monkeypatch, url, message):
    """validate said ok; run then failed on Optuna's "Failed to import DB access module"."""
    monkeypatch.chdir(tmp_path)
    assert error_for(write_config, quickstart(), f"tracking.storage={url}") == (
        f"tracking.storage: {url!r}: {message}")
    assert not any(tmp_path.glob("*.db"))


def test_reading_commands_check_the_storage_url_as_validate_does(tmp_path, monkeypatch):
    """`studies --storage postgres://...` quoted SQLAlchemy: "Can't load plugin:
    sqlalchemy.dialects:postgres"."""
    from typer.testing import CliRunner

    from hypersweep.cli.app import app
    monkeypatch.chdir(tmp_path)
    for command in (["studies"], ["best", "s"], ["export", "s", "-o", "out.csv"]):
        res = CliRunner().invoke(app, [*command, "--storage", "postgres://u:pw@h/optuna"])
        assert res.exit_code == 2, command
        assert res.output.strip() == (
            "error: --storage: 'postgres://u:***@h/optuna': no database 'postgres'; "
            "PostgreSQL's is postgresql://; valid: sqlite, postgresql, mysql, mariadb, oracle, "
            "mssql"), command
    assert not any(tmp_path.iterdir())


def test_a_timing_objective_is_noted_where_it_makes_a_rerun_differ(write_config):
    """A serial rerun reproduces every trial, but not once a strategy learns from
    inference_ms, which differs from run to run: that was said nowhere."""
    from hypersweep.search.config import config_notes
    timed = [{"metric": "val_accuracy", "direction": "maximize"},
             {"metric": "inference_ms", "direction": "minimize"}]
    raw = {**quickstart(), "search": {"strategy": "nsga2", "objective": timed}}
    assert config_notes(load_config(write_config(raw))) == [
        "search.objective: inference_ms is a timing, which differs from run to run: a rerun "
        "of this study samples other parameters once nsga2 learns from it (after its first "
        "random trials)"]
    raw["search"]["strategy"] = "random"        # samples the same whatever it is told
    assert config_notes(load_config(write_config(raw))) == []
    raw["search"] = {"strategy": "tpe", "objective": timed[:1]}
    assert config_notes(load_config(write_config(raw))) == []


def test_validate_prints_the_config_notes(write_config):
    from typer.testing import CliRunner

    from hypersweep.cli.app import app
    raw = {**quickstart(), "search": {"strategy": "tpe", "objective": [
        {"metric": "inference_ms", "direction": "minimize"}]}}
    res = CliRunner().invoke(app, ["validate", str(write_config(raw))])
    assert res.exit_code == 0, res.output
    assert "note: search.objective: inference_ms is a timing" in res.output


def notes_for(write_config, raw: dict) -> list[str]:
    from hypersweep.search.config import config_notes
    return config_notes(load_config(write_config(raw)))


def test_a_searched_name_that_no_trial_uses_is_noted(write_config):
    """`beta2` under a `sgd` branch, or `gamma` beside schedules that ignore it, is
    suggested in every trial and changes nothing: the search gets a dimension of
    noise, and importance a name that means nothing. Passed without a word."""
    raw = {**quickstart(), "space": {
        "momentum": {"uniform": [0.5, 0.9]},        # used by the sgd trials: no note
        "optimizer": {"choice": {"sgd": {"beta2": {"uniform": [0.9, 0.999]}},
                                 "adam": {"gamma": {"uniform": [0.1, 0.9]}}}},
        "schedule": {"choice": ["constant", "cosine"]},
        "restart_period": {"int": [2, 5]}}}
    assert notes_for(write_config, raw) == [
        "space.optimizer.choice.sgd.beta2: searched, but no trial uses it: beta2 matters only "
        "with optimizer adam or adamw, and optimizer is sgd here",
        "space.optimizer.choice.adam.gamma: searched, but no trial uses it: gamma matters only "
        "with schedule exponential or step, and schedule is constant or cosine here",
        "space.restart_period: searched, but no trial uses it: restart_period matters only "
        "with schedule warm_restarts, and schedule is constant or cosine here"]
    # Fixed in params, or left at its default, the other name says the same.
    raw = {**quickstart(), "params": {"epochs": 2, "optimizer": "rmsprop"},
           "space": {"beta1": {"uniform": [0.8, 0.95]}, "lr": {"uniform": [0.01, 0.1]}}}
    assert notes_for(write_config, raw) == [
        "space.beta1: searched, but no trial uses it: beta1 matters only with optimizer adam "
        "or adamw, and optimizer is rmsprop here"]
    raw = {**quickstart(), "model": "autoencoder", "params": {"epochs": 2},
           "search": {"objective": {"metric": "val_loss", "direction": "minimize"}},
           "space": {"sparsity": {"loguniform": [1e-5, 1e-2]}}}
    assert notes_for(write_config, raw) == [
        "space.sparsity: searched, but no trial uses it: sparsity matters only with variant "
        "sparse, and variant is undercomplete (its default) here"]
    # Used in some trials (a searched or a branching other name): nothing to say.
    raw["space"]["variant"] = {"choice": ["sparse", "denoising"]}
    assert notes_for(write_config, raw) == []
    raw["space"] = {"variant": {"choice": {"sparse": {}, "denoising": {}}},
                    "sparsity": {"loguniform": [1e-5, 1e-2]}}
    assert notes_for(write_config, raw) == []


def test_a_fixed_param_that_no_trial_uses_is_noted(write_config):
    """`maxout_pieces: 4` beside a relu activation (searched or set) changed nothing
    without a word, as `models mlp` says it is used only by maxout."""
    raw = {**quickstart(), "params": {"epochs": 2, "maxout_pieces": 4, "gamma": 0.5},
           "space": {"lr": {"uniform": [0.01, 0.1]}}}
    assert notes_for(write_config, raw) == [
        "params.maxout_pieces: 4 is not used: maxout_pieces matters only with activation "
        "maxout, and activation is relu (its default) here",
        "params.gamma: 0.5 is not used: gamma matters only with schedule exponential or step, "
        "and schedule is constant (its default) here"]
    raw["space"] = {"maxout_pieces": {"int": [2, 4]}}     # searched as well: said of the space
    raw["params"] = {"epochs": 2, "activation": "tanh"}
    assert notes_for(write_config, raw) == [
        "space.maxout_pieces: searched, but no trial uses it: maxout_pieces matters only with "
        "activation maxout, and activation is tanh here"]
    # Used: with maxout set, or searched among the activations
    raw["params"] = {"epochs": 2, "activation": "maxout", "maxout_pieces": 3}
    raw["space"] = {"lr": {"uniform": [0.01, 0.1]}}
    assert notes_for(write_config, raw) == []
    raw["params"] = {"epochs": 2, "maxout_pieces": 3}
    raw["space"] = {"activation": {"choice": ["relu", "maxout"]}}
    assert notes_for(write_config, raw) == []


def test_a_choice_of_one_value_is_noted(write_config):
    raw = {**quickstart(), "space": {"width": {"choice": [64]}, "lr": {"uniform": [0.01, 0.1]}}}
    assert notes_for(write_config, raw) == [
        "space.width: a choice of one value, 64, is the same in every trial; it is not searched"]


def test_the_default_space_leaves_out_what_the_fixed_params_leave_unused(write_config):
    """`params.arch: dcgan` with no space searched the MLP's width and depth."""
    raw = {"study": "g", "model": "gan", "data": "digits", "params": {"arch": "dcgan"},
           "search": {"objective": {"metric": "val_loss", "direction": "minimize"}}}
    cfg = load_config(write_config(raw))
    assert "width" not in cfg.space and "depth" not in cfg.space and "d_steps" in cfg.space
    assert notes_for(write_config, raw) == []
    raw["params"] = {"arch": "mlp"}
    assert {"width", "depth"} <= set(load_config(write_config(raw)).space)


def test_what_the_loader_decided_is_noted(write_config, tmp_path):
    """A csv target of integers is classification up to 20 values: the task picks
    the loss and the metrics, so the note says which was taken, and how to change
    it; and which columns became how many inputs."""
    rows = "\n".join(f"{i % 7},{i * 0.37 % 5:.2f},{i % 3}" for i in range(60))
    (tmp_path / "t.csv").write_text("a,b,label\n" + rows + "\n")
    raw = {**quickstart(), "data": {"name": "csv", "options": {"path": str(tmp_path / "t.csv")}},
           "space": {"lr": {"uniform": [0.01, 0.1]}}}
    assert notes_for(write_config, raw) == [
        "data.options.task: auto reads column 'label' as classification, 3 classes (0, 1, 2); "
        "set task: regression to regress it",
        "data.options.features: 2 inputs from a, b"]
    raw["data"]["options"]["target"] = "b"
    raw["search"] = {"objective": {"metric": "val_mse", "direction": "minimize"}}
    assert notes_for(write_config, raw)[0] == (
        "data.options.task: auto reads column 'b' as regression, 1 target")
    raw["data"]["options"]["task"] = "regression"       # chosen: nothing to say of it
    assert notes_for(write_config, raw) == ["data.options.features: 2 inputs from a, label"]


def test_a_study_that_searches_nothing_is_noted(write_config):
    raw = {**quickstart(), "space": {"width": 64}}
    assert notes_for(write_config, raw) == [
        "space: nothing is searched; the 20 trials train the same hyperparameters, each with "
        "its own seed"]


@pytest.mark.parametrize("set_, message", [
    ("PARAMS.epochs=2", "PARAMS: unknown key (did you mean 'params'?); valid: study, "),
    ("Study=x", "Study: unknown key (did you mean 'study'?); valid: study, "),
    ("int=1", "int: unknown key; valid: study, "),
    ("search.Trials=1", "search.Trials: unknown key (did you mean 'trials'?); valid: strategy, "),
    ("data.Name=x", "data.Name: unknown key (did you mean 'name'?); valid: name, "),
    ("search.my-key=1", "search.my-key: unknown key; valid: strategy, "),
])
def test_an_unknown_key_is_named_as_typed_whatever_it_looks_like(write_config, set_, message):
    """A capital letter, a type's name or a dash read as one of pydantic's type tags
    and was dropped: a traceback at the top level, the section's name below it."""
    assert error_for(write_config, quickstart(), set_).startswith(message)


def test_a_study_name_mlflow_would_refuse_is_refused_first(write_config):
    """MLflow refuses an experiment name past 500 characters: `validate` passed it,
    and `run` left a study it could not resume."""
    msg = error_for(write_config, quickstart(), "study=" + "y" * 600)
    assert msg == ("study: at most 400 characters (the MLflow experiment's name, with room for a "
                   "rerun's suffix), got '" + "y" * 59 + "... (600 characters)")


def test_a_relative_file_beside_the_config_but_not_here_says_so(tmp_path, monkeypatch):
    """Relative paths are read from where the command runs; run from elsewhere, a
    model file or a data file beside the config was "no such file", no more."""
    from hypersweep.search.config import load_config
    (tmp_path / "w").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "w" / "t.csv").write_text("a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    (tmp_path / "w" / "study.yaml").write_text(
        "study: s\nmodel: mlp\ndata: {name: csv, options: {path: t.csv}}\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(UserError) as e:
        load_config(tmp_path / "w" / "study.yaml")
    assert str(e.value) == (f"data.options.path: t.csv: not in {tmp_path / 'elsewhere'}, where "
                            f"relative paths are read from; it is beside the config, at "
                            f"{tmp_path / 'w' / 't.csv'}: run from {tmp_path / 'w'}, or write "
                            "that path")
    monkeypatch.chdir(tmp_path / "w")
    assert load_config(tmp_path / "w" / "study.yaml").data.options["path"] == \
        str(tmp_path / "w" / "t.csv")


def test_ray_address_local_is_a_private_local_instance(write_config):
    """`resume` of a study whose cluster is gone had no way to a local Ray: `local`
    is what no address is."""
    raw = quickstart()
    raw["resources"] = {"address": "10.0.0.5:6379"}
    assert load_config(write_config(raw)).resources.address == "10.0.0.5:6379"
    assert load_config(write_config(raw), ray_address="local").resources.address is None
    raw["resources"] = {"address": "local"}
    assert load_config(write_config(raw)).resources.address is None
