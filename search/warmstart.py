"""Warm start: seed a new study with a previous study's finished trials.

The old trials are re-created with the new space's distributions, so the sampler
treats them exactly like its own; a trial that does not fit the new space (a
parameter the space lacks, or a value outside its range) makes the spaces
incompatible, which is a user error before anything is written.
"""
from __future__ import annotations

import optuna

from models.errors import UserError
from search import store_template
from search.config import StudyConfig, without_password
from search.strategies import describe_distribution, in_distribution
from spaces import Space, distributions, parse_space

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def warm_start_trials(cfg: StudyConfig,
                      space: Space | None = None) -> list[optuna.trial.FrozenTrial]:
    """The previous study's finished trials, rebuilt for the new space; none
    without `search.warm_start`. Reads the storage, never writes it."""
    name, storage = cfg.search.warm_start, cfg.tracking.storage
    if not name:
        return []
    space = parse_space(cfg.space) if space is None else space
    key = "--warm-start"
    old = _load(name, storage, key)
    _check_objectives(old, cfg)
    dists = distributions(space)
    finished = old.get_trials(deepcopy=False, states=FINISHED)
    trials = [_rebuilt(t, dists, name, key) for t in finished]
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
        raise store_template.cannot_open("tracking.storage", storage, e) from None
    if name not in names:
        from models.errors import unknown
        raise unknown("study", name, names, key=key)
    return optuna.load_study(study_name=name, storage=storage)


def _check_objectives(old: optuna.Study, cfg: StudyConfig) -> None:
    """The old trials' values must mean what this study's would: the same metrics,
    in the same order, each in the same direction. The metrics come from the old
    study's config snapshot; a study without one is checked by direction alone."""
    ours = [(o.metric, o.direction) for o in cfg.search.objectives]
    metrics = _metrics(old)
    theirs = [(m, d.name.lower())
              for m, d in zip(metrics or [None] * len(old.directions), old.directions)]
    same = theirs == ours if metrics else [d for _, d in theirs] == [d for _, d in ours]
    if not same:
        raise UserError(f"search.warm_start: study '{old.study_name}' optimizes "
                        f"{_objectives(theirs)}, this study {_objectives(ours)}; warm start "
                        f"needs the same objectives")


def _metrics(study: optuna.Study) -> list[str] | None:
    """The objective metrics of a study's config snapshot, None without one."""
    search = (study.user_attrs.get("config") or {}).get("search") or {}
    objective = search.get("objective")
    objectives = objective if isinstance(objective, list) else [objective]
    metrics = [o.get("metric") for o in objectives if isinstance(o, dict)]
    if len(metrics) != len(study.directions) or not all(isinstance(m, str) for m in metrics):
        return None
    return metrics


def _objectives(pairs: list[tuple[str | None, str]]) -> str:
    return ", ".join(f"{metric or 'an unrecorded metric'} ({direction})"
                     for metric, direction in pairs)


def _rebuilt(t: optuna.trial.FrozenTrial, dists: dict, study: str,
             key: str) -> optuna.trial.FrozenTrial:
    for pname, value in t.params.items():
        if pname not in dists:
            raise UserError(f"{key} {study}: trial {t.number} has parameter '{pname}', which "
                            f"this study does not search; the spaces are not compatible")
        if not in_distribution(dists[pname], value):
            raise UserError(f"{key} {study}: trial {t.number} has {pname}={value!r}, outside "
                            f"this study's space ({describe_distribution(dists[pname])}); "
                            f"the spaces are not compatible")
    return optuna.trial.create_trial(
        state=t.state, values=t.values if t.state == optuna.trial.TrialState.COMPLETE else None,
        params=dict(t.params), distributions={p: dists[p] for p in t.params},
        intermediate_values=dict(t.intermediate_values),
        user_attrs={"warm_start_from": f"{study}#{t.number}"})
