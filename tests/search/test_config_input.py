"""Bad input in a study config, said in the product's words: not pydantic's, a
quoted number refused as `params` refuses one, bounds on trials and epochs, and a
file too large to be a config refused before it is read."""
from __future__ import annotations

import datetime
from typing import Optional

import pytest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from typer.testing import CliRunner

from hypersweep.models.errors import UserError
from hypersweep.search import config
from hypersweep.search.config import apply_overrides, load_config, option_error
from tests.conftest import quickstart
from tests.search.test_config import error_for


# ------------------------------------------------------------ pydantic's words

LIBRARY_WORDS = ("Input should", "String should", "should have", "Value error", "valid integer")


def test_an_empty_study_name_reads_as_a_blank_one(write_config):
    """`study: ""` was "study: String should have at least 1 character, got ''"."""
    assert error_for(write_config, {**quickstart(), "study": ""}) == (
        "study: a blank name; give the study a name, got ''")


@pytest.mark.parametrize("study, message", [
    (None, "study: a blank name; give the study a name, got null"),
    (" x ", "study: a name cannot start or end with spaces; use 'x', got ' x '"),
    # YAML reads it as a date: it showed datetime.date(2024, 1, 1)
    (datetime.date(2024, 1, 1), "study: expected a string, got the date 2024-01-01 (quote it "
                                "in the YAML for text: '2024-01-01')"),
])
def test_an_empty_or_padded_study_name_is_refused(write_config, study, message):
    """`study:` left empty said `expected a string, got None`; `study: " x "` made a
    study whose name had to be typed with its spaces to resume it."""
    assert error_for(write_config, {**quickstart(), "study": study}) == message


@pytest.mark.parametrize("sets, message", [
    (["search.trials=2.0"], "search.trials: expected an integer, got 2.0"),
    (["search.seed=7.0"], "search.seed: expected an integer, got 7.0"),
    (["resources.parallel=2.0"], "resources.parallel: expected an integer or 'auto', got 2.0"),
    (["params.epochs=2.0"], "params.epochs: expected an integer, got 2.0"),
])
def test_a_float_is_not_taken_for_an_integer(write_config, sets, message):
    """`trials: 2.0` was taken as 2, where `params.epochs: 2.0` was refused."""
    assert error_for(write_config, quickstart(), *sets) == message


@pytest.mark.parametrize("sets, message", [
    (["params.activation=true"], "params.activation: unknown value true; valid: elu, "
                                 "leaky_relu, linear, maxout, prelu, relu, sigmoid, tanh"),
    (["space.dropout={uniform: [true, 0.4]}"],
     "space.dropout.uniform: expected [low, high] as numbers, got [true, 0.4]"),
    (["search.trials=[1, true]"], "search.trials: expected an integer, got [1, true]"),
    (["search.enqueue=[{lr: '0.01'}]"], "search.enqueue[0].lr: expected a number, got text '0.01'"),
    (["search.enqueue=[{optimizer: true}]"],
     "search.enqueue[0].optimizer: true is outside the space (one of 'momentum', 'adam')"),
])
def test_values_are_quoted_as_yaml_writes_them(write_config, sets, message):
    """Python's words reached the user: `got [True, 0.4]`, `unknown value 'True'`;
    and a quoted number to enqueue was called outside the space."""
    assert error_for(write_config, quickstart(), *sets) == message


