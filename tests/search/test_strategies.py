"""Every search strategy against one contract, grid and random in detail, warm start.

Strategies are exercised through Optuna itself (in-memory studies, ask/tell with
our suggest calls) for the contract and the statistics, and through the real
driver with real SQLite stores for grid, enqueue and warm start.
"""
from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest
from scipy import stats

from hypersweep.models.errors import UserError
from hypersweep.models.trial import TrialResult, TrialState
from hypersweep.search.config import SearchConfig, parse_config
from hypersweep.search.driver import StudyDriver
from hypersweep.search.executors import SerialExecutor
from hypersweep.search.strategies import SAMPLERS, in_distribution, make_sampler, queue_owed
from hypersweep.search.tracking import MlflowTracker
from hypersweep.spaces import distributions, parse_space, suggest
from tests.conftest import study_runs
from tests.search.events import Recorder

SPACE = parse_space({
    "lr": {"loguniform": [1e-4, 1e-1]},
    "width": {"intlog": [8, 256]},
    "depth": {"int": [1, 4]},
    "dropout": {"uniform": [0.0, 0.5]},
    "activation": {"choice": ["relu", "tanh"]},
    "optimizer": {"choice": {"momentum": {"momentum": {"uniform": [0.5, 0.99]}},
                             "adam": {"beta2": {"choice": [0.99, 0.999]}},
                             "rmsprop": {}}},
})
BRANCH_PARAMS = {"momentum": {"momentum"}, "adam": {"beta2"}, "rmsprop": set()}
COMMON = {"lr", "width", "depth", "dropout", "activation", "optimizer"}


def toy_objective(params: dict) -> float:
    """A smooth, deterministic stand-in for validation accuracy."""
    bonus = {"momentum": 0.05, "adam": 0.1, "rmsprop": 0.0}[params["optimizer"]]
    return (-(math.log10(params["lr"]) + 2.5) ** 2 - 0.1 * (params["depth"] - 2) ** 2
            - params["dropout"] + bonus + 0.01 * math.log(params["width"]))


def ask_tell(strategy: str, seed: int, n: int, objectives: int = 1) -> list[dict]:
    cfg = SearchConfig(strategy=strategy, seed=seed, grid_points=2)
    study = optuna.create_study(sampler=make_sampler(cfg),
                                directions=["maximize"] * objectives)
    queue_owed(study, SPACE, cfg, counted=0)
    seen = []
    for _ in range(n):
        trial = study.ask()
        params = suggest(SPACE, trial)
        value = toy_objective(params)
        study.tell(trial, [value, -params["width"]][:objectives])
        seen.append(params)
    return seen


@pytest.mark.parametrize("strategy", sorted(SAMPLERS))
def test_strategy_contract(strategy):
    """Within the space, only the chosen branch's parameters, same seed -> same points."""
    n = 12     # past every sampler's start-up phase (10 random trials for tpe, gp, ...)
    first = ask_tell(strategy, seed=5, n=n)
    assert_in_space(first)
    assert ask_tell(strategy, seed=5, n=n) == first
    assert ask_tell(strategy, seed=6, n=n) != first
    assert len({str(sorted(p.items())) for p in first}) == n      # no point suggested twice


def assert_in_space(points: list[dict]) -> None:
    dists = distributions(SPACE)
    for params in points:
        branch = params["optimizer"]
        assert set(params) == COMMON | BRANCH_PARAMS[branch], params
        for name, value in params.items():
            assert in_distribution(dists[name], value), (name, value)


@pytest.mark.parametrize("strategy", ["nsga2", "tpe", "gp", "random", "qmc", "grid"])
def test_multi_objective_strategies(strategy):
    points = ask_tell(strategy, seed=1, n=6, objectives=2)
    assert len(points) == 6
    assert_in_space(points)
    assert ask_tell(strategy, seed=1, n=6, objectives=2) == points


