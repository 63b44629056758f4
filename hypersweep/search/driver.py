"""The study driver: Optuna ask/tell around an executor, MLflow around each trial.

This process is the single writer: workers compute and report; every write to
Optuna storage happens here, and every write to MLflow is made or sent from here
(to the tracking process of `search.writer`, which writes them in order).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import shlex
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import optuna
import yaml

from hypersweep.search import heap, store_template
from hypersweep.models.errors import StoreFileGone, UserError
from hypersweep.models.figures import Drawing
from hypersweep.models.trial import TrialResult, TrialSpec, TrialState
from hypersweep.search.config import MASK, StudyConfig, fixed_epochs, without_password
from hypersweep.search.executors import Executor, failed, failure_reason, study_threads
from hypersweep.search.exit import (Abandoned, ClusterLost, StudyFailed, stops_as_interrupt,
                                    stops_deferred)
from hypersweep.search.importance import (Importances, importance_figure, importance_metrics,
                                          param_importances)
from hypersweep.search.intermediate import Pending
from hypersweep.search.lease import Lease
from hypersweep.search.net import http_unreachable
from hypersweep.search.report import study_files
from hypersweep.search.sources import changed, source_digests
from hypersweep.search.sqlite import WATCHED, FileWatch   # and SQLite stores in WAL mode
from hypersweep.search.strategies import can_prune, make_pruner, make_sampler, queue_owed
from hypersweep.search.tracking import MlflowTracker  # or writer.TrackingWriter: same methods
from hypersweep.search.writer import TrackingError
from hypersweep.spaces import parse_space, suggest

optuna.logging.set_verbosity(optuna.logging.WARNING)

_OPTUNA_STATE = {TrialState.COMPLETE: optuna.trial.TrialState.COMPLETE,
                 TrialState.PRUNED: optuna.trial.TrialState.PRUNED,
                 TrialState.FAIL: optuna.trial.TrialState.FAIL}


@dataclass(frozen=True)
class TrialEvent:
    """What the CLI's progress display needs after each trial."""

    number: int
    state: TrialState
    values: tuple[float, ...] | None
    reason: str | None
    counts: Mapping[str, int]            # COMPLETE / PRUNED / FAIL so far
    best: float | None                   # best objective so far (single objective)
    running: int = 0                     # trials still running after this one's end
    interrupted: bool = False            # failed by a stop: a resume runs it again


class StudyEvents:
    """What a driver tells as its study goes, to the CLI's progress display or a
    benchmark: each method here does nothing, a subclass takes what it needs."""

    def trial_started(self, number: int, running: int) -> None:
        """Trial `number` was handed to the executor; `running` counts it."""

    def epoch(self, number: int, step: int) -> None:
        """A running trial reported epoch `step`."""

    def trial_ended(self, event: TrialEvent) -> None:
        """A trial ended and was told to both stores."""

    def notice(self, line: str) -> None:
        """A line for the user from the executor as trials go (a trial retried)."""


@dataclass
class _Running:
    trial: optuna.trial.Trial
    run_id: str                  # the tracker's id for the run: a handle until recorded
    spec: TrialSpec
    recorded: bool = False       # the MLflow run id is on the Optuna trial
    pending: Pending | None = None   # intermediate values kept for a batch (no pruner)
    epochs: int = 0              # the last epoch it reported
    told: TrialResult | None = None  # its result, once Optuna was told it


@dataclass
class StudyOutcome:
    name: str
    parent_run_id: str
    counts: dict[str, int]
    study: optuna.Study
    interrupted: bool = False
    exit_code: int = 0          # 130 after Ctrl-C, 143 after SIGTERM
    importances: Importances = field(default_factory=dict)   # objective -> {param: share}
    # A stop (`Ctrl-C`, `SIGTERM`) that came once the last trial had ended, held while
    # the finished study's end was written: the study is complete all the same.
    late_stop: str | None = None
    running: dict[int, _Running] = field(default_factory=dict, repr=False)


def trial_seed(study_seed: int, number: int) -> int:
    """A per-trial seed that depends only on the study seed and the trial number."""
    return int(np.random.SeedSequence([study_seed, number]).generate_state(1)[0] & 0x7FFFFFFF)


def sampler_after(cfg: StudyConfig, trials: int) -> optuna.samplers.BaseSampler:
    """The sampler of a study that holds `trials` trials already (resumed, or warm
    started): seeded by `search.seed` and that count, so that it neither proposes
    the first points again nor loses reproducibility."""
    return make_sampler(cfg.search.model_copy(
        update={"seed": trial_seed(cfg.search.seed, trials)}))


def trial_yaml(spec: TrialSpec) -> str:
    """Everything needed to replay one trial alone (its torch thread count too: the
    same trial on another count differs in the last digits)."""
    return yaml.safe_dump(spec.record(), sort_keys=False)


