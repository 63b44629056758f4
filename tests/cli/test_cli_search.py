"""The CLI's search features end to end: grid size, warm start, importance table."""
from __future__ import annotations

import optuna
from typer.testing import CliRunner

from hypersweep.cli.app import app
from tests.conftest import small_config, study_runs

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_validate_prints_the_grid_size(stores, write_config):
    raw = small_config("grid", stores, strategy="grid", grid_points=3)
    raw["search"].pop("trials")
    res = invoke("validate", str(write_config(raw)))
    # lr: 3 points x depth: 2 x (momentum branch: 3 + adam: 1) = 24
    assert res.exit_code == 0, res.output
    assert "grid search, 24 trials" in res.output and "grid size: 24 points" in res.output
    res = invoke("validate", str(write_config(raw)), "--set", "search.trials=5")
    assert "grid search, 5 trials" in res.output and "grid size: 24 points" in res.output
    assert "grid size: 24 points (3 values per range)" in res.output
    # Only choices and ranges whose every value is taken: no range is spread
    raw["space"] = {"depth": {"int": [1, 3]}, "optimizer": {"choice": ["adam", "sgd"]}}
    res = invoke("validate", str(write_config(raw)))
    assert res.output.strip().splitlines()[-1] == "grid size: 6 points"


def test_warm_start_and_importance(stores, write_config):
    first = write_config(small_config("first", stores, strategy="random", trials=3), "first.yaml")
    res = invoke("run", str(first))
    assert res.exit_code == 0, res.output
    assert ("parameter importance (val_accuracy, fANOVA over 3 complete trials; a rough guide "
            "below 10):") in res.output

    second = write_config(small_config("second", stores, trials=1), "second.yaml")
    res = invoke("run", str(second), "--warm-start", "first")
    assert res.exit_code == 0, res.output
    study = optuna.load_study(study_name="second", storage=stores.optuna_url)
    assert len(study.trials) == 4
    assert sum("warm_start_from" in t.user_attrs for t in study.trials) == 3
    # The parent run counts the trials run here and those learnt from apart: its
    # best value may be a warm-started trial's, which trials_complete leaves out.
    parent, _ = study_runs(stores.mlflow_uri, "second")
    assert parent.data.metrics["trials_complete"] == 1
    assert parent.data.metrics["trials_warm_started"] == 3


def test_bad_warm_start_exits_2_and_writes_nothing(stores, write_config):
    path = write_config(small_config("s", stores, trials=1))
    res = invoke("run", str(path), "--warm-start", "nope")
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"error: --warm-start nope: no study storage at {stores.optuna_url}"]
    assert stores.untouched()
    # Set in the file: its key, not an option the user never gave
    path = write_config(small_config("s", stores, trials=1, warm_start="nope"))
    res = invoke("run", str(path))
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"error: search.warm_start nope: no study storage at {stores.optuna_url}"]
    assert stores.untouched()


def test_a_warm_start_from_a_storage_of_no_study_says_so(stores, write_config):
    """It said "unknown study 'nope'; valid: " and nothing after it."""
    optuna.create_study(study_name="gone", storage=stores.optuna_url)
    optuna.delete_study(study_name="gone", storage=stores.optuna_url)
    path = write_config(small_config("s", stores, trials=1))
    res = invoke("run", str(path), "--warm-start", "nope")
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"error: --warm-start nope: {stores.optuna_url} holds no study"]
    assert optuna.study.get_all_study_names(stores.optuna_url) == []


def test_a_range_the_best_trials_crowd_against_is_noted_at_the_study_s_end(stores, write_config):
    """Coarse to fine: the best learning rates sit at the top of the range searched,
    and the study's end says to widen it there."""
    raw = small_config("crowded", stores, strategy="random", trials=10)
    raw["params"]["optimizer"] = "adam"
    raw["space"] = {"lr": {"loguniform": [1e-5, 1e-3]}}
    raw["search"]["enqueue"] = [{"lr": lr} for lr in (1e-3, 9e-4, 8e-4, 1e-5, 1.5e-5, 2e-5,
                                                       3e-5, 4e-5, 5e-5, 6e-5)]
    res = invoke("run", str(write_config(raw)))
    assert res.exit_code == 0, res.output
    notes = [line for line in res.output.splitlines() if line.startswith("note: space.")]
    best = optuna.load_study(study_name="crowded", storage=stores.optuna_url).best_params["lr"]
    assert best >= 8e-4         # one of the three largest, however their seeds fall
    assert notes == ["note: space.lr: the best trials sit at the top of the searched range "
                     f"[1e-05, 0.001] (the best: {best:.4g}); a better value may lie above it: "
                     "widen the range (to 0.002, say), then narrow it around the best"], res.output
    # and so does `best`, whenever the study is looked at again (not its JSON)
    res = invoke("best", "crowded", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    assert [line for line in res.output.splitlines() if line.startswith("note: ")] == notes
    res = invoke("best", "crowded", "--storage", stores.optuna_url, "--json")
    assert res.exit_code == 0 and "note:" not in res.output, res.output