@pytest.mark.parametrize("objective, strategy, message", [
    ([{"metric": "val_accuracy", "direction": "maximize"},
      {"metric": "param_count", "direction": "minimize"}], "cmaes",
     "search.strategy: cmaes optimises a single objective; for a list of objectives use nsga2"),
    ([{"metric": "val_accuracy", "direction": "maximize"},
      {"metric": "val_accuracy", "direction": "minimize"}], "tpe",
     "search.objective[1].metric: 'val_accuracy' is already an objective"),
    ([], "tpe", "search.objective: an empty list; give a metric and a direction"),
    ({"metric": "val_acc", "direction": "maximize"}, "tpe",
     "search.objective.metric: unknown metric 'val_acc' (did you mean 'val_accuracy'?)"),
    ({"metric": "val_loss", "direction": "maximize"}, "tpe",
     "search.objective.direction: maximize, but a lower val_loss is better; "
     "use direction: minimize"),
    ([{"metric": "param_count", "direction": "maximize"},
      {"metric": "train_accuracy", "direction": "minimize"}], "nsga2",
     "search.objective[1].direction: minimize, but a higher train_accuracy is better; "
     "use direction: maximize"),
])
def test_bad_objectives(stores, objective, strategy, message):
    from hypersweep.search.config import check_semantics

    raw = config("obj", stores, {"lr": {"loguniform": [1e-4, 1e-1]}}, strategy=strategy,
                 objective=objective)
    with pytest.raises(UserError) as e:
        check_semantics(parse_config(raw))
    assert str(e.value).startswith(message)


# ---------------------------------------------------------------- grid

def fake_train(spec, report) -> TrialResult:
    """A fast deterministic trial: one epoch whose accuracy depends on the params."""
    acc = 1 / (1 + abs(math.log10(spec.params.get("lr", 1e-2)) + 2))
    metrics = {"val_accuracy": acc, "val_loss": 1 - acc, "train_loss": 1 - acc,
               "param_count": float(spec.params.get("width", 32)), "inference_ms": 0.1}
    report(1, metrics)
    return TrialResult(TrialState.COMPLETE, metrics, (metrics,), 1)


def drive(raw: dict, train=fake_train):
    cfg = parse_config(raw)
    outcome = StudyDriver(cfg, SerialExecutor(train=train), MlflowTracker(cfg.tracking.uri)).run()
    return cfg, outcome


def config(name: str, stores, space: dict, **search) -> dict:
    return {"study": name, "model": "mlp", "params": {"epochs": 1}, "space": space,
            "search": {"seed": 3, **search},
            "tracking": {"uri": stores.mlflow_uri, "storage": stores.optuna_url}}


GRID_SPACE = {
    "lr": {"loguniform": [1e-3, 1e-1]},
    "depth": {"int": [1, 2]},
    "optimizer": {"choice": {"momentum": {"momentum": {"uniform": [0.5, 0.9]}},
                             "adam": {"beta2": {"choice": [0.99, 0.999]}},
                             "rmsprop": {}}},
}


def expected_grid() -> set:
    points = set()
    for lr in (0.001, 0.01, 0.1):                                   # log-spaced
        for depth in (1, 2):
            for m in (0.5, 0.7, 0.9):                               # linear
                points.add((("depth", depth), ("lr", lr), ("momentum", m), ("optimizer", "momentum")))
            for b in (0.99, 0.999):
                points.add((("beta2", b), ("depth", depth), ("lr", lr), ("optimizer", "adam")))
            points.add((("depth", depth), ("lr", lr), ("optimizer", "rmsprop")))
    return points


def test_grid_runs_exactly_the_grid_and_stops(stores):
    """trials defaults to the grid size; a larger budget stops when the grid is exhausted."""
    cfg, outcome = drive(config("grid", stores, GRID_SPACE, strategy="grid", grid_points=3,
                                trials=100))
    assert cfg.search.trials == 3 * 2 * (3 + 2 + 1) == 36
    trials = outcome.study.trials
    got = [tuple(sorted(t.params.items())) for t in trials]
    assert len(got) == 36 and set(got) == expected_grid()          # every point once
    assert parse_config(config("g2", stores, GRID_SPACE, strategy="grid",
                               grid_points=3)).search.trials == 36