def trial_spec(cfg: StudyConfig, params: Mapping[str, Any], number: int, seed: int) -> TrialSpec:
    """Trial `number` of the study, as a worker trains it and its trial.yaml replays it."""
    from hypersweep.models.train import resolved_params

    # Every hyperparameter the trial trains with, defaults included: its child
    # run can be compared on each in the MLflow UI, and its trial.yaml replays
    # it whatever later versions take as defaults. Params the model does not
    # take are left as they are: a `train` function of the caller's may use
    # them, and the built-in one fails the trial with the reason.
    with contextlib.suppress(UserError):
        params = resolved_params(cfg.model, params)
    return TrialSpec(model=cfg.model, data=data_dict(cfg), params=dict(params), seed=seed,
                     trial_number=number, study=cfg.study,
                     threads=study_threads(cfg.resources))


def data_dict(cfg: StudyConfig) -> dict[str, Any]:
    d = cfg.data.model_dump()
    return {**{k: v for k, v in d.items() if k != "options"}, **d["options"]}


def _taken(cfg: StudyConfig, rename: str = "--set study=NAME") -> UserError:
    # Named by the option that gave the name (rerun's --name), else the config's key
    key = "--name" if rename.startswith("--name") else "study"
    return UserError(f"{key}: '{cfg.study}' already exists in "
                     f"{without_password(cfg.tracking.storage)}; choose another name "
                     f"({rename}) or another --storage, or continue it: "
                     f"{resume_command(cfg, ' [--trials N]')}")


def resume_command(cfg: StudyConfig, more: str = "") -> str:
    """`hypersweep resume NAME --storage URL`, to paste: how the messages that
    stop a study say to continue it. `more`: options after it."""
    command = f"hypersweep resume {shlex.quote(cfg.study)}{storage_option(cfg)}{more}"
    return command + password_note(command)


# A URL's masked password in a printed command (`without_password`), shell-quoted or not.
_MASKED = re.compile(r"([a-z][\w+.-]*)://[^\s'@/]*:" + re.escape(MASK) + "@", re.IGNORECASE)


def password_note(command: str) -> str:
    """After a command to paste that names a store by a URL whose password is masked
    (never printed), how to give it: ` (put the password in place of ***, or set
    PGPASSWORD)`, which PostgreSQL's client reads; else ''."""
    schemes = [m.group(1).lower() for m in _MASKED.finditer(command)]
    if not schemes:
        return ""
    pg = any(s.startswith("postgres") for s in schemes)
    return f" (put the password in place of {MASK}{', or set PGPASSWORD' if pg else ''})"


def storage_option(cfg: StudyConfig) -> str:
    """` --storage URL` where the study's storage is not the default one of the
    directory the command runs in, where commands that take a study look."""
    url = without_password(cfg.tracking.storage)
    if url == "sqlite:///" + str(Path("optuna.db").resolve()):
        return ""
    return f" --storage {shlex.quote(url)}"


def tracking_option(cfg: StudyConfig) -> str:
    """` --tracking-uri URI` where the study's MLflow store is not the one that
    commands taking a run id (`replay`) use by default in this directory."""
    from hypersweep.search.config import default_tracking_uri
    uri, default = without_password(cfg.tracking.uri), default_tracking_uri()
    if default.startswith("sqlite:///") and not default.startswith("sqlite:////"):
        default = "sqlite:///" + str(Path(default[len("sqlite:///"):]).resolve())
    return "" if uri == default else f" --tracking-uri {shlex.quote(uri)}"


def check_stores(cfg: StudyConfig, rename: str = "--set study=NAME") -> None:
    """Fail at once, before Ray starts (seconds) and the progress bar shows, when a
    store file is the other kind of store (the MLflow and Optuna files sit side by
    side), a SQLite store's directory is not there or not writable, a storage
    server does not answer, or the study exists already. A quick look that never
    writes: no schema check, no tables created, a SQLite file not there is not
    created. Whatever else this cannot read, `create_study` opens properly and
    reports. `rename`: how the command changes the study's name."""
    store_template.check_kind(cfg.tracking.uri, "mlflow")
    why = http_unreachable(cfg.tracking.uri)    # MLflow's client retries for minutes
    if why:
        raise UserError(f"tracking.uri: cannot reach {without_password(cfg.tracking.uri)}: "
                        f"{why}")
    url = cfg.tracking.storage
    for key, uri in (("tracking.uri", cfg.tracking.uri), ("tracking.storage", url)):
        if (path := store_template.sqlite_file(uri)) is not None:
            store_template.check_writable(path, key)     # before either store is made
    db = store_template.sqlite_file(url)
    if db is not None and not db.exists():
        return
    store_template.check_kind(url, "optuna")
    try:
        names = _study_names(url)
    except Exception as e:  # noqa: BLE001 - create_study reports the rest, fully checked
        if _unreachable(e):         # before the MLflow store is made
            raise store_template.cannot_open("tracking.storage", url, e) from None
        return
    if cfg.study in names:
        raise _taken(cfg, rename)


def _study_names(url: str) -> list[str]:
    """The studies in an Optuna storage, read without checking or creating its schema."""
    storage = optuna.storages.RDBStorage(url, skip_compatibility_check=True,
                                         skip_table_creation=True)
    try:
        return [s.study_name for s in storage.get_all_studies()]
    finally:
        storage.engine.dispose()


