"""The study lifecycle after the first run: resume, rerun, replay, final test.

Every function here works on the stores a study config names (SQLite files, an
`mlflow server`, PostgreSQL) through the Optuna and MLflow APIs; the config
snapshot each study stores (Optuna study user attr `config`, the parent run's
`study.yaml`) is what makes a study reproducible without its original file.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import optuna
import yaml

from hypersweep.models.errors import UserError, first_line
from hypersweep.models.trial import TrialSpec
from hypersweep.search.config import (StudyConfig, apply_overrides, check_semantics, check_unmasked,
                           parse_config, without_password)
from hypersweep.search.driver import ENDED, fail_running, sampler_after, study_pruner, trial_seed
from hypersweep.search.executors import failed, trial_threads
from hypersweep.search.tracking import LOST_START, MlflowTracker, model_name_for
from hypersweep.search.writer import TrackingError

INTERRUPTED = "interrupted: the driver stopped while this trial ran; failed on resume"
FINAL_ATTR = "final_test"                 # Optuna study user attr and parent run tag prefix
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


# ---------------------------------------------------------------- finding a study

def study_names(storage: str, reading: bool = False) -> list[str]:
    """The studies in a storage, or a one-line error when it cannot be opened. A
    SQLite file that is not there is a wrong path (a typo, another directory), and
    is not created by looking. `reading`: for a command that only reads the study
    (`store_template.open_read_only`)."""
    from hypersweep.search.config import check_storage_url
    from hypersweep.search.store_template import (cannot_open, check_kind, holds_no_store,
                                                  open_read_only, sqlite_file)

    check_storage_url(storage, "--storage")
    db = sqlite_file(storage)
    if db is not None and not db.exists():
        raise UserError(f"--storage: no Optuna storage at {db.absolute()} (no such file)")
    check_kind(storage, "optuna", key="--storage")
    if holds_no_store(storage, "optuna"):   # an empty file or database: not made a store by looking
        return []
    if reading:
        open_read_only(storage)
    try:
        return optuna.study.get_all_study_names(storage)
    except Exception as e:  # noqa: BLE001 - a bad URL or an unreachable server
        raise cannot_open("--storage", storage, e) from None


def load_study(name: str, storage: str, reading: bool = False) -> optuna.Study:
    """An existing study, or a one-line error listing the studies there are.
    `reading`: for a command that only reads it (`store_template.open_read_only`)."""
    names = study_names(storage, reading)
    if not names:
        raise UserError(f"STUDY: unknown study '{name}'; {without_password(storage)} holds no study")
    if name not in names:
        from hypersweep.models.errors import unknown
        raise unknown("study", name, names, key="STUDY")
    return optuna.load_study(study_name=name, storage=storage)


def stored_config(study: optuna.Study, sets: Sequence[str] = (), check: bool = True,
                  **named: Any) -> StudyConfig:
    """The study's config snapshot, with overrides (`--set` ones, and named ones:
    tracking_uri, storage...). `check=False` for commands that only read what the
    study wrote (best, export): its semantics (a dataset loaded, a model built to
    check they fit) took seconds, for a table of what is stored."""
    raw = study.user_attrs.get("config")
    if raw is None:
        raise UserError(f"study '{study.study_name}': no config snapshot stored; "
                        "it was not created by hypersweep")
    return validated(apply_overrides(raw, sets, **named), check)


def validated(raw: Mapping[str, Any], check: bool = True) -> StudyConfig:
    """A config read back from a study's snapshot, with the command's overrides."""
    cfg = parse_config(raw)
    if check:
        check_semantics(cfg)
    check_unmasked(cfg)
    return cfg


def config_from_source(source: str, storage: str | None, tracking_uri: str | None,
                       sets: tuple[str, ...] = ()) -> StudyConfig:
    """SOURCE is a config file, a study name in `storage`, or an MLflow parent run id."""
    from hypersweep.search.config import default_tracking_uri, read_yaml

    named = {"storage": storage, "tracking_uri": tracking_uri}
    if Path(source).is_file():
        raw = read_yaml(source)
    elif source.endswith((".yaml", ".yml")) or os.sep in source:
        # A path, not a name: a study name could hold a "/", but a file that is not
        # there is the likelier slip, said as such rather than as an unknown study.
        if not _is_study(source, storage):
            why = "is a directory" if Path(source).is_dir() else "no such file"
            raise UserError(f"SOURCE: {source}: {why} (a study config file, a study name, "
                            f"or an MLflow parent run id)")
        raw = load_study(source, storage or "sqlite:///optuna.db").user_attrs.get("config")
    elif _RUN_ID.match(source) and not _is_study(source, storage):
        # The environment's MLFLOW_TRACKING_URI, else a file here: as replay's default
        tracker = MlflowTracker(tracking_uri or default_tracking_uri(), create=False,
                                key="--tracking-uri")
        raw = yaml.safe_load(tracker.read_text(source, "study.yaml"))
    else:
        raw = load_study(source, storage or "sqlite:///optuna.db").user_attrs.get("config")
    if raw is None:
        raise UserError(f"study '{source}': no config snapshot stored")
    return validated(apply_overrides(raw, sets, **named))


def _is_study(name: str, storage: str | None) -> bool:
    from hypersweep.search.store_template import holds_no_store, sqlite_file

    storage = storage or "sqlite:///optuna.db"
    db = sqlite_file(storage)
    if (db is not None and not db.exists()) or holds_no_store(storage, "optuna"):
        return False        # not created by looking
    try:
        return name in optuna.study.get_all_study_names(storage)
    except Exception:  # noqa: BLE001 - no store there: not a study name either
        return False


def derived_name(name: str, storage: str) -> str:
    """`NAME-rerun-N`, the first N not taken in this storage."""
    taken = set(optuna.study.get_all_study_names(storage))
    base = re.sub(r"-rerun-\d+$", "", name)
    n = 1
    while f"{base}-rerun-{n}" in taken:
        n += 1
    return f"{base}-rerun-{n}"


# ---------------------------------------------------------------- resume

def to_retry(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials `search.on_interrupt: retry` runs again: those an interruption
    failed (a Ctrl-C, SIGTERM or SIGHUP as the run stopped them; a crash, as
    `reopen_study` fails what it left running), with the params they drew, not
    retried yet (by an earlier resume)."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    return [t for t in trials if t.state is optuna.trial.TrialState.FAIL and t.params
            and t.user_attrs.get("interrupted") and t.number not in retried
            and "warm_start_from" not in t.user_attrs]


def reopen_study(cfg: StudyConfig, tracker: MlflowTracker,
                 study: optuna.Study | None = None) -> tuple[optuna.Study, str]:
    """Reopen a study (`study`, where loaded already) and its parent run; fail (or
    retry) trials a crash left RUNNING."""
    study = study or load_study(cfg.study, cfg.tracking.storage)
    study.sampler = sampler_after(cfg, len(study.trials))
    study.pruner = study_pruner(cfg)
    parent = tracker.resolve(tracker.start_study(cfg.study, cfg.to_yaml(),
                                                 tags={"strategy": cfg.search.strategy}))
    study.set_user_attr("mlflow_parent_run_id", parent)
    study.set_user_attr(ENDED, None)        # open again, until this run ends
    children = tracker.trial_runs(parent)
    for trial in study.get_trials(deepcopy=False):
        if trial.state is not optuna.trial.TrialState.WAITING and trial.number not in children \
                and not {"mlflow_run_id", "warm_start_from"} & trial.user_attrs.keys():
            children[trial.number] = [_track_from_optuna(cfg, tracker, parent, trial)]
    interrupted = fail_running(study, INTERRUPTED, children, epochs=tracker.epochs_logged)
    for number, epochs in interrupted.items():
        for run_id in children.get(number, []):
            tracker.end_trial(run_id, dataclasses.replace(failed(INTERRUPTED), epochs=epochs), {})
    if cfg.search.on_interrupt == "retry":
        for trial in to_retry(study):
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    # Runs of trials Optuna saw end but the MLflow store did not (its server was
    # down then): closed, so that nothing is left RUNNING in either store. Those
    # the driver failed as interrupted (the MLflow store failed under them) are
    # closed as an interrupted trial's run is, with their reason.
    for number, run_ids in tracker.unended_trial_runs(parent).items():
        if number in interrupted or number >= len(study.trials):
            continue
        trial = study.trials[number]
        for run_id in run_ids:
            if trial.state is optuna.trial.TrialState.FAIL and trial.user_attrs.get("interrupted"):
                result = failed(trial.user_attrs.get("reason") or INTERRUPTED)
                tracker.end_trial(run_id, dataclasses.replace(
                    result, epochs=trial.user_attrs.get("epochs", 0)), {})
            else:
                tracker.end_lost_run(run_id, trial.state.name, *_as_optuna_has_it(cfg, trial))
    return study, parent


def _track_from_optuna(cfg: StudyConfig, tracker: MlflowTracker, parent: str,
                       trial: optuna.trial.FrozenTrial) -> str:
    """A run for a trial Optuna holds with none in the MLflow store (its server was
    down as the trial started, or a stop came before its run was made), so that
    every trial has its run (tag `lost_start`) and their numbers in the MLflow UI
    do not skip it: made now from what Optuna holds, its params, and, where it
    ended, its state, result or reason, its objective's curve and trial.yaml (a
    trial still RUNNING is failed as interrupted, its run with it). Its run id."""
    from hypersweep.models.trial import TrialResult, TrialState

    attrs = trial.user_attrs
    seed = attrs.get("seed")
    params = {**trial.params, "trial_number": trial.number,
              **({"seed": seed} if seed is not None else {})}
    run = tracker.start_trial(parent, trial.number, params, {LOST_START: (
        "the MLflow store did not take this trial's run as it started (its server was "
        "down, or a stop came first); this run was written from Optuna on resume")})
    if not trial.state.is_finished():
        return tracker.resolve(run)
    finals, _, files = _as_optuna_has_it(cfg, trial) if trial.params else ({}, 0, {})
    if len(cfg.search.objectives) == 1:
        for step, value in sorted(trial.intermediate_values.items()):
            tracker.log_metrics(run, step, {cfg.search.objectives[0].metric: value})
    fail = trial.state is optuna.trial.TrialState.FAIL
    tracker.end_trial(run, TrialResult(
        TrialState[trial.state.name], {k.removeprefix("final_"): v for k, v in finals.items()},
        epochs=int(attrs.get("epochs") or max(trial.intermediate_values, default=0)),
        reason=attrs.get("reason") or (INTERRUPTED if fail else None),
        best_epoch=attrs.get("best_epoch")), files)
    return tracker.resolve(run)


def _as_optuna_has_it(cfg: StudyConfig, trial: optuna.trial.FrozenTrial
                      ) -> tuple[dict[str, float], int, dict[str, str]]:
    """What a trial's run lost with its end and Optuna holds, for `end_lost_run`: its
    result (`final_<objective>`, at the epoch it was told at) and its trial.yaml
    (rebuilt as the driver built it), so that `replay` and the UI still have them."""
    from hypersweep.search.driver import trial_spec, trial_yaml

    values = trial.values if trial.state is optuna.trial.TrialState.COMPLETE else None
    finals = {f"final_{o.metric}": v for o, v in zip(cfg.search.objectives, values or ())}
    attrs = trial.user_attrs
    step = attrs.get("best_epoch") or attrs.get("epochs") or 0
    spec = trial_spec(cfg, {**cfg.params, **trial.params}, trial.number,
                      attrs.get("seed", trial_seed(cfg.search.seed, trial.number)))
    return finals, int(step), {"trial.yaml": trial_yaml(spec)}


# ---------------------------------------------------------------- replay

@dataclass(frozen=True)
class Replay:
    spec: TrialSpec
    recorded: dict[str, list[float]]    # the run's logged per-epoch curves
    replayed: dict[str, list[float]]    # the same curves, retrained now
    changed: tuple[str, ...] = ()       # sources read since changed (search.sources)

    TIMINGS = ("epoch_time",)

    def differences(self) -> list[str]:
        """Curves that differ, timings aside (they are measurements, not results); a
        NaN (a diverged epoch) is the same as a NaN."""
        def same(a: list[float] | None, b: list[float]) -> bool:
            return a is not None and len(a) == len(b) and all(
                x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))
        return sorted(k for k, v in self.replayed.items()
                      if k not in self.TIMINGS and not same(self.recorded.get(k), v))


def replay_run(run_id: str, tracking_uri: str) -> Replay:
    """Retrain one trial alone from its `trial.yaml` artifact, on the torch thread
    count it trained with, for as many epochs as its curves recorded (pruning off)."""
    from hypersweep.models.train import train_trial

    tracker = MlflowTracker(tracking_uri, create=False, key="--tracking-uri")
    run = _trial_run(tracker, run_id)
    raw = yaml.safe_load(tracker.read_text(run_id, "trial.yaml"))
    spec = TrialSpec.from_record(raw)
    if spec.threads is None:    # a trial.yaml that does not say: the study's cpus_per_trial
        spec = TrialSpec.from_record(raw, threads=_study_threads(tracker, run))
    history = _recorded_history(tracker, run)
    # The last recorded step says how far the trial got (pruned, stopped early,
    # interrupted); the `epochs` tag only where nothing was recorded.
    epochs = max((m.step for ms in history.values() for m in ms), default=0) \
        or int(run.data.tags.get("epochs", 0) or 0)
    result = train_trial(spec, lambda step, metrics: bool(epochs) and step >= epochs)
    replayed = {k: [float(h[k]) for h in result.history] for k in result.history[0]} \
        if result.history else {}
    recorded = {k: [m.value for m in history.get(k, [])] for k in replayed}
    return Replay(spec, recorded, replayed, tuple(_changed_sources(tracker, run, spec)))


def _changed_sources(tracker: MlflowTracker, run: Any, spec: TrialSpec) -> list[str]:
    """The model's file and the data the study began with, against what is there now."""
    from hypersweep.search.sources import changed, source_digests

    parent_id = run.data.tags.get("mlflow.parentRunId")
    if not parent_id:
        return []
    tags = tracker.client.get_run(parent_id).data.tags
    stored = {k[len("source."):]: v for k, v in tags.items() if k.startswith("source.")}
    return changed(stored, source_digests(spec.model, spec.data)) if stored else []


