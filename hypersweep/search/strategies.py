"""Search strategies and pruners: names -> factories returning Optuna objects.

Optuna is the search engine; these tables are the whole of our wrapping. Grid
search is the one strategy Optuna's own GridSampler cannot serve (it has no
conditional spaces), so `grid` enqueues the points of `spaces.grid` in a seeded
order and lets them run as fixed trials.
"""
from __future__ import annotations

import math
import random
import warnings
from typing import Any, Callable, Mapping, Sequence

import optuna

from hypersweep.models.errors import UserError, given, shown, unknown
from hypersweep.search.config import PrunerConfig, SearchConfig
from hypersweep.spaces import (Conditional, Fixed, Space, distributions, grid, grid_point,
                               grid_size, walk)

SamplerFactory = Callable[[SearchConfig], optuna.samplers.BaseSampler]
PrunerFactory = Callable[[PrunerConfig, "int | None"], optuna.pruners.BasePruner]


def _quiet(factory: Callable[[], Any]) -> Any:
    # Several samplers are flagged experimental; users should not see that per study.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return factory()


def _tpe(cfg: SearchConfig) -> optuna.samplers.BaseSampler:
    # multivariate+group models conditional branches jointly; constant_liar keeps
    # parallel workers from being handed the same point while trials run.
    return _quiet(lambda: optuna.samplers.TPESampler(
        seed=cfg.seed, multivariate=True, group=True, constant_liar=True))


def _gp(cfg: SearchConfig) -> optuna.samplers.BaseSampler:
    # Parameters outside the space shared by all trials (conditional branches) go
    # to a seeded random sampler, so a conditional space stays reproducible.
    return _quiet(lambda: optuna.samplers.GPSampler(
        seed=cfg.seed, independent_sampler=optuna.samplers.RandomSampler(seed=cfg.seed),
        warn_independent_sampling=False))


def _cmaes(cfg: SearchConfig) -> optuna.samplers.BaseSampler:
    # CMA-ES models only the parameters every trial has; branch parameters are
    # sampled independently, which is expected here, not worth a warning per trial.
    return _quiet(lambda: optuna.samplers.CmaEsSampler(
        seed=cfg.seed, independent_sampler=optuna.samplers.RandomSampler(seed=cfg.seed),
        warn_independent_sampling=False))


def _qmc(cfg: SearchConfig) -> optuna.samplers.BaseSampler:
    return _quiet(lambda: optuna.samplers.QMCSampler(
        qmc_type="sobol", scramble=True, seed=cfg.seed,
        independent_sampler=optuna.samplers.RandomSampler(seed=cfg.seed),
        warn_independent_sampling=False))


SAMPLERS: dict[str, SamplerFactory] = {
    # grid: the points are enqueued (see queue_owed); the sampler only ever
    # fills in what no point fixes, which for a grid is nothing.
    "grid": lambda cfg: optuna.samplers.RandomSampler(seed=cfg.seed),
    "random": lambda cfg: optuna.samplers.RandomSampler(seed=cfg.seed),
    "tpe": _tpe,
    "gp": _gp,
    "cmaes": _cmaes,
    "qmc": _qmc,
    "nsga2": lambda cfg: optuna.samplers.NSGAIISampler(seed=cfg.seed),
}

SINGLE_OBJECTIVE_ONLY = {"cmaes"}      # Optuna's CmaEsSampler optimises one value

MEDIAN_WARMUP = 2      # median: epochs a trial is never pruned in, by default
PRUNERS: dict[str, PrunerFactory] = {
    "none": lambda p, max_epochs: optuna.pruners.NopPruner(),
    "median": lambda p, max_epochs: optuna.pruners.MedianPruner(
        n_startup_trials=_or(p.startup_trials, 5),
        # Reports are numbered by epoch from 1, and Optuna prunes from step
        # n_warmup_steps on: epochs 1..warmup_epochs are never pruned.
        n_warmup_steps=_or(p.warmup_epochs, MEDIAN_WARMUP) + 1),
    "asha": lambda p, max_epochs: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=_or(p.min_resource, 1), reduction_factor=_or(p.reduction_factor, 4)),
    "hyperband": lambda p, max_epochs: optuna.pruners.HyperbandPruner(
        min_resource=_or(p.min_resource, 1), reduction_factor=_or(p.reduction_factor, 3),
        max_resource=max_epochs if max_epochs else "auto"),
}

# The settings each pruner takes; any other setting is a user error, not ignored.
PRUNER_SETTINGS: dict[str, tuple[str, ...]] = {
    "none": (),
    "median": ("startup_trials", "warmup_epochs"),
    "asha": ("min_resource", "reduction_factor"),
    "hyperband": ("min_resource", "reduction_factor"),
}


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def make_sampler(cfg: SearchConfig) -> optuna.samplers.BaseSampler:
    return SAMPLERS[cfg.strategy](cfg)