@pytest.mark.parametrize("strategy", ["grid", "tpe"])
def test_a_name_one_branch_fixes_and_another_searches(stores, strategy):
    """`sgd: {momentum: 0.0}` beside a branch searching momentum: each trial trains
    with its branch's momentum, and only the searched one is an Optuna param (the
    grid enqueued the fixed one too, as if searched)."""
    space = {"lr": {"choice": [0.01, 0.1]},
             "optimizer": {"choice": {"sgd": {"momentum": 0.0},
                                      "momentum": {"momentum": {"uniform": [0.5, 0.9]}},
                                      "rmsprop": {"momentum": {"fixed": 0.3}}}}}
    trained: list[dict] = []

    def train(spec, report):
        trained.append(dict(spec.params))
        return fake_train(spec, report)

    cfg, outcome = drive(config(f"fixed-{strategy}", stores, space, strategy=strategy,
                                grid_points=2, trials=8), train)
    trials = outcome.study.trials
    assert len(trials) == 8 and all(t.state.name == "COMPLETE" for t in trials)
    by_branch = {"sgd": 0.0, "rmsprop": 0.3}
    for t, params in zip(trials, trained):
        branch = t.params["optimizer"]
        assert ("momentum" in t.params) == (branch == "momentum")
        if branch == "momentum":
            assert 0.5 <= params["momentum"] <= 0.9 and params["momentum"] == t.params["momentum"]
        else:
            assert params["momentum"] == by_branch[branch]
    if strategy == "grid":          # 2 lr x (1 + 2 + 1): every point once
        assert {tuple(sorted(t.params.items())) for t in trials} == {
            (("lr", lr), ("optimizer", "sgd")) for lr in (0.01, 0.1)} | {
            (("lr", lr), ("optimizer", "rmsprop")) for lr in (0.01, 0.1)} | {
            (("lr", lr), ("momentum", m), ("optimizer", "momentum"))
            for lr in (0.01, 0.1) for m in (0.5, 0.9)}


def test_grid_order_is_seeded_so_a_small_budget_is_a_spread_subset(stores):
    cfg, outcome = drive(config("grid-part", stores, GRID_SPACE, strategy="grid",
                                grid_points=3, trials=8))
    got = [tuple(sorted(t.params.items())) for t in outcome.study.trials]
    assert len(got) == 8 and set(got) < expected_grid()
    assert len({dict(p)["optimizer"] for p in got}) > 1     # not just the first branch


def grid_of(trials) -> list:
    return [tuple(sorted(t.params.items())) for t in trials
            if t.state is optuna.trial.TrialState.COMPLETE]


def test_an_enqueued_point_of_the_grid_runs_once(stores):
    """The budget was the grid plus every enqueued point: one on the grid ran twice."""
    on, off = {"lr": 0.01, "depth": 1, "optimizer": "rmsprop"}, {"lr": 0.02, "depth": 1,
                                                                 "optimizer": "rmsprop"}
    cfg, outcome = drive(config("grid-enq", stores, GRID_SPACE, strategy="grid", grid_points=3,
                                enqueue=[on, off]))
    assert cfg.search.trials == 36 + 1
    got = grid_of(outcome.study.trials)
    assert got[:2] == [tuple(sorted(on.items())), tuple(sorted(off.items()))]     # first
    assert len(got) == 37 and set(got) == expected_grid() | {tuple(sorted(off.items()))}


def interrupted_at(number: int):
    """A trainer that is stopped by Ctrl-C in trial `number`."""
    def train(spec, report):
        if spec.trial_number == number:
            raise KeyboardInterrupt
        return fake_train(spec, report)
    return train


def test_a_trial_cut_short_by_a_stop_is_told_as_interrupted(stores):
    """The progress bar counted it as a trial run (1/2, 1 failed), where resume
    runs it again: it does not count against the budget."""
    cfg = parse_config(config("cut", stores, GRID_SPACE, strategy="random", trials=3))
    events = Recorder()
    outcome = StudyDriver(cfg, SerialExecutor(train=interrupted_at(1)),
                          MlflowTracker(cfg.tracking.uri), events=events).run()
    assert outcome.interrupted
    assert [(e.number, e.state, e.interrupted) for e in events.ended] == [
        (0, TrialState.COMPLETE, False), (1, TrialState.FAIL, True)]


