"""A space as Optuna sees it: suggest calls on a trial, and distributions."""
from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hypersweep.spaces.language import (Categorical, Conditional, Fixed, Float, Int, Param, Space,
                                        walk)


def suggest(space: Space, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Ask the trial for every active parameter; returns the flat name -> value dict.

    Only the chosen branch of a conditional is suggested, so Optuna records exactly
    the parameters that shaped this trial. Fixed values are returned, not suggested:
    they are not part of the search and would only clutter the sampler's space.
    """
    values: dict[str, Any] = {}
    _suggest_into(space, trial, values)
    return values


def _suggest_into(space: Space, trial: optuna.trial.BaseTrial, out: dict[str, Any]) -> None:
    for name, param in space.items():
        out[name] = _suggest_one(name, param, trial)
        if isinstance(param, Conditional):
            _suggest_into(param.branches[out[name]], trial, out)


def _suggest_one(name: str, p: Param, trial: optuna.trial.BaseTrial) -> Any:
    if isinstance(p, Float):
        return trial.suggest_float(name, p.low, p.high, log=p.log)
    if isinstance(p, Int):
        return trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
    if isinstance(p, Categorical):
        return trial.suggest_categorical(name, p.values)
    if isinstance(p, Conditional):
        return trial.suggest_categorical(name, tuple(p.branches))
    return p.value


def distributions(space: Space) -> dict[str, BaseDistribution]:
    """The Optuna distribution of every searched name, in all branches.

    Fixed names are left out: no trial ever records them as params.
    """
    return {name: _distribution(p) for name, p, _, _ in walk(space)
            if not isinstance(p, Fixed)}


def _distribution(p: Param) -> BaseDistribution:
    if isinstance(p, Float):
        return FloatDistribution(p.low, p.high, log=p.log)
    if isinstance(p, Int):
        return IntDistribution(p.low, p.high, log=p.log, step=p.step)
    if isinstance(p, Categorical):
        return CategoricalDistribution(p.values)
    assert isinstance(p, Conditional)
    return CategoricalDistribution(tuple(p.branches))