def _unreachable(e: BaseException) -> bool:
    """Whether opening a database failed for want of a connection (a server not
    there, credentials refused) or of its driver, not for tables a new database
    does not have yet."""
    from sqlalchemy.exc import OperationalError
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, (OperationalError, ModuleNotFoundError)):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def check_no_parent(cfg: StudyConfig, tracker: MlflowTracker) -> None:
    """A new study whose name has a parent run in the MLflow store already (its
    Optuna study deleted, or another Optuna storage) would add its trials to
    that run, beside the old ones of the same numbers: refused, before either
    store is written. So is a name MLflow keeps for an experiment in its trash."""
    store = without_password(cfg.tracking.uri)
    delete = delete_command(cfg)
    if tracker.experiment_state(cfg.study) == "deleted":
        raise UserError(
            f"study: the MLflow experiment '{cfg.study}' in {store}"
            f" is deleted (in MLflow's trash), and MLflow keeps its name taken; choose "
            f"another study name, or free the name: {delete}")
    old = tracker.find_parent(cfg.study)
    if old is None:
        return
    if _made_meanwhile(cfg):    # another `run` of this name made both since check_stores
        raise _taken(cfg)
    raise UserError(
        f"study: '{cfg.study}' has a parent run in the MLflow store "
        f"{store} (run {old}) but no study in "
        f"{without_password(cfg.tracking.storage)}; choose another study name, "
        f"give the --storage it ran with, or delete its runs: {delete}")


def delete_command(cfg: StudyConfig) -> str:
    """`hypersweep delete NAME --tracking-uri URI --storage URL`, to paste. Its
    storage too: the default one may hold a study of this name, which it would delete."""
    store = without_password(cfg.tracking.uri)
    delete = (f"hypersweep delete {shlex.quote(cfg.study)} --tracking-uri {shlex.quote(store)}"
              f"{storage_option(cfg)}")
    return delete + password_note(delete)


def _made_meanwhile(cfg: StudyConfig) -> bool:
    """Whether the storage holds the study now (False where it cannot be read)."""
    try:
        return cfg.study in _study_names(cfg.tracking.storage)
    except Exception:  # noqa: BLE001 - not there, or not an Optuna storage yet
        return False


def create_study(cfg: StudyConfig) -> optuna.Study:
    """A new Optuna study; an existing one of the same name is an error, not a merge."""
    url = cfg.tracking.storage
    try:
        with store_template.new_store(url, "optuna") as copied:
            # A copy of what this Optuna version created needs no schema check (which
            # parses every migration script: a quarter of a second).
            storage = optuna.storages.get_storage(
                optuna.storages.RDBStorage(url, skip_compatibility_check=True,
                                           skip_table_creation=True) if copied else url)
        existing = [s.study_name for s in storage.get_all_studies()]
    except UserError:
        raise                       # the file is another kind of store (new_store)
    except Exception as e:  # noqa: BLE001 - a bad URL or an unreachable server
        raise store_template.cannot_open("tracking.storage", url, e) from None
    if cfg.study in existing:
        raise _taken(cfg)
    directions = [o.direction for o in cfg.search.objectives]
    try:
        return optuna.create_study(study_name=cfg.study, storage=storage,
                                   sampler=make_sampler(cfg.search), pruner=study_pruner(cfg),
                                   directions=directions)
    except optuna.exceptions.DuplicatedStudyError:
        raise _taken(cfg) from None     # another `run` of this name made it just now


def study_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    """The study's pruner, bounded by the epochs its trials train (hyperband's
    brackets), for a new study and a resumed one alike."""
    return make_pruner(cfg.search, fixed_epochs(cfg))