@pytest.mark.parametrize("first", ["interrupted", "a smaller budget"])
def test_resuming_a_grid_runs_the_rest_of_its_points(stores, first):
    """Resumed, a grid study ran random points off the grid: the sampler behind a
    grid is a random one, and only a new study queued the grid's points. Now each
    point a trial has not taken is queued: the interrupted trial's point (its
    trial failed), and those a larger budget adds (`resume --trials`)."""
    raw = config("grid-resume", stores, GRID_SPACE, strategy="grid", grid_points=3,
                 enqueue=[{"lr": 0.02, "depth": 1, "optimizer": "rmsprop"}])
    if first == "interrupted":
        _, outcome = drive(raw, interrupted_at(3))
        assert outcome.interrupted and len(grid_of(outcome.study.trials)) == 3
    else:
        drive({**raw, "search": {**raw["search"], "trials": 5}})
    cfg = parse_config(raw)
    events = Recorder()
    outcome = StudyDriver(cfg, SerialExecutor(train=fake_train), MlflowTracker(cfg.tracking.uri),
                          events=events).run(resume=True)
    got = grid_of(outcome.study.trials)
    assert len(got) == 37 == cfg.search.trials                      # each point once
    # The progress shown adds up to the budget: the interrupted trial is not in it.
    assert sum(events.ended[-1].counts.values()) == 37
    assert set(got) == expected_grid() | {(("depth", 1), ("lr", 0.02), ("optimizer", "rmsprop"))}


def test_a_grid_too_large_to_list_is_sampled_within_the_budget(stores):
    """Ten parameters of 1,000 values: 10**30 points, which used to be listed (and
    shuffled) whole before the first trial, for a budget of 5. Sampled by index:
    distinct points of the grid, seeded. Without a budget it is a one-line error."""
    from hypersweep.search.strategies import grid_points
    from hypersweep.spaces import axis, parse_space
    space = {f"p{i}": {"uniform": [0.0, 1.0]} for i in range(10)}
    cfg, outcome = drive(config("huge", stores, space, strategy="grid", grid_points=1000, trials=5))
    got = [t.params for t in outcome.study.trials]
    values = set(axis(parse_space(space)["p0"], 1000))
    assert len(got) == 5 and len({tuple(sorted(p.items())) for p in got}) == 5
    assert all(set(p) == set(space) and set(p.values()) <= values for p in got)
    assert got == grid_points(parse_space(space), cfg.search, 5)        # seeded: the same again
    with pytest.raises(UserError, match=r"^search.trials: the grid has 1,000,000,000,000,000,"):
        parse_config(config("huge2", stores, space, strategy="grid", grid_points=1000))


# ---------------------------------------------------------------- random

def test_random_log_range_is_log_uniform_and_linear_uniform():
    space = parse_space({"lr": {"loguniform": [1e-5, 1.0]}, "p": {"uniform": [0.0, 0.5]}})
    study = optuna.create_study(sampler=make_sampler(SearchConfig(strategy="random", seed=0)))
    lrs, ps = [], []
    for _ in range(2000):
        trial = study.ask()
        params = suggest(space, trial)
        study.tell(trial, 0.0)
        lrs.append(params["lr"])
        ps.append(params["p"])
    log_lr = np.log(lrs)
    low, high = math.log(1e-5), 0.0
    assert stats.kstest(log_lr, stats.uniform(low, high - low).cdf).pvalue > 0.01
    assert stats.kstest(ps, stats.uniform(0.0, 0.5).cdf).pvalue > 0.01
    # The test can fail: uniform on the raw values is rejected for the log range,
    # and the values are continuous, never binned.
    assert stats.kstest(lrs, stats.uniform(1e-5, 1.0).cdf).pvalue < 1e-6
    assert len(set(lrs)) == len(lrs)


# ---------------------------------------------------------------- enqueue and warm start

def test_enqueued_sets_run_first(stores):
    space = {"lr": {"loguniform": [1e-4, 1e-1]}, "width": {"int": [8, 64]}}
    enqueue = [{"lr": 0.01, "width": 16}, {"lr": 0.001}]
    _, outcome = drive(config("enq", stores, space, strategy="tpe", trials=4, enqueue=enqueue))
    t = outcome.study.trials
    assert t[0].params == {"lr": 0.01, "width": 16}
    assert t[1].params["lr"] == 0.001 and 8 <= t[1].params["width"] <= 64
    assert len(t) == 4


