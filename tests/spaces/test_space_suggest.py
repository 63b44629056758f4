"""suggest() and distributions() against a real in-memory Optuna study."""
from __future__ import annotations

import math

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hypersweep.spaces import distributions, grid, parse_space, suggest

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = parse_space(yaml.safe_load("""
lr:      {loguniform: [1.0e-4, 1.0e-1]}
dropout: {uniform: [0.0, 0.5]}
depth:   {int: [1, 4]}
width:   {int: [16, 128], step: 16}
units:   {intlog: [8, 512]}
act:     {choice: [relu, tanh, null]}
epochs:  30
optimizer:
  choice:
    sgd:  {momentum: {uniform: [0.0, 0.99]}, nesterov: {choice: [true, false]}}
    adam: {beta2: {choice: [0.99, 0.999]}}
    rmsprop: {}
"""))

BRANCH_PARAMS = {"sgd": {"momentum", "nesterov"}, "adam": {"beta2"}, "rmsprop": set()}
TOP = {"lr", "dropout", "depth", "width", "units", "act", "epochs", "optimizer"}


@pytest.fixture(scope="module")
def sampled() -> list[tuple[dict, optuna.trial.FrozenTrial]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(200):
        trial = study.ask()
        values = suggest(SPACE, trial)
        study.tell(trial, 0.0)
        out.append((values, study.trials[-1]))
    return out


def test_values_are_within_bounds_and_typed(sampled):
    for values, _ in sampled:
        assert 1e-4 <= values["lr"] <= 1e-1
        assert 0.0 <= values["dropout"] <= 0.5
        assert values["depth"] in {1, 2, 3, 4}
        assert values["width"] in set(range(16, 129, 16))
        assert 8 <= values["units"] <= 512
        for name in ("depth", "width", "units"):
            assert type(values[name]) is int
        assert values["act"] in ("relu", "tanh", None)
        assert values["epochs"] == 30


def test_log_params_cover_the_decades(sampled):
    lrs = [v["lr"] for v, _ in sampled]
    assert all(lr > 0 for lr in lrs)
    # Log-uniform: each decade gets about a third; a linear sampler would put ~90% in the top.
    decades = {math.floor(math.log10(lr)) for lr in lrs}
    assert decades == {-4, -3, -2}
    assert sum(lr < 1e-2 for lr in lrs) > 100


def test_conditional_params_appear_only_with_their_branch(sampled):
    seen = set()
    for values, frozen in sampled:
        branch = values["optimizer"]
        seen.add(branch)
        assert set(values) == TOP | BRANCH_PARAMS[branch]
        # Optuna records exactly the searched, active names: no fixed, no other branch.
        assert set(frozen.params) == (TOP - {"epochs"}) | BRANCH_PARAMS[branch]
        if branch == "sgd":
            assert 0.0 <= values["momentum"] <= 0.99
            assert values["nesterov"] in (True, False)
        if branch == "adam":
            assert values["beta2"] in (0.99, 0.999)
    assert seen == {"sgd", "adam", "rmsprop"}


def test_distributions_cover_every_searched_name():
    dists = distributions(SPACE)
    assert set(dists) == (TOP - {"epochs"}) | {"momentum", "nesterov", "beta2"}
    assert dists["lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["width"] == IntDistribution(16, 128, step=16)
    assert dists["units"] == IntDistribution(8, 512, log=True)
    assert dists["optimizer"] == CategoricalDistribution(("sgd", "adam", "rmsprop"))
    assert dists["act"] == CategoricalDistribution(("relu", "tanh", None))


def test_distributions_match_what_trials_record(sampled):
    dists = distributions(SPACE)
    for _, frozen in sampled:
        for name, dist in frozen.distributions.items():
            assert dists[name] == dist


def test_enqueued_grid_points_are_replayed_exactly():
    space = parse_space({"lr": {"loguniform": [1e-3, 1e-1]}, "epochs": 3,
                         "opt": {"choice": {"sgd": {"momentum": {"uniform": [0, 0.9]}},
                                            "adam": {}}}})
    dists = distributions(space)
    points = grid(space, 3)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for point in points:
        study.enqueue_trial({k: v for k, v in point.items() if k in dists})
    for point in points:
        trial = study.ask()
        assert suggest(space, trial) == point
        study.tell(trial, 0.0)
