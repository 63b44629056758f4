"""Warm start: seed a new study with a previous study's finished trials.

The old trials are re-created with the new space's distributions, so the sampler
treats them exactly like its own; a trial that does not fit the new space (a
parameter the space lacks, or a value outside its range) makes the spaces
incompatible, which is a user error before anything is written.
"""
from __future__ import annotations

import optuna

from models.errors import UserError, first_line
from search import store_template
from search.config import StudyConfig, without_password
from search.strategies import describe_distribution, in_distribution
from spaces import Space, distributions, parse_space

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def warm_start_trials(cfg: StudyConfig, space: Space | None = None) -> list[optuna.trial.FrozenTrial]:
    """The previous study's finished trials, rebuilt for the new space; none
    without `search.warm_start`. Reads the storage, never writes it."""
    name, storage = cfg.search.warm_start, cfg.tracking.storage
    if not name:
        return []
    space = parse_space(cfg.space) if space is None else space
    key = "--warm-start"
    old = _load(name, storage, key)
    directions = [optuna.study.StudyDirection[o.direction.upper()] for o in cfg.search.objectives]
    if list(old.directions) != directions:
        raise UserError(f"{key} {name}: its objective directions "
                        f"{[d.name.lower() for d in old.directions]} differ from this study's "
                        f"{[d.name.lower() for d in directions]}")
    dists = distributions(space)
    trials = [_rebuilt(t, dists, name, key) for t in old.get_trials(deepcopy=False, states=FINISHED)]
    if not trials:
        raise UserError(f"{key} {name}: the study has no finished trials to start from")
    return trials


def _load(name: str, storage: str, key: str) -> optuna.Study:
    db = store_template.sqlite_file(storage)
    if db is not None and not db.is_file():         # not created by looking
        raise UserError(f"{key} {name}: no study storage at {without_password(storage)}")
    store_template.check_kind(storage, "optuna")
    try:
        names = optuna.study.get_all_study_names(storage)
    except Exception as e:  # noqa: BLE001 - a bad URL or an unreachable server
        raise UserError(f"tracking.storage: cannot open {without_password(storage)!r}: "
                        f"{first_line(e)}") from None
    if name not in names:
        from models.errors import unknown
        raise unknown("study", name, names, key=key)
    return optuna.load_study(study_name=name, storage=storage)


def _rebuilt(t: optuna.trial.FrozenTrial, dists: dict, study: str,
             key: str) -> optuna.trial.FrozenTrial:
    for pname, value in t.params.items():
        if pname not in dists:
            raise UserError(f"{key} {study}: trial {t.number} has parameter '{pname}', which "
                            f"this study does not search; the spaces are not compatible")
        if not in_distribution(dists[pname], value):
            raise UserError(f"{key} {study}: trial {t.number} has {pname}={value!r}, outside "
                            f"this study's space ({describe_distribution(dists[pname])}); the spaces are "
                            f"not compatible")
    return optuna.trial.create_trial(
        state=t.state, values=t.values if t.state == optuna.trial.TrialState.COMPLETE else None,
        params=dict(t.params), distributions={p: dists[p] for p in t.params},
        intermediate_values=dict(t.intermediate_values),
        user_attrs={"warm_start_from": f"{study}#{t.number}"})