@pytest.mark.parametrize("enqueue, message", [
    ([{"lr": 0.5}], "search.enqueue[0].lr: 0.5 is outside the space ([0.0001, 0.1] log)"),
    ([{"lr": math.nan}], "search.enqueue[0].lr: nan is outside the space"),    # was a traceback
    ([{}, {"lrr": 0.01}], "search.enqueue[1].lrr: unknown searched parameter 'lrr' (did you mean 'lr'?)"),
    ([{"optimizer": "adam", "momentum": 0.6}],
     "search.enqueue[0].momentum: belongs to optimizer=momentum, but this set chooses optimizer=adam"),
    ([{"optimizer": "sgd"}], "search.enqueue[0].optimizer: 'sgd' is outside the space (one of"),
    # Without its branch's choice the sampler drew another branch half the time.
    ([{"momentum": 0.6}], "search.enqueue[0].momentum: belongs to optimizer=momentum; give "
                          "optimizer: momentum in this set too, or the sampler may choose "
                          "another branch and ignore it"),
])
def test_bad_enqueue_is_one_line_error(stores, enqueue, message):
    from hypersweep.search.config import check_semantics

    space = {"lr": {"loguniform": [1e-4, 1e-1]},
             "optimizer": {"choice": {"momentum": {"momentum": {"uniform": [0.5, 0.9]}},
                                      "adam": {}}}}
    with pytest.raises(UserError) as e:
        check_semantics(parse_config(config("bad", stores, space, enqueue=enqueue)))
    assert str(e.value).startswith(message)


def test_warm_start_seeds_the_new_study(stores):
    space = {"lr": {"loguniform": [1e-4, 1e-1]}, "depth": {"int": [1, 3]}}
    drive(config("first", stores, space, strategy="random", trials=5))
    cfg, outcome = drive(config("second", stores, {**space, "dropout": {"uniform": [0, 0.5]}},
                                strategy="tpe", trials=3, warm_start="first"))
    trials = outcome.study.trials
    assert len(trials) == 8
    assert [t.user_attrs.get("warm_start_from") for t in trials[:5]] == [f"first#{i}" for i in range(5)]
    old = optuna.load_study(study_name="first", storage=stores.optuna_url)
    # dropout, searched here, was the builder's default there: the warm trials hold it.
    assert [t.params for t in trials[:5]] == [{**t.params, "dropout": 0.0} for t in old.trials]
    parent, children = study_runs(stores.mlflow_uri, "second")
    assert len(children) == 3                       # only the new trials are trained
    assert parent.data.tags["warm_start"] == "first (5 trials)"


def test_incompatible_warm_start_is_refused_before_writing(stores):
    from mlflow.tracking import MlflowClient

    space = {"lr": {"loguniform": [1e-4, 1e-1]}, "depth": {"int": [1, 3]}}
    first = config("first", stores, space, strategy="random", trials=6, seed=0)
    drive({**first, "params": {**first["params"], "width": 256}})
    cases = [
        ({**space, "lr": {"loguniform": [1e-2, 1e-1]}}, "first",
         "outside this study's space ([0.01, 0.1] log); the spaces are not compatible"),
        ({"lr": space["lr"]}, "first",
         "has parameter 'depth', which this study does not search; the spaces are not compatible"),
        (space, "frist", "search.warm_start: unknown study 'frist' (did you mean 'first'?)"),
    ]
    def second(new_space, warm="first", **changes):
        raw = config("second", stores, new_space, trials=2, warm_start=warm)
        fixed = {} if "width" in new_space else {"width": 256}      # as the first study's
        return {**raw, "params": {**raw["params"], **fixed}, **changes}

    cases += [
        # width, searched here, was fixed there at 256: outside [8, 64].
        ({**space, "width": {"int": [8, 64]}}, "first",
         "trial 0 trained with (fixed there) width=256, outside this study's space ([8, 64]); "
         "the spaces are not compatible"),
        # batch_size, the default 64 there: not one of these choices (Optuna's own
        # refusal of the value, wrapped in "no value of its params", had been shown).
        ({**space, "batch_size": {"choice": [16, 32]}}, "first",
         "trial 0 trained with (fixed there) batch_size=64, outside this study's space"),
    ]
    raws = [second(new_space, warm) for new_space, warm, _ in cases]
    messages = [message for _, _, message in cases]
    raws += [second(space, params={"epochs": 3, "width": 256}),
             second({}, model="linear", params={"epochs": 1})]
    messages += [
        "search.warm_start first: its trials trained with other fixed hyperparameters "
        "(params.epochs: 1 there, 3 here); warm start needs the same",
        "search.warm_start first: its trials trained model 'mlp', this study's 'linear'; "
        "warm start needs the same model"]
    for raw, message in zip(raws, messages):
        with pytest.raises(UserError) as e:
            drive(raw)
        assert message in str(e.value)
        assert optuna.study.get_all_study_names(stores.optuna_url) == ["first"]
        assert MlflowClient(tracking_uri=stores.mlflow_uri).get_experiment_by_name("second") is None


