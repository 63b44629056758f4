"""Warm start: the source study's objectives must be this study's, and a
warm-started study proposes points the source has not tried (real SQLite stores)."""
from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from hypersweep.cli.app import app
from hypersweep.models.errors import UserError
from hypersweep.search.config import check_semantics, parse_config
from tests.conftest import small_config
from tests.search.test_strategies import config, drive

SPACE = {"lr": {"loguniform": [1e-4, 1e-1]}, "depth": {"int": [1, 3]},
         "dropout": {"uniform": [0.0, 0.5]}}
ACCURACY = {"metric": "val_accuracy", "direction": "maximize"}


def nothing_written_for(stores, name: str) -> bool:
    return (name not in optuna.study.get_all_study_names(stores.optuna_url)
            and MlflowClient(tracking_uri=stores.mlflow_uri).get_experiment_by_name(name) is None)


@pytest.mark.parametrize("objective, ours", [
    ({"metric": "val_loss", "direction": "minimize"}, "val_loss (minimize)"),
    ([ACCURACY, {"metric": "param_count", "direction": "maximize"}],
     "val_accuracy (maximize), param_count (maximize)"),
    ([{"metric": "param_count", "direction": "minimize"}, ACCURACY],
     "param_count (minimize), val_accuracy (maximize)"),
])
def test_other_objectives_are_refused_before_writing(stores, objective, ours):
    first = [ACCURACY, {"metric": "param_count", "direction": "minimize"}]
    drive(config("first", stores, SPACE, strategy="random", trials=2, objective=first[:1]))
    drive(config("pair", stores, SPACE, strategy="random", trials=2, objective=first))
    source = "pair" if isinstance(objective, list) else "first"
    theirs = ("val_accuracy (maximize), param_count (minimize)" if source == "pair"
              else "val_accuracy (maximize)")
    with pytest.raises(UserError) as e:
        drive(config("second", stores, SPACE, strategy="nsga2", trials=1,
                     objective=objective, warm_start=source))
    assert str(e.value) == (f"search.warm_start: study '{source}' optimizes {theirs}, this "
                            f"study {ours}; warm start needs the same objectives")
    assert nothing_written_for(stores, "second")


def test_other_metric_exits_2_in_one_line(stores, write_config):
    runner = CliRunner()
    first = write_config(small_config("first", stores, strategy="random", trials=1), "a.yaml")
    assert runner.invoke(app, ["run", str(first)]).exit_code == 0
    second = write_config(small_config("second", stores, trials=1), "b.yaml")
    res = runner.invoke(app, ["run", str(second), "--warm-start", "first", "--set",
                              "search.objective={metric: val_loss, direction: minimize}"])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines() == [
        "error: --warm-start: study 'first' optimizes val_accuracy (maximize), this study "
        "val_loss (minimize); warm start needs the same objectives"]
    assert nothing_written_for(stores, "second")


def new_points(study: optuna.Study) -> list[dict]:
    return [t.params for t in study.trials if "warm_start_from" not in t.user_attrs]


@pytest.mark.parametrize("strategy", ["random", "tpe"])
def test_warm_started_study_proposes_new_points(stores, strategy):
    """Seeded as the source was, the sampler would replay the source's first points
    (TPE samples at random for its first 10 trials, whatever the study holds)."""
    _, source = drive(config("first", stores, SPACE, strategy=strategy, trials=3))
    tried = [t.params for t in source.study.trials]
    _, a = drive(config("second", stores, SPACE, strategy=strategy, trials=3, warm_start="first"))
    _, b = drive(config("third", stores, SPACE, strategy=strategy, trials=3, warm_start="first"))
    assert [t.params for t in a.study.trials[:3]] == tried
    assert not [p for p in new_points(a.study) if p in tried]
    assert new_points(a.study) == new_points(b.study)       # still reproducible


def test_grid_search_is_not_warm_started(stores):
    """It learns nothing from earlier trials: it ran every source point again."""
    space = {"lr": {"loguniform": [1e-3, 1e-1]}, "depth": {"int": [1, 2]}}
    drive(config("first", stores, space, strategy="grid", grid_points=3, trials=4))
    with pytest.raises(UserError) as e:        # `validate` too: no store is read
        check_semantics(parse_config(config("second", stores, space, strategy="grid",
                                            grid_points=3, warm_start="first")))
    assert str(e.value).startswith("search.warm_start: grid search learns nothing from "
                                   "earlier trials, so it would run the points of 'first' again")


def test_warm_started_trials_are_told_apart_from_those_run_here(stores, write_config):
    """A study warm-started from another's 2 trials, running 1: `studies` counted 3
    complete, `best` showed the copies as its own trials, and `final` retrained a
    copy among trials tied at the best value. Here every trial ties (param_count
    of one fixed architecture)."""
    import json
    runner = CliRunner()
    tied = {"metric": "param_count", "direction": "minimize"}
    first = small_config("first", stores, strategy="random", trials=2, objective=tied)
    first["space"] = {"lr": {"loguniform": [1e-3, 1e-1]}}
    assert runner.invoke(app, ["run", str(write_config(first, "a.yaml"))]).exit_code == 0
    second = {**first, "study": "second"}
    res = runner.invoke(app, ["run", str(write_config(second, "b.yaml")), "--trials", "1",
                              "--warm-start", "first"])
    assert res.exit_code == 0, res.output
    rows = {r["study"]: r for r in json.loads(runner.invoke(app, ["studies", "--json", "--storage",
                                                         stores.optuna_url]).output)}
    assert (rows["second"]["complete"], rows["second"]["warm_started"]) == (1, 2)
    assert (rows["first"]["complete"], rows["first"]["warm_started"]) == (2, 0)
    assert "1 (+2 warm)" in runner.invoke(app, ["studies", "--storage", stores.optuna_url]).output
    shown = runner.invoke(app, ["best", "second", "--storage", stores.optuna_url]).output
    assert "0 (from first#0)" in shown and "1 (from first#1)" in shown, shown
    # --json: where a copied trial's run is (it has none in this study)
    listed = json.loads(runner.invoke(app, ["best", "second", "--json", "--storage",
                                            stores.optuna_url]).output)
    assert {t["number"]: t.get("warm_start_from") for t in listed} == {
        0: "first#0", 1: "first#1", 2: None}
    res = runner.invoke(app, ["final", "second", *stores.cli_args()])
    assert res.exit_code == 0, res.output
    assert ("note: trials 0, 1 and 2 tie at the best param_count; retraining trial 2, the "
            "first run here (--trial N for another)") in " ".join(res.output.split())
    study = optuna.load_study(study_name="second", storage=stores.optuna_url)
    assert study.user_attrs["final_test"]["trial"] == 2
