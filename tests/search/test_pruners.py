"""Early stopping across trials: bad trials are pruned early, marked in both stores.

A deterministic training function (its learning curve set by the trial's lr)
runs through the real driver with real Optuna and MLflow SQLite stores, so the
only thing under test is the pruner's decision and how it is recorded.
"""
from __future__ import annotations

import math

import optuna
import pytest

from hypersweep.models.errors import UserError
from hypersweep.models.trial import TrialResult, TrialState
from hypersweep.search.config import check_semantics, parse_config
from hypersweep.search.driver import StudyDriver
from hypersweep.search.executors import SerialExecutor
from hypersweep.search.tracking import MlflowTracker
from tests.conftest import small_config, study_runs

EPOCHS = 9


def quality(lr: float) -> float:
    """1 at lr = 1e-2, falling off with the distance in decades."""
    return math.exp(-(math.log10(lr) + 2) ** 2)


def curve_train(spec, report) -> TrialResult:
    """Accuracy rises with the epoch towards the trial's quality; curves never cross."""
    q = quality(spec.params["lr"])
    history = []
    for epoch in range(1, spec.params["epochs"] + 1):
        acc = q * (1 - 0.5 ** epoch)
        m = {"val_accuracy": acc, "val_loss": 1 - acc, "train_loss": 1 - acc}
        history.append(m)
        if report(epoch, m):
            return TrialResult(TrialState.PRUNED, m, tuple(history), epoch,
                               reason=f"pruned at epoch {epoch}")
    return TrialResult(TrialState.COMPLETE, history[-1], tuple(history), EPOCHS)


def pruned_study(stores, name: str, pruner, trials: int = 18) -> tuple[optuna.Study, list]:
    raw = {"study": name, "model": "mlp", "params": {"epochs": EPOCHS},
           "space": {"lr": {"loguniform": [1e-5, 1.0]}},
           "search": {"strategy": "random", "trials": trials, "seed": 1, "pruner": pruner},
           "tracking": {"uri": stores.mlflow_uri, "storage": stores.optuna_url}}
    cfg = parse_config(raw)
    check_semantics(cfg)
    StudyDriver(cfg, SerialExecutor(train=curve_train), MlflowTracker(cfg.tracking.uri)).run()
    study = optuna.load_study(study_name=name, storage=stores.optuna_url)
    return study, study_runs(stores.mlflow_uri, name)[1]


@pytest.mark.parametrize("pruner", [
    {"name": "asha", "min_resource": 1, "reduction_factor": 3},
    {"name": "median", "startup_trials": 3, "warmup_epochs": 1},
    "hyperband",
])
def test_bad_trials_are_pruned_early(stores, pruner):
    study, children = pruned_study(stores, "prune", pruner)
    State = optuna.trial.TrialState
    pruned = [t for t in study.trials if t.state == State.PRUNED]
    complete = [t for t in study.trials if t.state == State.COMPLETE]
    assert len(pruned) >= 4 and complete
    q_pruned = [quality(t.params["lr"]) for t in pruned]
    q_complete = [quality(t.params["lr"]) for t in complete]
    best = max(study.trials, key=lambda t: quality(t.params["lr"]))
    assert best.state == State.COMPLETE                         # the best trial is never pruned
    assert sum(q_pruned) / len(q_pruned) < sum(q_complete) / len(q_complete)
    epochs = [max(t.intermediate_values) for t in pruned]
    assert max(epochs) < EPOCHS                                # pruned means stopped early
    spent = sum(len(t.intermediate_values) for t in study.trials)
    assert spent < 0.75 * EPOCHS * len(study.trials)
    for t, child in zip(study.trials, children):
        assert child.data.tags["state"] == t.state.name
        if t.state == State.PRUNED:
            assert child.data.tags["pruned_at_epoch"] == str(max(t.intermediate_values))
            assert t.user_attrs["epochs"] == max(t.intermediate_values)
            # `reason`, as on a failed run (which has failure_reason too)
            assert child.data.tags["reason"] == f"pruned at epoch {t.user_attrs['epochs']}"
            assert "failure_reason" not in child.data.tags
        else:
            assert "pruned_at_epoch" not in child.data.tags


