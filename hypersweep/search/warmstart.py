"""Warm start: seed a new study with a previous study's finished trials.

The old trials are re-created with the new space's distributions, so the sampler
treats them exactly like its own. A parameter the new study searches and the old
one fixed gets the value the trials trained with. A trial that does not fit the
new space (a parameter the space lacks, a value outside its range) makes the
spaces incompatible, and a source that trained another model, data or fixed
hyperparameters, or optimized other objectives, is refused: user errors, before
anything is written.
"""
from __future__ import annotations

import re
import warnings
from typing import Any

import optuna

from hypersweep.models.errors import UserError
from hypersweep.search import store_template
from hypersweep.search.config import StudyConfig, without_password
from hypersweep.search.strategies import describe_distribution, in_distribution
from hypersweep.spaces import Space, distributions, parse_space, suggest

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def warm_start_trials(cfg: StudyConfig,
                      space: Space | None = None) -> list[optuna.trial.FrozenTrial]:
    """The previous study's finished trials, rebuilt for the new space; none
    without `search.warm_start`. Reads the storage, never writes it."""
    name, storage = cfg.search.warm_start, cfg.tracking.storage
    if not name:
        return []
    space = parse_space(cfg.space) if space is None else space
    key = "search.warm_start"      # `--warm-start` where the option set it (cli._as_given)
    old = _load(name, storage, key)
    _check_objectives(old, cfg)
    trained = _check_same_training(old, cfg, key)
    dists = distributions(space)
    finished = old.get_trials(deepcopy=False, states=FINISHED)
    trials = [_rebuilt(t, _completed(t, space, trained, name, key), dists, name, key)
              for t in finished]
    if not trials:
        raise UserError(f"{key} {name}: the study has no finished trials to start from")
    return trials


def _check_same_training(old: optuna.Study, cfg: StudyConfig, key: str) -> dict[str, Any]:
    """The old trials' values must come from the same training as this study's
    would: the same model and data, and the same value of every hyperparameter
    that neither study searches (`params.epochs: 600` there and 3 here made the
    600-epoch trials the best, and `final` retrained them for 3). What the old
    study fixed (its `params`), for `_completed`; nothing is checked, and nothing
    known, for a study without a config snapshot."""
    from hypersweep.models.train import hyperparameters

    theirs = old.user_attrs.get("config") or {}
    if not theirs:
        return {}
    ours = cfg.snapshot()
    for part in ("model", "data"):
        if theirs.get(part) != ours.get(part):
            raise UserError(f"{key} {old.study_name}: its trials trained {part} "
                            f"{_shown(theirs.get(part))}, this study's {_shown(ours.get(part))}; "
                            f"warm start needs the same {part}")
    defaults = {n: hp.default for n, hp in hyperparameters(cfg.model).items()}
    fixed_there, fixed_here = theirs.get("params") or {}, cfg.params
    searched = set(distributions(parse_space(theirs.get("space") or {}))) | set(
        distributions(parse_space(cfg.space)))
    differ = [f"params.{n}: {fixed_there.get(n, defaults.get(n))!r} there, "
              f"{fixed_here.get(n, defaults.get(n))!r} here"
              for n in sorted((set(fixed_there) | set(fixed_here)) - searched)
              if fixed_there.get(n, defaults.get(n)) != fixed_here.get(n, defaults.get(n))]
    if differ:
        raise UserError(f"{key} {old.study_name}: its trials trained with other fixed "
                        f"hyperparameters ({'; '.join(differ[:3])}"
                        f"{'; ...' if len(differ) > 3 else ''}); warm start needs the same")
    return {n: fixed_there.get(n, v) for n, v in defaults.items()}


def _shown(value: Any) -> str:
    return repr(value) if not isinstance(value, dict) else \
        "{" + ", ".join(f"{k}: {v!r}" for k, v in value.items()) + "}"


def _completed(t: optuna.trial.FrozenTrial, space: Space, trained: dict[str, Any],
               study: str, key: str) -> dict[str, Any]:
    """The trial's params, with a value of every parameter this study's space would
    ask it for (by the branches its own values take): a parameter this study
    searches and the old one fixed gets the value the trial trained with (in
    `trained`: the old study's `params`, else the builder's default), which
    `_rebuilt` then checks against this study's range."""
    params = dict(t.params)
    for _ in range(len(trained) + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")     # values out of range: _rebuilt says it
                suggest(space, optuna.trial.FixedTrial(params, number=t.number))
            return params
        except ValueError as e:
            missing = re.search(r"parameter '([^']+)' is not found", str(e))
            if missing is None:     # a value outside this space: `_rebuilt` names it
                return params
            if missing.group(1) not in trained:
                raise UserError(f"{key} {study}: trial {t.number} has no value of "
                                f"'{missing.group(1)}', which this study searches; the "
                                f"spaces are not compatible") from None
            params[missing.group(1)] = trained[missing.group(1)]
    return params


def _load(name: str, storage: str, key: str) -> optuna.Study:
    db = store_template.sqlite_file(storage)
    if db is not None and not db.is_file():         # not created by looking
        raise UserError(f"{key} {name}: no study storage at {without_password(storage)}")
    store_template.check_kind(storage, "optuna")
    try:    # an empty file or database: not made a store by looking
        names = ([] if store_template.holds_no_store(storage, "optuna")
                 else optuna.study.get_all_study_names(storage))
    except Exception as e:  # noqa: BLE001 - a bad URL or an unreachable server
        raise store_template.cannot_open("tracking.storage", storage, e) from None
    if not names:
        raise UserError(f"{key} {name}: {without_password(storage)} holds no study")
    if name not in names:
        from hypersweep.models.errors import unknown
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


def _rebuilt(t: optuna.trial.FrozenTrial, params: dict[str, Any], dists: dict, study: str,
             key: str) -> optuna.trial.FrozenTrial:
    """The trial as one of this study's, with `params` (`_completed`)."""
    for pname, value in params.items():
        if pname not in dists:
            raise UserError(f"{key} {study}: trial {t.number} has parameter '{pname}', which "
                            f"this study does not search; the spaces are not compatible")
        if not in_distribution(dists[pname], value):
            has = "has" if pname in t.params else "trained with (fixed there)"
            raise UserError(f"{key} {study}: trial {t.number} {has} {pname}={value!r}, outside "
                            f"this study's space ({describe_distribution(dists[pname])}); "
                            f"the spaces are not compatible")
    return optuna.trial.create_trial(
        state=t.state, values=t.values if t.state == optuna.trial.TrialState.COMPLETE else None,
        params=params, distributions={p: dists[p] for p in params},
        intermediate_values=dict(t.intermediate_values),
        user_attrs={"warm_start_from": f"{study}#{t.number}"})
