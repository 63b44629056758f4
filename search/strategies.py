"""Search strategies and pruners: names -> factories returning Optuna objects.

Optuna is the search engine; this table is the whole of our wrapping.
"""
from __future__ import annotations

import warnings
from typing import Callable

import optuna

from search.config import SearchConfig

SamplerFactory = Callable[[SearchConfig], optuna.samplers.BaseSampler]
PrunerFactory = Callable[[SearchConfig], optuna.pruners.BasePruner]


def _tpe(cfg: SearchConfig) -> optuna.samplers.BaseSampler:
    # multivariate+group models conditional branches jointly; constant_liar keeps
    # parallel workers from being handed the same point while trials run.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=cfg.seed, multivariate=True, group=True,
                                          constant_liar=True)


SAMPLERS: dict[str, SamplerFactory] = {
    "random": lambda cfg: optuna.samplers.RandomSampler(seed=cfg.seed),
    "tpe": _tpe,
}

PRUNERS: dict[str, PrunerFactory] = {
    "none": lambda cfg: optuna.pruners.NopPruner(),
    "median": lambda cfg: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
}


def make_sampler(cfg: SearchConfig) -> optuna.samplers.BaseSampler:
    return SAMPLERS[cfg.strategy](cfg)


def make_pruner(cfg: SearchConfig) -> optuna.pruners.BasePruner:
    return PRUNERS[cfg.pruner](cfg)