class StudyDriver:
    def __init__(self, cfg: StudyConfig, executor: Executor, tracker: MlflowTracker,
                 events: StudyEvents | None = None,
                 warm_trials: list[optuna.trial.FrozenTrial] | None = None) -> None:
        """`events`: told as the study goes (the CLI's progress display).
        `warm_trials`: `search.warm_start`'s trials when the caller loaded them
        already (to fail before opening any store); loaded here otherwise."""
        self.cfg = cfg
        self.executor = executor
        self.tracker = tracker
        self.events = events or StudyEvents()
        self.space = parse_space(cfg.space)
        self.objectives = cfg.search.objectives
        self.prunes = can_prune(cfg.search)
        self.running: dict[int, _Running] = {}
        self.storage_file: FileWatch | None = None      # the Optuna storage's, if a file
        self.counts = {s.value: 0 for s in TrialState}
        self.importances: Importances = {}
        self.warm_trials = warm_trials
        self.parent_recorded = False
        self.interrupted_before = 0
        # The MLflow store's failure met by a trial's report, and that trial: an
        # executor that trains in this process would fail the trial with it.
        self.report_failure: tuple[int, TrackingError] | None = None
        self.ending: _Running | None = None     # the trial being told its end

    def run(self, resume: bool = False, lease: Lease | None = None) -> StudyOutcome:
        """Run the study to `search.trials` trials; `resume` reopens an existing one.
        `lease`: the resumed study's, claimed by the caller already (`claim`)."""
        cfg = self.cfg
        with contextlib.ExitStack() as leased:
            # The lease tells `resume` elsewhere that this study is being run; a
            # resumed one's is claimed before its trials and runs are touched.
            if resume:
                if lease is None:
                    lease = leased.enter_context(claim(cfg))
                study, parent = self._reopen(lease.study)
            else:
                study, parent = self._open()
                leased.enter_context(Lease(study, settle_s=0))
            try:
                return self._run(study, parent, resume)
            except Abandoned as quit_:
                if quit_.hint is None:      # else quit after the end was written: its own
                    quit_.hint = (f"the study's end was not written; continue with: "
                                  f"{resume_command(cfg)}")
                raise

    def _run(self, study: optuna.Study, parent: str, resume: bool) -> StudyOutcome:
        cfg = self.cfg
        self.study, self.parent = study, parent
        db = store_template.sqlite_file(cfg.tracking.storage)
        self.storage_file = FileWatch(db) if db is not None else None
        self.parent_recorded = resume       # reopen_study puts it on the study
        self.counts.update(_counts(study))
        # Trials an earlier run's interruption failed: counted in the parent run's
        # trials_fail, not in the progress shown against the budget, which they do
        # not count against (trials_run).
        self.interrupted_before = sum(1 for t in study.get_trials(deepcopy=False)
                                      if t.user_attrs.get("interrupted")
                                      and "warm_start_from" not in t.user_attrs)
        target = cfg.search.trials or 1
        launched = trials_run(study)
        held: list[tuple[int, TrialResult]] = []
        heap.release()          # the start-up is over: trials make what is collected
        late: str | None = None     # a stop that came once every trial had ended
        with stops_as_interrupt() as stops:     # SIGTERM stops it as Ctrl-C does
            try:
                try:
                    self._run_trials(target, launched, held)
                except KeyboardInterrupt as stop:
                    stops.stopping()        # another SIGTERM must not cut this short
                    reason, code = stops.why(stop)
                    if self.ending is not None:     # the stop came as it was told its end
                        ending, self.ending = self.ending, None
                        self._end_plainly(ending, reason)
                    self._finish_all(held)
                    if self.running or trials_run(study) < target:
                        self._abort(reason)
                        self._end_study("KILLED")
                        # Written: this stop's status and hint stand, whatever signal follows.
                        stops.ended(code, stop_hint(cfg))
                        return StudyOutcome(cfg.study, self.parent, self.counts, study,
                                            interrupted=True, exit_code=code)
                    # It came as the last trial's result was recorded: the study is
                    # complete, and ends as one.
                    late = stop_name(code)
                except TrackingError as e:
                    stops.stopping()
                    raise self._tracking_failed(e, held) from None
                except StoreFileGone as gone:
                    stops.stopping()
                    raise self._storage_gone(gone, held) from None
                except UserError:
                    raise
                except Exception as fault:
                    if storage_error(fault):    # the Optuna storage failed: nothing to write to
                        raise
                    stops.stopping()
                    raise self._faulted(fault, held) from fault
            finally:
                stops.stopping()            # trials over: a SIGTERM waits for the end to be written
                self.executor.shutdown()
            try:
                self._end_study("FINISHED")
            except TrackingError as e:
                raise self._tracking_failed(e, []) from None
            except UserError:
                raise
            except Exception as fault:
                if storage_error(fault):
                    raise
                raise self._faulted(fault, []) from fault
            self._check_storage()
            late = late or (signal.Signals(stops.signum).name if stops.sigterm else
                            "Ctrl-C" if stops.held_interrupts else None)
        return StudyOutcome(cfg.study, self.parent, self.counts, study,
                            importances=self.importances, late_stop=late)

    def _run_trials(self, target: int, launched: int, held: list[tuple[int, TrialResult]]) -> None:
        """Launch trials up to `target` (`launched` so far) and finish them as they end;
        `held` has the results not told yet when a Ctrl-C or SIGTERM stops this."""
        cfg, study = self.cfg, self.study
        while launched < target or self.running:
            if not cfg.search.deterministic or not self.running:
                while launched < target and len(self.running) < self.executor.capacity:
                    self._launch(study.ask())
                    launched += 1
            held += self.executor.wait(self._on_report)
            if self.report_failure is not None:
                raise self.report_failure[1]
            notices = getattr(self.executor, "notices", None)
            while notices:
                self.events.notice(notices.pop(0))
            placed = getattr(self.executor, "placed", None)   # where trials started, live
            while placed:
                number, where = placed.pop(0)
                if number in self.running:
                    self.tracker.set_tags(self.running[number].run_id, where)
            if cfg.search.deterministic and len(held) < len(self.running):
                continue            # the batch is told together, in trial order
            self._finish_all(held)

    def _open(self) -> tuple[optuna.Study, str]:
        cfg = self.cfg
        warm = self.warm_trials
        if warm is None:            # checked before anything is written
            from hypersweep.search.warmstart import warm_start_trials
            warm = warm_start_trials(cfg, self.space)
        check_no_parent(cfg, self.tracker)
        # Read before the study is made: the files' digests, as the study's first trials see them.
        sources = source_digests(cfg.model, cfg.data.model_dump())
        study = create_study(cfg)
        if warm:
            study.add_trials(warm)
            # Seeded as the source study was, the sampler would propose the source's
            # first points again (random search, TPE's random start-up).
            study.sampler = sampler_after(cfg, len(warm))
        queue_owed(study, self.space, cfg.search, counted=0)
        tags = {"strategy": cfg.search.strategy, "pruner": cfg.search.pruner.name}
        tags.update({f"source.{k}": v for k, v in sources.items()})
        if warm:
            tags["warm_start"] = f"{cfg.search.warm_start} ({len(warm)} trials)"
        # A handle from a TrackingWriter: the run id is put on the study once known.
        parent = self.tracker.start_study(cfg.study, cfg.to_yaml(), tags=tags)
        from hypersweep.models.train import data_description
        self.tracker.log_files(parent, {"data.json": json.dumps(
            data_description(cfg.data.model_dump()), indent=2)})
        study.set_user_attr("config", cfg.snapshot())
        study.set_user_attr("sources", sources)
        return study, parent

    def _reopen(self, study: optuna.Study) -> tuple[optuna.Study, str]:
        from hypersweep.search.lifecycle import reopen_study
        from hypersweep.search.tracking import in_trash
        trashed = self.tracker.trashed_experiment(self.cfg.study)
        if trashed is not None:     # MLflow refuses runs in it: before anything is written
            raise UserError(f"{in_trash(self.cfg.study, self.cfg.tracking.uri, trashed)}; or "
                            f"delete the study: {delete_command(self.cfg)}")
        study, parent = reopen_study(self.cfg, self.tracker, study)
        # What an interruption lost, and a larger budget adds, of the enqueued points
        # and the grid's: the grid's sampler would draw random points instead.
        queue_owed(study, self.space, self.cfg.search, counted=trials_run(study))
        now = source_digests(self.cfg.model, self.cfg.data.model_dump())
        for line in changed(study.user_attrs.get("sources") or {}, now):
            self.events.notice(f"note: {line}")
        files: dict = study_files(study, [o.metric for o in self.objectives])
        stored = study.user_attrs.get("config") or {}
        if stored.get("search", {}).get("trials") != self.cfg.search.trials:
            # `resume --trials N`: the new budget is the study's from now on (a later
            # resume, a rerun), in both stores.
            stored = {**stored, "search": {**stored["search"], "trials": self.cfg.search.trials}}
            study.set_user_attr("config", stored)
            files["study.yaml"] = yaml.safe_dump(stored, sort_keys=False)
        self.tracker.log_files(parent, files)
        return study, parent

    def _launch(self, trial: optuna.trial.Trial) -> None:
        spec = trial_spec(self.cfg, {**self.cfg.params, **suggest(self.space, trial)},
                          trial.number, trial_seed(self.cfg.search.seed, trial.number))
        params = spec.params
        trial.set_user_attr("seed", spec.seed)
        run_id = self.tracker.start_trial(self.parent, trial.number,
                                          {**params, "trial_number": trial.number, "seed": spec.seed})
        self.running[trial.number] = _Running(trial, run_id, spec,
                                              pending=None if self.prunes else Pending())
        self._record_run_id(self.running[trial.number])
        self.executor.submit(spec)
        self.events.trial_started(trial.number, len(self.running))

    def _record_run_id(self, r: _Running, wait: bool = False) -> None:
        """Put the trial's MLflow run id on its Optuna trial as soon as the tracker
        knows it (and on the study, the parent's): at once with an in-process
        tracker, a report or two later with the tracking process, and at the latest
        before the trial is told (Optuna takes no attributes after that)."""
        run_id = self.tracker.resolve(r.run_id) if wait else self.tracker.known(r.run_id)
        if run_id is None:
            return
        self._record_parent(wait)   # the parent's id was answered before the trial's
        r.trial.set_user_attr("mlflow_run_id", run_id)
        r.recorded = True

    def _record_parent(self, wait: bool = True) -> None:
        """Put the parent run's MLflow id on the Optuna study, once (without
        `wait`, only if the tracker knows it already)."""
        if not self.parent_recorded:
            known = self.tracker.known(self.parent)
            if known is None and not wait:
                return
            self.parent = known or self.tracker.resolve(self.parent)
            self.study.set_user_attr("mlflow_parent_run_id", self.parent)
            self.parent_recorded = True

    def _on_report(self, number: int, step: int, metrics: Mapping[str, float]) -> bool:
        r = self.running[number]
        try:
            self.tracker.log_metrics(r.run_id, step, metrics)
        except TrackingError as e:
            self.report_failure = (number, e)
            raise
        r.epochs = step
        self.events.epoch(number, step)
        if not r.recorded:
            self._record_run_id(r)
        if len(self.objectives) > 1:
            return False            # Optuna prunes single-objective studies only
        value = metrics.get(self.objectives[0].metric)
        if value is None or not math.isfinite(value):
            return False
        if r.pending is not None:   # nothing reads them before the trial ends: batch them
            r.pending.add(step, float(value))
            if r.pending.due():
                r.pending.flush(r.trial)
            return False
        r.trial.report(float(value), step)
        # A trial that has trained all its epochs is complete: pruning it now would
        # save nothing and throw its result away.
        last = r.spec.params.get("epochs")
        return step != last and r.trial.should_prune()

    def _finish(self, number: int, result: TrialResult, interrupted: bool = False) -> None:
        """`interrupted`: cut short by a stop (Ctrl-C, SIGTERM), which a resume runs
        again; told so to the events (not counted against the budget)."""
        # The end goes to both stores before a stop is taken: a SIGTERM between the two
        # left the trial COMPLETE in Optuna and its run FAILED, for good.
        with stops_deferred():
            self.ending = self.running.get(number)      # until its run is ended: `_faulted`
            r, result, values = self._tell(number, result)
            tags = {"pruned_at_epoch": str(result.epochs)} \
                if result.state is TrialState.PRUNED else {}
            where = getattr(self.executor, "where", None)     # node/device the worker reported
            if where:
                tags.update(where(number))
            self.tracker.end_trial(r.run_id, result, {"trial.yaml": trial_yaml(r.spec)},
                                   tags=tags)
            self.ending = None
            self.counts[result.state.value] += 1
        self._check_storage()
        shown = {**self.counts, "FAIL": self.counts["FAIL"] - self.interrupted_before}
        self.events.trial_ended(TrialEvent(number, result.state, tuple(values) if values else None,
                                     result.reason, shown, self._best(),
                                     running=len(self.running), interrupted=interrupted))

    def _tell(self, number: int, result: TrialResult,
              wait: bool = True) -> tuple[_Running, TrialResult, list[float] | None]:
        """Tell a running trial's end to Optuna; the trial, its result as told (a
        non-finite objective fails it) and its objective values. `wait`: for its
        MLflow run id, to record it; without, it is recorded only if known."""
        r = self.running.pop(number)
        values: list[float] | None = None
        if result.state is TrialState.COMPLETE:
            values = [result.metrics.get(o.metric, math.nan) for o in self.objectives]
            bad = next(((o.metric, v) for o, v in zip(self.objectives, values)
                        if not math.isfinite(v)), None)
            if bad is not None:
                result = failed(f"objective {bad[0]} is {bad[1]}", result.history)
                values = None
        if result.epochs < r.epochs:
            # A result made without the trial's history (timed out, its worker dead):
            # the epochs it reported, as its curves show.
            result = dataclasses.replace(result, epochs=r.epochs)
        if not r.recorded:
            self._record_run_id(r, wait=wait)
        if r.pending is not None:
            r.pending.flush(r.trial)
        if result.reason:
            r.trial.set_user_attr("reason", result.reason)
        r.trial.set_user_attr("epochs", result.epochs)
        if result.best_epoch is not None:     # the epoch early stopping chose: `final`'s
            r.trial.set_user_attr("best_epoch", result.best_epoch)
        self.study.tell(r.trial, values, state=_OPTUNA_STATE[result.state])
        r.told = result
        return r, result, values

    def _finish_all(self, held: list[tuple[int, TrialResult]]) -> None:
        """Tell finished trials in trial order; popped one by one so that a Ctrl-C
        in between never tells a trial twice."""
        held.sort(key=lambda p: p[0])
        while held:
            self._finish(*held.pop(0))

    def _abort(self, reason: str) -> None:
        for number, r in list(self.running.items()):
            r.trial.set_user_attr("interrupted", True)
            # With the epochs it reported.
            self._finish(number, failed(reason), interrupted=True)
        # One Optuna had made RUNNING when the stop came, before it was launched.
        self.counts["FAIL"] += len(fail_running(self.study, reason))

    def _tracking_failed(self, error: TrackingError,
                         held: list[tuple[int, TrialResult]]) -> TrackingError:
        """The MLflow store failed in use; the Optuna storage, up still, is left with
        no trial RUNNING and the study ended FAILED, as a Ctrl-C leaves it: the trials
        that finished are told their results, those running fail as interrupted (a
        resume runs them again) with the store's failure as reason. Their runs are
        for `resume` to close once the store is back. The error to raise: what
        failed, in words, and how to continue."""
        why = tracking_failure(self.cfg.tracking.uri, error)
        reason = f"interrupted: {why}"
        cut = self.report_failure[0] if self.report_failure else None
        marked = ""
        try:
            held.sort(key=lambda p: p[0])
            while held:
                number, result = held.pop(0)
                if number != cut:           # else a result of the failure: interrupted
                    self._tell(number, result, wait=False)
            running = len(self.running)
            for number, r in list(self.running.items()):
                r.trial.set_user_attr("interrupted", True)
                self._tell(number, failed(reason), wait=False)
            running += len(fail_running(self.study, reason))    # asked, not launched
            self._record_parent(wait=False)
            self.study.set_user_attr(ENDED, "FAILED")
            if running:
                marked = "the running trials were marked FAIL in the Optuna storage; "
        except Exception:  # noqa: BLE001 - the Optuna storage failed too: resume marks them
            pass
        if why.startswith(WATCHED["mlflow"]):   # not coming back: what is left, and where
            return TrackingError(f"tracking.uri: {why}; {marked}the trials and their results "
                                 f"are in the Optuna storage ({resume_command(self.cfg)} "
                                 "needs the MLflow store back in place)")
        back = "" if why.startswith(PROCESS_GONE) else "once it is back, "
        return TrackingError(f"tracking.uri: {why}; {marked}{back}continue with: "
                             f"{resume_command(self.cfg)}")

    def _faulted(self, fault: Exception, held: list[tuple[int, TrialResult]]) -> StudyFailed:
        """A fault (a bug) stopped the study: it ends in both stores as a stop ends it.
        The trials that finished are told their results; those running, and one
        the fault caught being launched or told, fail as interrupted (a resume runs
        them again) with the fault as reason, their runs FAILED; the parent run
        ends FAILED. The error to raise."""
        why = str(fault) if isinstance(fault, ClusterLost) else \
            f"internal error: {failure_reason(fault)}"
        reason = f"interrupted: {why}"
        closed = True
        try:
            if self.ending is not None:
                ending, self.ending = self.ending, None
                self._end_plainly(ending, reason)
            self._finish_all(held)
            self._abort(reason)
        except Exception:  # noqa: BLE001 - the fault again, on the way: the plainest ends
            for r in list(self.running.values()):
                with contextlib.suppress(Exception):
                    self._end_plainly(r, reason)
            with contextlib.suppress(Exception):
                self.counts["FAIL"] += len(fail_running(self.study, reason))
        try:
            self._end_failed()
        except Exception:  # noqa: BLE001 - a store failing too: resume closes the rest
            closed = False
        done = ("closed in both stores (its running trials marked FAIL)" if closed else
                "its trials left running are marked FAIL on resume")
        return StudyFailed(f"{why}; the study was stopped and {done}; continue with: "
                           f"{resume_command(self.cfg)}", bug=not isinstance(fault, ClusterLost))

    def _end_plainly(self, r: _Running, reason: str) -> None:
        """End trial `r`, which a fault caught half launched or half told, in as few
        steps as can be: FAIL as interrupted, unless Optuna was told its result
        already; then its run, with that result."""
        self.running.pop(r.trial.number, None)
        result = r.told
        if result is None:
            result = dataclasses.replace(failed(reason), epochs=r.epochs)
            if not r.recorded:
                with contextlib.suppress(Exception):
                    self._record_run_id(r, wait=True)
            frozen = self.study._storage.get_trial(r.trial._trial_id)
            if frozen.state == optuna.trial.TrialState.RUNNING:
                for key, value in (("interrupted", True), ("reason", reason),
                                   ("epochs", r.epochs)):
                    r.trial.set_user_attr(key, value)
                self.study.tell(r.trial, state=optuna.trial.TrialState.FAIL)
        self.counts[result.state.value] += 1
        files = {}
        with contextlib.suppress(Exception):
            files = {"trial.yaml": trial_yaml(r.spec)}
        self.tracker.end_trial(r.run_id, result, files)

    def _end_failed(self) -> None:
        """End the study FAILED in both stores; without its figures and importances
        where they fail (the fault may be theirs)."""
        try:
            self._end_study("FAILED")
        except TrackingError:
            raise
        except Exception:  # noqa: BLE001 - the end without what failed
            self._record_parent()
            self.tracker.end_study(self.parent, {}, metrics={}, tags={}, status="FAILED")
            self.tracker.sync()
            self.study.set_user_attr(ENDED, "FAILED")

    def _check_storage(self) -> None:
        """Raise StoreFileGone when the Optuna storage's SQLite file is gone from its
        path (once: the study's stop that follows writes on)."""
        watch = self.storage_file
        if watch is not None:
            self.storage_file = None
            try:
                watch.check(WATCHED["optuna"])
            except StoreFileGone as gone:
                raise StoreFileGone(f"tracking.storage: {gone}") from None
            self.storage_file = watch

    def _storage_gone(self, gone: StoreFileGone,
                      held: list[tuple[int, TrialResult]]) -> StoreFileGone:
        """The Optuna storage's file went from its path: the study stops as a Ctrl-C
        stops it, the trials running fail with the reason, and the MLflow store, in
        place still, closes the study's runs (FAILED). The error to raise."""
        self._finish_all(held)
        self._abort(f"interrupted: {str(gone).removeprefix('tracking.storage: ')}")
        with contextlib.suppress(TrackingError):    # the message says what matters
            self._end_study("FAILED")
        return StoreFileGone(f"{gone}; the study's runs in the MLflow store are closed")

    def _best(self) -> float | None:
        if len(self.objectives) > 1:
            return None
        try:
            return self.study.best_value
        except ValueError:
            return None

    def _end_study(self, status: str) -> None:
        metrics, tags = {}, {}
        best = self._best()
        if best is not None:
            metrics["best_value"] = best
            tags["best_trial"] = str(self.study.best_trial.number)
        elif len(self.objectives) > 1 and self.counts.get("COMPLETE"):
            metrics["pareto_front_size"] = len(self.study.best_trials)
        metrics.update({f"trials_{k.lower()}": v for k, v in self.counts.items()})
        # Trials run here, above; the best value and the front count these too.
        warm = sum(1 for t in self.study.get_trials(deepcopy=False)
                   if "warm_start_from" in t.user_attrs)
        if warm:
            metrics["trials_warm_started"] = warm
        self._record_parent()               # not yet if the study ran no trial
        # The tracking process draws the figures while the importances are fitted here.
        self.tracker.log_files(self.parent,
                               study_files(self.study, [o.metric for o in self.objectives]))
        self.importances = param_importances(self.study, self.objectives, self.cfg.search.seed)
        files = {}
        if self.importances:
            metrics.update(importance_metrics(self.importances))
            complete = sum(1 for t in self.study.get_trials(deepcopy=False)
                           if t.state.name == "COMPLETE")      # warm-started ones too
            files["param_importance.png"] = Drawing(importance_figure,
                                                    (self.importances, complete))
        self.tracker.end_study(self.parent, files, metrics=metrics, tags=tags, status=status)
        # Landed before the study is called ended: a store that fails on these last
        # writes leaves it FAILED, with the one-line message (_tracking_failed).
        self.tracker.sync()
        self.study.set_user_attr(ENDED, status)