def can_prune(cfg: SearchConfig) -> bool:
    """Whether a trial may ever be stopped early: a pruner, and one objective
    (Optuna prunes single-objective studies only)."""
    return cfg.pruner.name != "none" and len(cfg.objectives) == 1


def make_pruner(cfg: SearchConfig, max_epochs: int | None = None) -> optuna.pruners.BasePruner:
    """`max_epochs` (the study's fixed `params.epochs`) bounds hyperband's brackets."""
    return PRUNERS[cfg.pruner.name](cfg.pruner, max_epochs)


def check_pruner(p: PrunerConfig, max_epochs: int | None, by_default: bool = False,
                 searched: bool = False) -> None:
    """Settings that do not belong to the chosen pruner, or cannot work, are errors
    (`by_default`: `max_epochs` is the training options' default epochs;
    `searched`: the most epochs the space gives a trial)."""
    if searched:
        epochs_said = f"the most epochs the space searches, space.epochs ({max_epochs})"
    else:
        epochs_said = f"params.epochs ({max_epochs}{', the default' if by_default else ''})"
    allowed = PRUNER_SETTINGS[p.name]
    given = [n for n in PrunerConfig.model_fields if n != "name" and getattr(p, n) is not None]
    if given and "name" not in p.model_fields_set:      # {min_resource: 2}: whose?
        takes = sorted(n for n, settings in PRUNER_SETTINGS.items() if given[0] in settings)
        raise UserError(f"search.pruner.name: required beside {', '.join(given)}; "
                        f"{given[0]} is a setting of {' or '.join(takes)}")
    for name in PrunerConfig.model_fields:
        if name != "name" and getattr(p, name) is not None and name not in allowed:
            takes = ", ".join(allowed) or "no settings"
            raise UserError(f"search.pruner.{name}: not a setting of pruner {p.name}; "
                            f"{p.name} takes: {takes}")
    if p.name == "median" and max_epochs is not None:
        # Pruned from the epoch after the warm-up on, and never at the last epoch.
        warmup = _or(p.warmup_epochs, MEDIAN_WARMUP)
        if max_epochs < 2:
            raise UserError(f"search.pruner: median never prunes a trial of {epochs_said}: "
                            "a trial is not pruned at its last epoch; use pruner: none")
        if warmup > max_epochs - 2:
            given = "" if p.warmup_epochs is not None else " (the default)"
            raise UserError(f"search.pruner.warmup_epochs: {warmup}{given} must be at most "
                            f"{max_epochs - 2} with {epochs_said}, or no trial is ever pruned "
                            "(a trial is not pruned in its warm-up, nor at its last epoch)")
    min_resource = p.min_resource
    if min_resource is None and "min_resource" in allowed:
        min_resource = 1        # asha's and hyperband's default
    if min_resource is not None and max_epochs is not None and min_resource >= max_epochs:
        given = "" if p.min_resource is not None else " (the default)"
        raise UserError(f"search.pruner.min_resource: {min_resource}{given} must be below "
                        f"{epochs_said}, or no trial is ever pruned")


# ---------------------------------------------------------------- grid and warm start

# Grids up to this size are shuffled whole, as they always were (a rerun of an older
# study gets its points in the same order); larger ones are sampled point by point.
SHUFFLED_GRID = 100_000