def _trial_run(tracker: MlflowTracker, run_id: str) -> Any:
    """The MLflow run `run_id`, or a one-line error when there is none or it is not a
    trial's (a study's parent run, a final run)."""
    from mlflow.exceptions import MlflowException

    from hypersweep.search.tracking import ROLE_TAG
    where = without_password(tracker.uri)
    try:
        run = tracker.client.get_run(run_id)
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise TrackingError(f"{where}: {first_line(e)}") from None
        raise UserError(f"RUN_ID: no run {run_id} in {where}; replay takes a trial's run id "
                        "(hypersweep best STUDY --json)") from None
    role, name = run.data.tags.get(ROLE_TAG), run.info.run_name
    if role == "study":
        raise UserError(f"RUN_ID: run {run_id} is the study {name}'s parent run, not a trial; "
                        f"replay takes a trial's run id (hypersweep best {name} --json)")
    if role == "final":
        study = tracker.client.get_experiment(run.info.experiment_id).name
        raise UserError(f"RUN_ID: run {run_id} is the study {study}'s final run, not a trial; "
                        f"replay takes a trial's run id (hypersweep best {study} --json)")
    return run


def _study_threads(tracker: MlflowTracker, run: Any) -> int:
    """The torch threads a trial of this run's study trained with, for a trial.yaml
    that does not record them: `resources.cpus_per_trial` of the parent's study.yaml,
    as both executors apply it."""
    parent = run.data.tags.get("mlflow.parentRunId")
    cpus: Any = 1
    if parent:
        study = yaml.safe_load(tracker.read_text(parent, "study.yaml")) or {}
        cpus = (study.get("resources") or {}).get("cpus_per_trial", 1)
    return trial_threads(float(cpus))