@pytest.mark.parametrize("text, message", [
    ("# settings to come\n", "the file holds no settings; a study config is a YAML mapping "
                             "(see studies/quickstart.yaml)"),
    ("- a\n- b\n", "a study config must be a YAML mapping, got a list"),
    ("hello\n", "a study config must be a YAML mapping, got text"),
])
def test_a_config_that_is_no_mapping_is_named_in_yaml_s_words(write_config, text, message):
    """A comment alone read as an empty file; a list as `got list`, Python's word."""
    path = write_config(text)
    with pytest.raises(UserError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: {message}"


def test_a_dash_for_config_says_how_to_read_standard_input():
    with pytest.raises(UserError) as e:
        load_config("-")
    assert str(e.value) == ("-: no such study config file; to read it from standard input, "
                            "give /dev/stdin")


def test_a_blank_study_to_warm_start_from_is_refused(write_config):
    """`--warm-start ""` ran the study with no warm start, and said nothing."""
    assert error_for(write_config, quickstart(), 'search.warm_start=""') == (
        "search.warm_start: a blank name; give the study to learn from, or leave it out, "
        "got ''")


def test_a_config_from_a_pipe_is_read_and_an_endless_one_refused(tmp_path):
    """`run <(envsubst < study.yaml)` said "no such study config file"; /dev/zero
    is refused once past the most a config holds, not read for ever."""
    import contextlib
    import os
    import threading

    import yaml
    fifo = tmp_path / "study.yaml"
    os.mkfifo(fifo)
    text = yaml.safe_dump({**quickstart(), "study": "piped"})
    def write() -> None:
        with contextlib.suppress(OSError):
            fifo.write_text(text)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        assert load_config(fifo).study == "piped"
    finally:
        if writer.is_alive():       # not read: a reader lets the writer's open return
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(10)
    with pytest.raises(UserError, match=r"^/dev/zero: more than 10 MB; a study config is at "
                                        r"most 10 MB \(is it the right file\?\)$"):
        load_config("/dev/zero")


@pytest.mark.parametrize("annotation, given, message", [
    (Optional[int], "abc", "--trials: expected an integer, got 'abc'"),
    (Optional[int], "1.5", "--trials: expected an integer, got '1.5'"),
    (float, "fast", "--trials: expected a number, got 'fast'"),
    (bool, "maybe", "--trials: expected true or false, got 'maybe'"),
])
def test_an_option_s_value_reads_as_a_config_s(annotation, given, message):
    """typer checks an option's type with pydantic: `run CFG --trials abc` said
    "invalid value for '--trials': Input should be a valid integer, unable to parse
    string as an integer". The words a config's error uses, for the CLI to print."""
    with pytest.raises(ValidationError) as e:
        TypeAdapter(annotation).validate_python(given)
    assert option_error("--trials", e.value) == message


class _Shapes(BaseModel):
    name: str = Field(default="x", min_length=3, max_length=5)
    tags: list[str] = Field(default_factory=list, min_length=1, max_length=2)
    step: int = Field(default=2, multiple_of=2)
    rate: float = Field(default=0.5, allow_inf_nan=False)


@pytest.mark.parametrize("field, value, message", [
    ("name", "ab", "name: must be at least 3 characters, got 'ab'"),
    ("name", "abcdef", "name: must be at most 5 characters, got 6"),
    ("tags", [], "tags: must hold at least 1 item, got 0"),
    ("tags", ["a", "b", "c"], "tags: must hold at most 2 items, got 3"),
    ("step", 3, "step: must be a multiple of 2, got 3"),
    ("rate", float("inf"), "rate: must be a finite number, got inf"),
    ("tags", {"a": 1}, "tags: expected a list, got {a: 1}"),
])
def test_pydantic_s_other_errors_read_in_the_product_s_words(field, value, message):
    with pytest.raises(ValidationError) as e:
        _Shapes.model_validate({field: value})
    line = config._one_line(e.value)
    assert line == message
    assert not any(words in line for words in LIBRARY_WORDS)


# ------------------------------------------------------------ quoted numbers

@pytest.mark.parametrize("key, expected", [
    ("search.trials", "an integer"), ("search.seed", "an integer"),
    ("search.grid_points", "an integer"), ("search.pruner.min_resource", "an integer"),
    ("resources.parallel", "an integer or 'auto'"), ("resources.max_retries", "an integer"),
    ("resources.cpus_per_trial", "a number"), ("resources.gpus_per_trial", "a number"),
    ("resources.trial_timeout", "a number"),
    ("data.split_seed", "an integer"), ("data.val_fraction", "a number"),
])
def test_a_quoted_number_is_refused_as_in_params(write_config, key, expected):
    """`search.trials: "5"` ran 5 trials where `params.lr: "0.01"` is refused: a
    number in quotes is text, for every key."""
    raw = apply_overrides(quickstart(), ["search.pruner={name: asha}", f"{key}='1'"])
    assert error_for(write_config, raw) == f"{key}: expected {expected}, got text '1'"


@pytest.mark.parametrize("override", ["resources.parallel=auto", "resources.parallel=2",
                                      "search.trials=5", "data.val_fraction=0.25",
                                      "resources.cpus_per_trial=2",    # an int for a float
                                      "study='2024'", "search.warm_start='7'"])
def test_numbers_literals_and_numeric_text_keys_still_pass(write_config, override):
    load_config(write_config(quickstart()), [override])


def test_text_that_is_no_number_keeps_its_message(write_config):
    raw = apply_overrides(quickstart(), ["search.trials=lots"])
    assert error_for(write_config, raw) == "search.trials: expected an integer, got 'lots'"


# ------------------------------------------------------------ bounds

@pytest.mark.parametrize("override, message", [
    ("search.trials=100000000000000000000",
     "search.trials: must be <= 1000000, got 100000000000000000000"),
    ("params.epochs=100000000000000000000",
     "params.epochs: must be <= 1000000, got 100000000000000000000"),
    ("params.epochs=1000001", "params.epochs: must be <= 1000000, got 1000001"),
    ("space.epochs={int: [1, 100000000000000000000]}",
     "space.epochs: must be <= 1000000, got 100000000000000000000"),
    ("space.epochs={choice: [10, 2000000]}", "space.epochs: must be <= 1000000, got 2000000"),
    ("space.epochs=2000000", "space.epochs: must be <= 1000000, got 2000000"),
])
def test_trials_and_epochs_have_an_upper_bound(write_config, override, message):
    """1e20 of either passed validate."""
    raw = quickstart()
    if override.startswith("space."):
        del raw["params"]["epochs"]
    assert error_for(write_config, raw, override) == message


def test_the_largest_trials_and_epochs_pass(write_config):
    cfg = load_config(write_config(quickstart()),
                      ["search.trials=1000000", "params.epochs=1000000"])
    assert cfg.search.trials == 1_000_000 and cfg.params["epochs"] == 1_000_000


# ------------------------------------------------------------ a file too large

def _too_large(tmp_path):
    """A valid config padded with a comment past the limit: parsed, it took
    seconds and passed (a 50 MB file took 40 s)."""
    import yaml
    path = tmp_path / "huge.yaml"
    text = yaml.safe_dump(quickstart(), sort_keys=False)
    path.write_text(text + "#" * (config.MAX_CONFIG_BYTES - len(text) + 1) + "\n")
    return path


def test_a_config_file_larger_than_the_limit_is_refused_unread(tmp_path):
    path = _too_large(tmp_path)
    with pytest.raises(UserError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: 10.0 MB; a study config is at most 10 MB " \
                           "(is it the right file?)"


def test_the_cli_refuses_a_huge_config_in_one_line(tmp_path, monkeypatch):
    from hypersweep.cli.app import app
    monkeypatch.chdir(tmp_path)
    path = _too_large(tmp_path)
    res = CliRunner().invoke(app, ["validate", path.name])
    assert res.exit_code == 2
    assert res.output == "error: huge.yaml: 10.0 MB; a study config is at most 10 MB " \
                         "(is it the right file?)\n"
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()