def claim(cfg: StudyConfig) -> Lease:
    """The lease of existing study `cfg.study`, to claim (`with claim(cfg) as lease:`)
    before its run starts, and to give to `StudyDriver.run`: a `resume` that finds
    another driver claimed it says so in one line, before Ray starts."""
    from hypersweep.search.lifecycle import load_study
    return Lease(load_study(cfg.study, cfg.tracking.storage))


def stop_name(code: int) -> str:
    """`Ctrl-C`, or the signal's name (`SIGTERM`), from a stop's exit status."""
    return "Ctrl-C" if code == 128 + signal.SIGINT else signal.Signals(code - 128).name


def stop_hint(cfg: StudyConfig) -> str:
    """What a study stopped by Ctrl-C, SIGTERM or SIGHUP says after how it stopped."""
    return f"running trials were marked FAIL; continue with: {resume_command(cfg)}"


def storage_error(e: BaseException) -> BaseException | None:
    """The database's own error when `e` is the Optuna storage's database failing
    (SQLAlchemy's error in its chain), else None: the CLI says it in one line
    (`cli.app.resumable`)."""
    seen: BaseException | None = e
    while seen is not None:
        if type(seen).__module__.split(".")[0] == "sqlalchemy":
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def fail_running(study: optuna.Study, reason: str,
                 run_ids: Mapping[int, Sequence[str]] | None = None,
                 epochs: Callable[[str], int] | None = None) -> dict[int, int]:
    """Mark FAIL, as interrupted with `reason`, the study's trials in state RUNNING
    (no executor runs them: a crash left them, or a stop came between Optuna
    making a trial and its launch); `run_ids` are their MLflow runs by trial
    number, recorded on them, and `epochs(run id)` the epochs each run logged,
    recorded as the trial's. The epochs of each trial failed, by number."""
    failed_numbers: dict[int, int] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        runs = (run_ids or {}).get(t.number)
        trained = epochs(runs[0]) if runs and epochs else 0
        # Private storage handle: Optuna's public API sets user attrs on live trials only.
        study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        study._storage.set_trial_user_attr(t._trial_id, "reason", reason)
        study._storage.set_trial_user_attr(t._trial_id, "epochs", trained)
        if runs:    # the stop may have come before the run id was stored on the trial
            study._storage.set_trial_user_attr(t._trial_id, "mlflow_run_id", runs[0])
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        failed_numbers[t.number] = trained
    return failed_numbers