def test_no_pruner_prunes_nothing(stores):
    study, _ = pruned_study(stores, "keep", "none", trials=4)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


@pytest.mark.parametrize("pruner, message", [
    ({"name": "asha", "warmup_epochs": 2},
     "search.pruner.warmup_epochs: not a setting of pruner asha; asha takes: min_resource, reduction_factor"),
    ({"name": "median", "min_resource": 2},
     "search.pruner.min_resource: not a setting of pruner median; median takes: startup_trials, warmup_epochs"),
    ({"name": "none", "reduction_factor": 3},
     "search.pruner.reduction_factor: not a setting of pruner none; none takes: no settings"),
    ({"name": "asha", "min_resource": 3}, "search.pruner.min_resource: 3 must be below params.epochs (3)"),
    # the median pruner prunes after the warm-up's epochs, and never at the last epoch
    ({"name": "median", "warmup_epochs": 2},
     "search.pruner.warmup_epochs: 2 must be at most 1 with params.epochs (3), or no trial is "
     "ever pruned (a trial is not pruned in its warm-up, nor at its last epoch)"),
    ({"name": "median", "warmup_epochs": 5},
     "search.pruner.warmup_epochs: 5 must be at most 1 with params.epochs (3)"),
    ({"name": "hyperband", "reduction_factor": 1}, "search.pruner.reduction_factor: must be >= 2, got 1"),
    ({"name": "ashaa"}, "search.pruner: unknown pruner 'ashaa' (did you mean 'asha'?)"),
    ({"name": "asha", "min_resources": 2}, "search.pruner.min_resources: unknown key (did you mean 'min_resource'?)"),
    # settings without a name said "not a setting of pruner none"
    ({"min_resource": 2}, "search.pruner.name: required beside min_resource; min_resource is a "
                          "setting of asha or hyperband"),
    ({"warmup_epochs": 1, "startup_trials": 2},
     "search.pruner.name: required beside startup_trials, warmup_epochs; startup_trials is a "
     "setting of median"),
])
def test_bad_pruner_settings(stores, pruner, message):
    with pytest.raises(UserError) as e:
        check_semantics(parse_config(small_config("bad", stores, pruner=pruner)))
    assert str(e.value).startswith(message)


def test_a_pruner_left_empty_is_none(stores):
    """`pruner:` with no value (null) said "expected a mapping, got null", where a
    name is valid too: it is no pruner, as leaving the key out is."""
    assert parse_config(small_config("empty", stores, pruner=None)).search.pruner.name == "none"


@pytest.mark.slow
def test_asha_prunes_a_real_digits_search_with_patience_alongside(stores):
    """Real training: ASHA prunes some trials, with in-trial early stopping (patience) on."""
    raw = small_config("digits-asha", stores, strategy="random", trials=8,
                       pruner={"name": "asha", "min_resource": 1, "reduction_factor": 3})
    raw["params"].update(epochs=6, patience=1)
    raw["space"]["lr"] = {"loguniform": [1e-5, 1.0]}
    cfg = parse_config(raw)
    check_semantics(cfg)
    outcome = StudyDriver(cfg, SerialExecutor(), MlflowTracker(cfg.tracking.uri)).run()
    assert outcome.counts["PRUNED"] >= 1 and outcome.counts["COMPLETE"] >= 1
    _, children = study_runs(stores.mlflow_uri, "digits-asha")
    pruned = [c for c in children if c.data.tags["state"] == "PRUNED"]
    assert all(int(c.data.tags["pruned_at_epoch"]) < 6 for c in pruned)