def _recorded_history(tracker: MlflowTracker, run: Any) -> dict[str, list[Any]]:
    """The run's per-epoch metrics by name, in step order (the `final_*` summaries
    aside)."""
    return {k: sorted(tracker.client.get_metric_history(run.info.run_id, k),
                      key=lambda m: m.step)
            for k in run.data.metrics if not k.startswith("final_")}


# ---------------------------------------------------------------- final test

def best_spec(study: optuna.Study, cfg: StudyConfig, number: int | None = None) -> TrialSpec:
    """The best trial (or trial `number`) as a spec: its params, seed, and the epochs
    it actually trained. A study of several objectives has no one best trial: the
    caller names one, of its Pareto front or not."""
    from hypersweep.search.driver import data_dict

    complete = {t.number: t for t in study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}
    if not complete:
        raise UserError(f"study '{cfg.study}': no trial completed, nothing to retrain")
    if number is not None:
        if number not in complete:
            state = (f"is {study.trials[number].state.name}" if 0 <= number < len(study.trials)
                     else "does not exist")
            raise UserError(f"--trial: trial {number} of study '{cfg.study}' {state}; give a "
                            f"complete one, e.g. the best: {_best_numbers(study)}")
        best = complete[number]
    elif len(cfg.search.objectives) > 1:
        raise UserError(f"study '{cfg.study}' has several objectives, so no one best trial; "
                        f"choose one with --trial N, e.g. of its Pareto front: "
                        f"{_best_numbers(study)}")
    else:
        best = tied_best(study)[0]
    # Early stopping chose the number of epochs on validation (the epoch it ended
    # on, not the `patience` epochs it trained past it): keep that choice. There
    # is no validation split left to stop on, so none in the final run's params.
    attrs = best.user_attrs
    epochs = int(attrs.get("best_epoch") or attrs.get("epochs") or cfg.params.get("epochs", 0))
    params = {**cfg.params, **best.params, **({"epochs": epochs} if epochs else {}),
              "patience": 0}
    seed = best.user_attrs.get("seed", trial_seed(cfg.search.seed, best.number))
    return TrialSpec(model=cfg.model, data=data_dict(cfg), params=params, seed=int(seed),
                     trial_number=best.number, study=cfg.study)