# ---------------------------------------------------------------- objectives and importance

def test_multi_objective_nsga2_logs_pareto_front(stores):
    space = {"lr": {"loguniform": [1e-4, 1e-1]}, "width": {"intlog": [8, 256]}}
    objective = [{"metric": "val_accuracy", "direction": "maximize"},
                 {"metric": "param_count", "direction": "minimize"}]
    _, outcome = drive(config("moo", stores, space, strategy="nsga2", trials=8,
                              objective=objective))
    assert all(len(t.values) == 2 for t in outcome.study.trials)
    assert outcome.study.best_trials
    assert set(outcome.importances) == {"val_accuracy", "param_count"}
    # width alone sets param_count in fake_train (fANOVA on 8 trials is coarse: order only)
    assert outcome.importances["param_count"]["width"] > outcome.importances["param_count"]["lr"]
    for per in outcome.importances.values():
        assert sum(per.values()) == pytest.approx(1.0)
    from mlflow.tracking import MlflowClient
    parent, _ = study_runs(stores.mlflow_uri, "moo")
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    files = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"pareto_front.json", "pareto_front.png"} <= files
    front = json.load(open(client.download_artifacts(parent.info.run_id, "pareto_front.json")))
    assert [t["number"] for t in front] == [t.number for t in outcome.study.best_trials]
    assert set(front[0]["values"]) == {"val_accuracy", "param_count"}
    assert parent.data.metrics["pareto_front_size"] == len(front)


def test_infinite_objective_fails_the_trial(stores):
    def infinite(spec, report):
        value = [math.inf, -math.inf][spec.trial_number]
        return TrialResult(TrialState.COMPLETE, {"val_accuracy": value}, (), 1)

    _, outcome = drive(config("inf", stores, {"lr": {"loguniform": [1e-4, 1e-1]}}, trials=2),
                       train=infinite)
    assert outcome.counts["FAIL"] == 2
    reasons = [t.user_attrs["reason"] for t in outcome.study.trials]
    assert reasons == ["objective val_accuracy is inf", "objective val_accuracy is -inf"]


def test_importance_logged_to_parent_run(stores):
    from mlflow.tracking import MlflowClient

    space = {"lr": {"loguniform": [1e-4, 1e-1]}, "depth": {"int": [1, 3]}}
    _, outcome = drive(config("imp", stores, space, strategy="random", trials=8))
    parent, _ = study_runs(stores.mlflow_uri, "imp")
    imps = outcome.importances["val_accuracy"]
    assert set(imps) == {"lr", "depth"} and imps["lr"] > imps["depth"]   # only lr matters
    assert parent.data.metrics["importance_lr"] == pytest.approx(imps["lr"])
    files = [f.path for f in MlflowClient(tracking_uri=stores.mlflow_uri).list_artifacts(parent.info.run_id)]
    assert "param_importance.png" in files


def test_the_importance_figure_says_a_few_trials_are_a_rough_guide():
    """run prints "a rough guide below 10" beside importances over a handful of
    trials; the figure logged to MLflow showed the same bars without a word."""
    from hypersweep.search.importance import importance_label
    assert importance_label(4) == "importance (fANOVA over 4 complete trials: a rough guide)"
    assert importance_label(10) == importance_label(0) == "importance (fANOVA)"