def test_the_median_pruner_s_default_warmup_is_checked_against_epochs_too(stores):
    """3 epochs under the median pruner's default warm-up of 2 never pruned a trial:
    epochs 1 and 2 are the warm-up, and the last is never pruned."""
    raw = small_config("median", stores, pruner={"name": "median"})
    raw["params"]["epochs"] = 3
    with pytest.raises(UserError) as e:
        check_semantics(parse_config(raw))
    assert str(e.value) == ("search.pruner.warmup_epochs: 2 (the default) must be at most 1 "
                            "with params.epochs (3), or no trial is ever pruned (a trial is not "
                            "pruned in its warm-up, nor at its last epoch)")
    raw["params"]["epochs"] = 4
    check_semantics(parse_config(raw))
    raw["params"]["epochs"] = 1
    raw["search"]["pruner"] = {"name": "median", "warmup_epochs": 0}
    with pytest.raises(UserError) as e:
        check_semantics(parse_config(raw))
    assert str(e.value) == ("search.pruner: median never prunes a trial of params.epochs (1): "
                            "a trial is not pruned at its last epoch; use pruner: none")


@pytest.mark.parametrize("warmup", [0, 1, 3])
def test_the_median_pruner_never_prunes_in_the_warm_up_epochs(stores, warmup):
    """warmup_epochs: N keeps epochs 1..N of every trial; pruning starts at N + 1."""
    study, _ = pruned_study(stores, f"warm{warmup}",
                            {"name": "median", "startup_trials": 3, "warmup_epochs": warmup})
    pruned = [max(t.intermediate_values) for t in study.trials
              if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and min(pruned) == warmup + 1


def test_a_pruner_is_checked_against_the_most_epochs_the_space_searches(stores):
    """With epochs searched the check was skipped: `min_resource: 5` over 1-3
    epochs passed validate and never pruned a trial."""
    raw = small_config("searched", stores, pruner={"name": "asha", "min_resource": 5})
    del raw["params"]["epochs"]
    raw["space"]["epochs"] = {"choice": {2: {}, 3: {"dropout": 0.1}}}
    with pytest.raises(UserError) as e:
        check_semantics(parse_config(raw))
    assert str(e.value) == ("search.pruner.min_resource: 5 must be below the most epochs the "
                            "space searches, space.epochs (3), or no trial is ever pruned")
    raw["search"]["pruner"]["min_resource"] = 2
    check_semantics(parse_config(raw))


@pytest.mark.parametrize("name", ["asha", "hyperband"])
def test_the_default_min_resource_is_checked_against_epochs_too(stores, name):
    """`pruner: hyperband` on one epoch never prunes, as `min_resource: 1` would not."""
    raw = small_config("bad", stores, pruner={"name": name})
    raw["params"]["epochs"] = 1
    with pytest.raises(UserError) as e:
        check_semantics(parse_config(raw))
    assert str(e.value) == ("search.pruner.min_resource: 1 (the default) must be below "
                            "params.epochs (1), or no trial is ever pruned")


def test_min_resource_is_checked_against_the_default_epochs_and_bounds_hyperband(stores):
    """With no `params.epochs` the check was skipped (trials train the default 10, so
    `min_resource: 10` never pruned) and hyperband's maximum was Optuna's "auto"."""
    from hypersweep.search.driver import study_pruner

    raw = small_config("default-epochs", stores, pruner={"name": "hyperband", "min_resource": 10})
    del raw["params"]["epochs"]
    with pytest.raises(UserError) as e:
        check_semantics(parse_config(raw))
    assert str(e.value) == ("search.pruner.min_resource: 10 must be below params.epochs "
                            "(10, the default), or no trial is ever pruned")
    raw["search"]["pruner"]["min_resource"] = 3
    cfg = parse_config(raw)
    check_semantics(cfg)
    assert study_pruner(cfg)._max_resource == 10
    raw["space"]["epochs"] = {"int": [5, 20]}       # searched: no fixed maximum
    assert study_pruner(parse_config(raw))._max_resource == "auto"