def grid_points(space: Space, cfg: SearchConfig, count: int,
                skip: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """`count` points of the grid in a seeded order, so a budget smaller than the
    grid is a uniform subset of it rather than the corner where the first
    parameter is smallest; a larger budget keeps the smaller one's points first. A
    grid too large to list (billions of points, with a budget of a few hundred) is
    sampled by index. Fixed names are left out: they are never suggested, so never
    enqueued. Points in `skip` (the enqueued ones) are not drawn again."""
    skip = [dict(point) for point in skip]
    size = grid_size(space, cfg.grid_points)
    if size <= SHUFFLED_GRID:
        points = grid(space, cfg.grid_points)
        random.Random(cfg.seed).shuffle(points)
    else:
        # Distinct indices in the order drawn (random.sample cannot take a range
        # beyond 2**63; with a budget far below the grid, repeats are rare).
        rng, indices = random.Random(cfg.seed), dict[int, None]()
        while len(indices) < min(count + len(skip), size):
            indices.setdefault(rng.randrange(size))
        points = (grid_point(space, cfg.grid_points, i) for i in indices)
    drawn: list[dict[str, Any]] = []
    for point in points:
        asked = suggested(space, point)
        point = {k: v for k, v in point.items() if k in asked}
        if point not in skip:
            drawn.append(point)
        if len(drawn) == count:
            break
    return drawn


def suggested(space: Space, point: Mapping[str, Any]) -> set[str]:
    """The names a trial at `point` is asked for: those searched in the branches
    the point chooses. Fixed ones are never suggested, so never enqueued (a name
    one branch fixes and another searches is either)."""
    names: set[str] = set()
    for name, p in space.items():
        if not isinstance(p, Fixed):
            names.add(name)
        if isinstance(p, Conditional):
            names |= suggested(p.branches[point[name]], point)
    return names


def owed_points(space: Space, cfg: SearchConfig) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The points a study of this budget runs whatever its sampler proposes, in order,
    each with its trial's user attributes: `search.enqueue`, then (grid search) the
    grid's points, no more than `search.trials` in all."""
    budget = cfg.trials if cfg.trials is not None else len(cfg.enqueue) + 1_000_000
    owed = [(dict(point), {"enqueued": True}) for point in cfg.enqueue[:budget]]
    if cfg.strategy == "grid":
        owed += [(point, {}) for point in grid_points(space, cfg, max(0, budget - len(owed)),
                                                      skip=cfg.enqueue)]
    return owed


def queue_owed(study: optuna.Study, space: Space, cfg: SearchConfig, counted: int) -> int:
    """Queue each owed point (owed_points) that no trial of the study has taken, as
    many as the budget has room for beside the `counted` trials already run and
    those queued. A trial takes a point when its parameters include the point's,
    and it finished (COMPLETE, PRUNED, or FAIL other than by an interruption) or is
    queued. A new study queues them all; a resumed one, those an interruption
    lost (a grid point whose trial was stopped by Ctrl-C) and those a larger
    budget adds (`resume --trials`): the grid's sampler would otherwise have drawn
    random points off the grid. Returns how many were queued."""
    states = optuna.trial.TrialState
    trials = [t for t in study.get_trials(deepcopy=False) if "warm_start_from" not in t.user_attrs]
    waiting = [t for t in trials if t.state is states.WAITING]
    taken = [t.system_attrs.get("fixed_params", t.params) for t in waiting]
    taken += [t.params for t in trials if t.state.is_finished()
              and not t.user_attrs.get("interrupted")]
    room = (cfg.trials if cfg.trials is not None else 1_000_000) - counted - len(waiting)
    queued = 0
    for point, attrs in owed_points(space, cfg):
        took = next((i for i, params in enumerate(taken)
                     if all(k in params and params[k] == v for k, v in point.items())), None)
        if took is not None:
            del taken[took]         # one trial takes one point
        elif queued < room:
            study.enqueue_trial(point, user_attrs=attrs)
            queued += 1
    return queued


def check_enqueue(points: Sequence[Mapping[str, Any]], space: Space) -> None:
    """Every enqueued value must name a searched parameter and lie inside its range."""
    dists = distributions(space)
    paths: dict[str, list] = {}
    for name, p, _, path in walk(space):
        if not isinstance(p, Fixed):        # where it is searched: only there is it asked
            paths.setdefault(name, []).append(path)
    for i, point in enumerate(points):
        for name, value in point.items():
            key = f"search.enqueue[{i}].{name}"
            if name not in dists:
                raise unknown("searched parameter", name, dists, key=key)
            numeric = not isinstance(dists[name], optuna.distributions.CategoricalDistribution)
            if numeric and (isinstance(value, (str, bool)) or value is None):
                # `lr: "0.01"` was called outside the space, a number in quotes
                raise UserError(f"{key}: expected a number, got {given(value)}")
            if not in_distribution(dists[name], value):
                raise UserError(f"{key}: {shown(value)} is outside the space "
                                f"({describe_distribution(dists[name])})")
            # A name of one branch next to another branch's choice, or without the
            # choice of its branch (which the sampler then draws), would be ignored.
            if any(all(point.get(c) == b for c, b in path) for path in paths[name]):
                continue
            c, b = next((c, b) for c, b in paths[name][0] if point.get(c) != b)
            if c in point:
                raise UserError(f"{key}: belongs to {c}={b}, but this set chooses "
                                f"{c}={point[c]}")
            raise UserError(f"{key}: belongs to {c}={b}; give {c}: {b} in this set too, "
                            "or the sampler may choose another branch and ignore it")


def in_distribution(dist: optuna.distributions.BaseDistribution, value: Any) -> bool:
    """Whether Optuna would accept `value` for `dist` (range, step, exact choice type).
    Optuna's own check (`_contains`) is private and trusts the type; the type is
    checked here so `true` is not taken for the integer 1."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return any(value == c and type(value) is type(c) for c in dist.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False        # NaN: Optuna's conversion raises ("`nan` is invalid value")
    if isinstance(dist, optuna.distributions.IntDistribution) and value != int(value):
        return False
    return dist._contains(dist.to_internal_repr(value))


def describe_distribution(dist: optuna.distributions.BaseDistribution) -> str:
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return "one of " + ", ".join(map(repr, dist.choices))
    step = getattr(dist, "step", None)
    step_s = f" step {step}" if step not in (None, 1) else ""
    return f"[{dist.low}, {dist.high}]{step_s}{' log' if dist.log else ''}"