# Study user attr: how the study's last run ended (FINISHED, KILLED; FAILED when the
# MLflow store failed); cleared when it is resumed, so a study that holds FINISHED
# or KILLED was closed in both stores.
ENDED = "ended"


PROCESS_GONE = "the tracking process"     # how the writer's errors about itself begin


def tracking_failure(uri: str, error: BaseException) -> str:
    """What failed, in words, when the MLflow store at `uri` failed in use with
    `error` (MLflow's own words, after its retries, run to a long line)."""
    where = without_password(uri)
    down = http_unreachable(uri)
    if down:
        server = "MLflow server" if uri.startswith(("http://", "https://")) else \
            "MLflow store's database server"
        return f"the {server} at {where} stopped answering ({down})"
    said = str(error).removeprefix(f"tracking ({where}): ")
    if said.startswith(WATCHED["mlflow"]):  # its file gone: said in full already
        return said
    if said.startswith(PROCESS_GONE):       # the writer, not the store: nothing to bring back
        return said.replace(PROCESS_GONE, f"{PROCESS_GONE} writing {where}", 1)
    if uri.startswith(("http://", "https://")):
        return f"the MLflow server at {where} refused a write: {said}"
    return f"the MLflow store {where} failed in use: {said}"


def trials_run(study: optuna.Study) -> int:
    """The trials that count against the budget: finished ones, less those a crash
    or Ctrl-C cut short and those learnt from another study (not run here)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished()
               and not t.user_attrs.get("interrupted") and "warm_start_from" not in t.user_attrs)


def _counts(study: optuna.Study) -> dict[str, int]:
    """Trials this study ran (a resumed one included), not those warm-started from."""
    states = [t.state.name for t in study.trials if "warm_start_from" not in t.user_attrs]
    return {s.value: states.count(s.value) for s in TrialState}