def tied_best(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The complete trials at the best value of a one-objective study, by number,
    those run in this study before those warm-started from another: `final`
    retrains the first (Optuna's `best_trial` picks one of them as its storage
    orders them)."""
    best = study.best_value
    return sorted((t for t in study.get_trials(deepcopy=False,
                                               states=(optuna.trial.TrialState.COMPLETE,))
                   if t.value == best),
                  key=lambda t: ("warm_start_from" in t.user_attrs, t.number))


def _best_numbers(study: optuna.Study) -> str:
    """The best trials' numbers (the Pareto front's, for several objectives)."""
    return ", ".join(str(t.number) for t in sorted(study.best_trials, key=lambda t: t.number))


def final_test(study: optuna.Study, cfg: StudyConfig, force: bool = False,
               number: int | None = None) -> dict[str, Any]:
    """Retrain the best trial (or trial `number`) on train+val, test once, register
    the model."""
    from hypersweep.models.train import train_final

    from hypersweep.search.lease import check_not_running
    # Its best trial may change yet, and a second look at the test set is refused
    check_not_running(study, before="its final test")
    spec = best_spec(study, cfg, number)    # a --trial that is no trial's: said first
    previous = study.user_attrs.get(FINAL_ATTR)
    if previous and not force:
        raise UserError(f"study '{cfg.study}': the test set was already evaluated "
                        f"(run {previous['run_id']}, {previous['at']}); "
                        "a second look is a tweak on test data — pass --force to override")
    tracker = MlflowTracker(cfg.tracking.uri, create=False)
    parent = tracker.parent_of(cfg.study)       # before the test set is touched
    result = train_final(spec)
    model_name = model_name_for(cfg.study)
    # Every hyperparameter it trained with, defaults included, and its seed: as a
    # trial's run records them, so the registered model's run says how it was made.
    from hypersweep.models.train import resolved_params
    logged = spec.params
    with contextlib.suppress(UserError):
        logged = resolved_params(cfg.model, spec.params)
    run_id, version, unregistered = tracker.log_final(
        parent, {**logged, "seed": spec.seed}, {**result.test_metrics, **result.train_metrics},
        result.artifacts,
        model_name=model_name, trial=spec.trial_number,
        best=spec.trial_number in {t.number for t in study.best_trials})
    evaluations = (previous or {}).get("evaluations", 0) + 1
    record = {"run_id": run_id, "model_name": model_name, "model_version": version,
              "trial": spec.trial_number,
              "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "metrics": dict(result.test_metrics), "evaluations": evaluations}
    # Recorded whatever the registry said: the test set has been looked at.
    study.set_user_attr(FINAL_ATTR, record)
    tracker.set_tags(parent, {f"{FINAL_ATTR}.run_id": run_id,
                              f"{FINAL_ATTR}.evaluations": record["evaluations"]})
    if unregistered:
        raise TrackingError(f"tracking.uri: the final run {run_id} is logged and its test "
                            f"evaluation recorded, but the model registry refused model "
                            f"'{model_name}': {unregistered}")
    return record


# ---------------------------------------------------------------- deleting a study

@dataclass
class Deletion:
    """What `hypersweep delete` would delete: the Optuna study (None: not in the
    storage) and the MLflow experiment ((stage, runs); None: not in the store)."""

    name: str
    storage: str
    uri: str
    study: optuna.Study | None
    experiment: tuple[str, int] | None
    tracker: MlflowTracker | None
    registered_model: bool = False

    def lines(self) -> list[str]:
        storage, uri = without_password(self.storage), without_password(self.uri)
        if self.study is None:
            out = [f"Optuna: no study '{self.name}' in {storage}"]
        else:
            states = _state_counts(self.study)
            out = [f"Optuna: study '{self.name}' in {storage}, {len(self.study.trials)} trials"
                   + (f" ({states})" if states else "")]
        if self.experiment is None:
            out.append(f"MLflow: no experiment '{self.name}' in {uri}")
        else:
            stage, runs = self.experiment
            trash = " (in MLflow's trash already)" if stage == "deleted" else ""
            out.append(f"MLflow: experiment '{self.name}' in {uri}, {runs} runs{trash}")
        return out


def _state_counts(study: optuna.Study) -> str:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return ", ".join(f"{n} {state.lower()}" for state, n in counts.items())


def plan_deletion(name: str, storage: str, tracking_uri: str | None) -> Deletion:
    """Find study `name` in both stores: the MLflow store is `tracking_uri`, else
    the one the study ran with, else the default. A SQLite store that is not there
    holds nothing to delete. A one-line error when neither store has the study, or
    when its driver is running it."""
    from hypersweep.search.config import TrackingConfig
    from hypersweep.search.lease import check_not_running
    from hypersweep.search.store_template import sqlite_file

    db = sqlite_file(storage)
    names = [] if db is not None and not db.exists() else study_names(storage)
    study = optuna.load_study(study_name=name, storage=storage) if name in names else None
    if study is not None:
        check_not_running(study, before="deleting it")
    if study is not None and study.user_attrs.get("config"):
        # The study's snapshot, as other commands read it: a password it masks is
        # asked for (--tracking-uri), not sent as "***".
        uri = stored_config(study, check=False, storage=storage,
                            tracking_uri=tracking_uri).tracking.uri
    else:
        uri = tracking_uri or TrackingConfig().uri
    mlflow_db = sqlite_file(uri)
    tracker = experiment = None
    registered = False
    if mlflow_db is None or mlflow_db.exists():
        tracker = MlflowTracker(uri, create=False)
        experiment = tracker.experiment_runs(name)
        registered = tracker.has_registered_model(model_name_for(name))
    if study is None and experiment is None:
        raise UserError(f"STUDY: no study '{name}' in {without_password(storage)}, and no "
                        f"MLflow experiment of that name in {without_password(uri)}")
    return Deletion(name, storage, uri, study, experiment, tracker, registered)


def delete_study(plan: Deletion) -> tuple[str, str, str | None] | None:
    """Delete what `plan` found: the MLflow experiment first (to MLflow's trash,
    renamed), then the Optuna study. The experiment's (name in the trash, id, the id
    of one of its runs: None when it has none), if any; `tracking.gc_command`."""
    from mlflow.entities import ViewType

    from hypersweep.search.lease import check_not_running
    if plan.study is not None:      # again: a resume may have begun while delete asked
        check_not_running(plan.study, before="deleting it")
    trash = plan.tracker.delete_study(plan.name) if plan.experiment and plan.tracker else None
    if trash is not None:
        runs = plan.tracker.client.search_runs([trash[1]], run_view_type=ViewType.DELETED_ONLY,
                                               max_results=1)
        trash = (*trash, runs[0].info.run_id if runs else None)
    if plan.study is not None:
        optuna.delete_study(study_name=plan.name, storage=plan.storage)
    return trash
