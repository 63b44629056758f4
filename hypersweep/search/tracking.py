"""MLflow tracking: experiment = study, parent run = the study, one nested child
run per trial. The only module that imports MLflow, and only when a tracker is
made: `hypersweep run` tracks through `search.writer`, which runs this tracker in
its own process, so the driver never pays for MLflow's import.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from hypersweep.search import store_template
from hypersweep.models.errors import UserError, first_line
from hypersweep.models.figures import artifact_bytes
from hypersweep.search.config import check_tracking_scheme, without_password
from hypersweep.search.net import http_unreachable
from hypersweep.search.sqlite import WATCHED, FileWatch   # and SQLite stores in WAL mode
from hypersweep.models.trial import TrialResult, TrialState

ROLE_TAG = "hypersweep.role"
STATE_TAG = "state"
FLUSH_SECONDS = 2.0          # batch metric writes; curves still grow live in the UI
PER_REQUEST = 1000           # MLflow's limit on the entries of one log_batch

LOST_TAG = "lost_end"        # on a child run closed by resume (tracking.end_lost_run)
LOST_START = "lost_start"    # on a child run resume made for a trial that had none
_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "FINISHED",
           TrialState.FAIL: "FAILED"}


def artifact_root_for(uri: str) -> str | None:
    """Keep a SQLite store's artifacts beside its database file, not in the cwd."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):]).resolve()
        return (db.parent / "mlartifacts").as_uri()
    return None


def check_store_exists(uri: str, key: str = "tracking.uri") -> None:
    """A one-line error when `uri` names a SQLite file that is not there."""
    db = store_template.sqlite_file(uri)
    if db is not None and not db.exists():
        raise UserError(f"{key}: no MLflow store at {db.absolute()} (no such file)")


def in_trash(name: str, uri: str, experiment_id: str) -> str:
    """`study 'NAME': its MLflow experiment in STORE is deleted ...; restore it: ...`"""
    from hypersweep.search.driver import password_note
    store = without_password(uri)
    restore = (f"MLFLOW_TRACKING_URI={shlex.quote(store)} mlflow experiments restore "
               f"--experiment-id {experiment_id}")
    return (f"study '{name}': its MLflow experiment in {store} is deleted (in MLflow's "
            f"trash), its runs with it; restore it: {restore}{password_note(restore)}")


class MlflowTracker:
    """Writes to MLflow in this process. Run ids it returns are real MLflow ids;
    `resolve`, `known` and `close` exist so that the driver can be handed this or a
    `search.writer.TrackingWriter` alike."""

    RUNS_PAGE = 50000       # runs a search returns at most (MLflow's own limit)

    def __init__(self, uri: str, create: bool = True, key: str = "tracking.uri",
                 reading: bool = False) -> None:
        """`create`: False for commands that build on what a study wrote (replay,
        export, final, rerun RUN_ID): a SQLite file that is not there is then a
        wrong path, not a store to create empty. `key`: what the errors name, where
        the URI came from (a config's `tracking.uri`, or `--tracking-uri`).
        `reading`: for a command that only reads (`store_template.open_read_only`)."""
        from mlflow import entities
        from mlflow.tracking import MlflowClient

        self.uri = uri
        check_tracking_scheme(uri, key)     # MLflow: "Model registry functionality is unavailable"
        if not create:
            check_store_exists(uri, key)
        why = http_unreachable(uri)         # MLflow's client retries a dead server for minutes
        if why:
            raise UserError(f"{key}: cannot reach {without_password(uri)}: {why}")
        # MLflow logs migrations and warnings at INFO on first use of a store.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # A failing SQLite or database server store: MLflow logs the driver's error
        # with its traceback (forty lines) at ERROR, then raises it, which the
        # command says in one line.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        if reading and store_template.open_read_only(uri):
            store_template.check_kind(uri, "mlflow", key)
            self.client = MlflowClient(tracking_uri=uri)
        else:
            with store_template.new_store(uri, "mlflow"):
                self.client = MlflowClient(tracking_uri=uri)    # opens (creates) the store
        if uri.startswith(("http://", "https://")):
            self._check_server(key)
        db = store_template.sqlite_file(uri)
        self._file = FileWatch(db) if db is not None and not reading else None
        self._e = entities           # Metric, Param, RunTag
        self._pending: dict[str, list[entities.Metric]] = {}
        self._last_flush: dict[str, float] = {}
        self.experiment_id: str | None = None

    def _check_server(self, key: str) -> None:
        """One request, before the study writes anywhere: a server that answers but
        is not MLflow's, a wrong path, or refused credentials are bad input, not a
        study left half-created when its first run is refused."""
        from mlflow.exceptions import MlflowException
        where = without_password(self.uri)
        try:
            self.client.search_experiments(max_results=1)
        except MlflowException as e:
            status = getattr(e, "get_http_status_code", lambda: None)()
            text = str(e)
            if status in (401, 403) or " 401 " in text or " 403 " in text:
                why = ("the server refused the credentials; set MLFLOW_TRACKING_USERNAME and "
                       "MLFLOW_TRACKING_PASSWORD (or user:password@ in the URI)")
            elif " 404 " in text or "!= 200" in text:
                why = "no MLflow tracking server answers at this URI (a wrong port or path?)"
            else:
                why = first_line(e)
            raise UserError(f"{key}: {where}: {why}") from None
        except Exception as e:  # noqa: BLE001 - TLS to a plain server, a reset connection
            raise UserError(f"{key}: {where}: {type(e).__name__}: {first_line(e)}") from None

    def resolve(self, run_id: str) -> str:
        return run_id

    def known(self, run_id: str) -> str | None:
        return run_id

    def close(self) -> None:
        for run_id in list(self._pending):
            self.flush(run_id)
        # MLflow keeps a store (and its pool of open connections: three files each
        # on SQLite) per URI for the process's life; a process that tracks several
        # studies in turn gave back none of them. The pool reconnects if used again.
        for client in (getattr(self.client, "_tracking_client", None),
                       getattr(self.client, "_registry_client_lazy", None)):
            engine = getattr(getattr(client, "store", None), "engine", None)
            if engine is not None:
                with contextlib.suppress(Exception):
                    engine.dispose()

    def sync(self) -> None:
        """Every call so far has been written (as TrackingWriter.sync): they are
        written as they are made, metrics at the latest at `close`; and to the file
        the store's path names still (`check_in_place`)."""
        self.check_in_place()

    def check_in_place(self) -> None:
        """Raise `StoreFileGone` when a SQLite store's file was deleted, moved
        or replaced since it was opened."""
        if self._file is not None:
            self._file.check(WATCHED["mlflow"])

    def __enter__(self) -> "MlflowTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- study (parent run)

    def start_study(self, name: str, config_yaml: str, tags: Mapping[str, str] = {}) -> str:
        """Create the experiment and parent run, or reopen the existing parent run."""
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            self.experiment_id = self.client.create_experiment(
                name, artifact_location=artifact_root_for(self.uri))
        else:
            self.experiment_id = exp.experiment_id
        parent = self.find_parent(name)
        if parent is None:
            run = self.client.create_run(self.experiment_id, run_name=name,
                                         tags={ROLE_TAG: "study", **tags})
            parent = run.info.run_id
        else:
            self.client.update_run(parent, status="RUNNING")
        self.client.log_text(parent, config_yaml, "study.yaml")
        return parent

    def parent_of(self, name: str) -> str:
        """The parent run of study `name` in this store, or a one-line error (the
        study ran with another store)."""
        parent = self.find_parent(name)
        if parent is None:
            trashed = self.trashed_experiment(name)
            if trashed is not None:
                raise UserError(in_trash(name, self.uri, trashed))
            raise UserError(f"study '{name}': no parent run in {without_password(self.uri)}; "
                            "pass the --tracking-uri the study ran with")
        return parent

    def trashed_experiment(self, name: str) -> str | None:
        """The id of study `name`'s experiment when it is in MLflow's trash (deleted
        in the UI, say: its runs with it), else None."""
        exp = self.client.get_experiment_by_name(name)
        return exp.experiment_id if exp is not None and exp.lifecycle_stage == "deleted" else None

    def experiment_state(self, name: str) -> str | None:
        """"active" or "deleted" (in MLflow's trash, still holding the name) for the
        experiment of study `name`; None when there is none."""
        exp = self.client.get_experiment_by_name(name)
        return None if exp is None else exp.lifecycle_stage

    def experiment_runs(self, name: str) -> tuple[str, int] | None:
        """(lifecycle stage, number of runs, deleted ones included) of the experiment
        of study `name`; None when there is none."""
        from mlflow.entities import ViewType
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            return None
        count, token = 0, None
        while True:     # by pages: MLflow returns at most 50,000 runs a call
            page = self.client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL,
                                           max_results=self.RUNS_PAGE, page_token=token)
            count += len(page)
            token = page.token
            if not token:
                return exp.lifecycle_stage, count

    def delete_study(self, name: str) -> tuple[str, str] | None:
        """Move the experiment of study `name`, with its runs, to MLflow's trash,
        renamed `NAME.deleted-YYYYmmdd-HHMMSS` first so that the name is free for a
        new study (MLflow keeps a deleted experiment's name taken): (the new name,
        the experiment id), or None when there is no such experiment. `mlflow gc`
        removes it for good (`gc_command`)."""
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            return None
        trash = f"{name}.deleted-{time.strftime('%Y%m%d-%H%M%S')}"
        if exp.lifecycle_stage == "deleted":        # MLflow renames active ones only
            self.client.restore_experiment(exp.experiment_id)
        self.client.rename_experiment(exp.experiment_id, trash)
        self.client.delete_experiment(exp.experiment_id)
        return trash, exp.experiment_id

    def has_registered_model(self, name: str) -> bool:
        try:
            self.client.get_registered_model(name)
        except Exception:  # noqa: BLE001 - not registered, or no registry on a server
            return False
        return True

    def find_parent(self, name: str) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            return None
        runs = self.client.search_runs([exp.experiment_id],
                                       filter_string=f"tags.`{ROLE_TAG}` = 'study'",
                                       max_results=1)
        return runs[0].info.run_id if runs else None

    def end_study(self, parent: str, files: Mapping[str, bytes | str],
                  metrics: Mapping[str, float] = {}, tags: Mapping[str, str] = {},
                  status: str = "FINISHED") -> None:
        self.check_in_place()
        now = _now_ms()
        self.client.log_batch(parent,
                              metrics=[self._e.Metric(k, float(v), now, 0) for k, v in metrics.items()],
                              tags=[self._e.RunTag(k, str(v)) for k, v in tags.items()])
        self._log_files(parent, files)
        self.client.set_terminated(parent, status=status)

    # -- trials (child runs)

    def start_trial(self, parent: str, number: int, params: Mapping[str, Any],
                    tags: Mapping[str, str] = {}) -> str:
        run = self.client.create_run(
            self.experiment_id, run_name=f"trial-{number:04d}",
            tags={"mlflow.parentRunId": parent, ROLE_TAG: "trial",
                  "optuna.trial_number": str(number), STATE_TAG: "RUNNING", **tags})
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=[self._e.Param(k, _param_str(v)) for k, v in params.items()])
        self._last_flush[run_id] = time.monotonic()
        return run_id

    def log_metrics(self, run_id: str, step: int, metrics: Mapping[str, float]) -> None:
        now = _now_ms()
        self._pending.setdefault(run_id, []).extend(
            self._e.Metric(k, float(v), now, step) for k, v in metrics.items())
        if time.monotonic() - self._last_flush.get(run_id, 0.0) >= FLUSH_SECONDS:
            self.flush(run_id)

    def flush(self, run_id: str, metrics: Sequence = (), tags: Sequence = ()) -> None:
        """Write the run's pending metrics, and `metrics` and `tags` with them: in as
        few requests as MLflow takes (1000 entries each; `tags` fit in one), the
        tags in the last. A trial's end is one request where its last epochs' curves
        and its summary were two (a write to a SQLite store costs milliseconds
        whatever it holds, and a server a round trip)."""
        batch = self._pending.pop(run_id, []) + list(metrics)
        last = max(0, len(batch) - (PER_REQUEST - len(tags)))
        for i in range(0, last, PER_REQUEST):
            self.client.log_batch(run_id, metrics=batch[i:min(i + PER_REQUEST, last)])
        if batch[last:] or tags:
            self.client.log_batch(run_id, metrics=batch[last:], tags=list(tags))
        self._last_flush[run_id] = time.monotonic()

    def end_trial(self, run_id: str, result: TrialResult, files: Mapping[str, bytes | str],
                  tags: Mapping[str, str] = {}) -> None:
        # The trial's result as Optuna was told it: early stopping reports the epoch
        # it chose, which is not the curves' last (val_mse 0.546 told, 0.592 last).
        # Logged at that epoch's step, so that the UI shows which epoch they are.
        self.check_in_place()
        # A failed trial told Optuna no result (a NaN loss's last metrics stay in the curves).
        summary = {f"final_{k}": v for k, v in result.metrics.items()
                   if result.state is not TrialState.FAIL}
        step = result.best_epoch if result.best_epoch is not None else result.epochs
        now = _now_ms()
        all_tags = {STATE_TAG: result.state.value, "epochs": str(result.epochs), **tags}
        if result.best_epoch is not None:
            all_tags["best_epoch"] = str(result.best_epoch)
        if result.reason:   # `reason` on every run that has one: one key to filter runs by
            all_tags["reason"] = result.reason[:5000]
            if result.state is TrialState.FAIL:
                all_tags["failure_reason"] = all_tags["reason"]
        self.flush(run_id, [self._e.Metric(k, float(v), now, step) for k, v in summary.items()],
                   [self._e.RunTag(k, v) for k, v in all_tags.items()])
        self._log_files(run_id, {**result.artifacts, **files})
        self.client.set_terminated(run_id, status=_STATUS[result.state])
        self._last_flush.pop(run_id, None)

    def log_files(self, run_id: str, files: Mapping[str, bytes | str]) -> None:
        """Write (or overwrite) artifacts of a run, e.g. the parent's refreshed figures."""
        self._log_files(run_id, files)

    def trial_runs(self, parent: str) -> dict[int, list[str]]:
        """Child run ids of a study by Optuna trial number (a list, to catch duplicates)."""
        out: dict[int, list[str]] = {}
        for number, run in self._children(parent):
            out.setdefault(number, []).append(run.info.run_id)
        return out

    def unended_trial_runs(self, parent: str) -> dict[int, list[str]]:
        """Child run ids still RUNNING, by Optuna trial number."""
        out: dict[int, list[str]] = {}
        for number, run in self._children(parent):
            if run.info.status == "RUNNING":
                out.setdefault(number, []).append(run.info.run_id)
        return out

    def end_lost_run(self, run_id: str, state: str, finals: Mapping[str, float] = {},
                     step: int = 0, files: Mapping[str, str] = {}) -> None:
        """A trial's run whose end the store never took (its server was down when the
        trial ended): KILLED, with the state Optuna recorded for the trial (its
        `state` tag too, which still said RUNNING), and what Optuna holds of what
        was lost: its result (`finals`, at epoch `step`) and its trial.yaml (`files`)."""
        now = _now_ms()
        self.flush(run_id, [self._e.Metric(k, float(v), now, step) for k, v in finals.items()])
        self._log_files(run_id, files)
        self.set_tags(run_id, {STATE_TAG: state,
                               LOST_TAG: f"the MLflow store did not take this run's end; "
                                         f"its Optuna trial is {state}; its result and "
                                         "trial.yaml were written from Optuna on resume, its "
                                         "model.pt is lost (hypersweep replay trains it again)"})
        self.client.set_terminated(run_id, status="KILLED")

    def epochs_logged(self, run_id: str) -> int:
        """The last epoch a trial's run has metrics of (0: none)."""
        run = self.client.get_run(run_id)
        key = next((k for k in run.data.metrics if not k.startswith("final_")), None)
        if key is None:
            return 0
        return max((m.step for m in self.client.get_metric_history(run_id, key)), default=0)

    def trial_metrics(self, parent: str) -> dict[int, dict[str, float]]:
        """Each trial's last metric values, from one search (not a request per run)."""
        return {number: dict(run.data.metrics) for number, run in self._children(parent)}

    def _children(self, parent: str) -> list[tuple[int, Any]]:
        exp = self.client.get_run(parent).info.experiment_id
        runs = self.client.search_runs([exp], max_results=50000,
                                       filter_string=f"tags.`{ROLE_TAG}` = 'trial'")
        return [(int(r.data.tags["optuna.trial_number"]), r) for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent]

    def read_text(self, run_id: str, path: str) -> str:
        """A text artifact of a run, e.g. `study.yaml` or `trial.yaml`."""
        from mlflow.exceptions import MlflowException
        try:
            with tempfile.TemporaryDirectory(prefix="hypersweep-") as tmp:
                return Path(self.client.download_artifacts(run_id, path, tmp)).read_text()
        except MlflowException as e:
            raise UserError(f"run {run_id}: cannot read {path} from {without_password(self.uri)}: "
                            f"{first_line(e)}") from None

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[self._e.RunTag(k, str(v)) for k, v in tags.items()])

    def log_final(self, parent: str, params: Mapping[str, Any], metrics: Mapping[str, float],
                  files: Mapping[str, bytes], model_name: str,
                  trial: int, best: bool = True) -> tuple[str, str | None, str | None]:
        """The final model: a `final` run nested under the study, its checkpoint
        registered as a new version of the registered model `model_name`.
        (run id, model version, None), or (run id, None, why) when the run was
        logged but the registry refused the model: the test set was looked at
        either way, which the caller records."""
        exp = self.client.get_run(parent).info.experiment_id
        run = self.client.create_run(exp, run_name="final", tags={
            "mlflow.parentRunId": parent, ROLE_TAG: "final", "trial": str(trial),
            **({"best_trial": str(trial)} if best else {})})
        run_id = run.info.run_id
        now = _now_ms()
        self.client.log_batch(run_id, params=[self._e.Param(k, _param_str(v)) for k, v in params.items()],
                              metrics=[self._e.Metric(k, float(v), now, 0) for k, v in metrics.items()])
        self._log_files(run_id, {f"model/{k}" if k == "model.pt" else k: v
                                 for k, v in files.items()})
        self.client.set_terminated(run_id, status="FINISHED")
        try:
            try:
                self.client.get_registered_model(model_name)
            except Exception:  # noqa: BLE001 - not registered yet
                self.client.create_registered_model(model_name)
            version = self.client.create_model_version(
                model_name, source=f"{run.info.artifact_uri}/model", run_id=run_id,
                tags={k: str(v) for k, v in metrics.items() if k.startswith("test_")})
        except Exception as e:  # noqa: BLE001 - e.g. a server without a model registry
            return run_id, None, first_line(e)
        return run_id, str(version.version), None

    def _log_files(self, run_id: str, files: Mapping[str, bytes | str]) -> None:
        if not files:
            return
        with tempfile.TemporaryDirectory(prefix="hypersweep-") as tmp:
            for name, content in files.items():
                content = artifact_bytes(content)       # a Drawing is drawn here
                if content is None:                     # one that could not be drawn
                    continue
                path = Path(tmp, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, str):
                    path.write_text(content)
                else:
                    path.write_bytes(content)
            self.client.log_artifacts(run_id, tmp)


def model_name_for(study: str) -> str:
    """The registered model a study's final model is a version of: the study's
    name, less what MLflow refuses in model names ('/' and ':' become '-')."""
    return study.replace("/", "-").replace(":", "-")


def gc_command(uri: str, experiment_id: str, run_id: str) -> str:
    """The `mlflow gc` command that removes a deleted experiment of the store at
    `uri` for good, with its runs (`run_id` is one of them), and nothing else: run
    where its database is (a server's, on the server, its --backend-store-uri in
    place of STORE_OF_THE_SERVER), from any directory."""
    from hypersweep.search.config import absolute_url

    url = without_password(absolute_url(uri))
    server = uri.startswith(("http://", "https://"))
    backend = "STORE_OF_THE_SERVER" if server else shlex.quote(url)
    exe = str(Path(sys.executable).with_name("mlflow"))     # as `ui_argv` runs it
    env = "MLFLOW_ALLOW_FILE_STORE=true " if not server and not url.startswith(
        ("sqlite", "postgres", "mysql", "mssql")) else ""     # a file store
    # Without --run-ids, gc removes every deleted run of the store, of other
    # experiments too; with them, those runs and the given experiments' only.
    return (f"{env}{shlex.quote(exe)} gc --backend-store-uri {backend} --tracking-uri "
            f"{shlex.quote(url)} --experiment-ids {experiment_id} --run-ids {run_id}")


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this store, on 127.0.0.1, to print:
    a password in the URI masked."""
    uri = without_password(uri)
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    argv = ui_argv(uri, 5000)
    exe = shutil.which("mlflow") and "mlflow"
    if not exe:     # not on PATH: the one installed beside this interpreter (e.g. .venv/bin)
        rel = os.path.relpath(argv[0])
        exe = argv[0] if rel.startswith("..") else rel      # from inside the project: short
    return shlex.join([exe, *argv[1:]])     # a path with a space stays one argument


def ui_argv(uri: str, port: int, served: str | None = None) -> list[str]:
    """`mlflow ui` on this store (artifacts beside a SQLite file), on 127.0.0.1;
    `served`: the URI it opens the store by, where not `uri` itself."""
    root = artifact_root_for(uri)
    extra = ["--default-artifact-root", root] if root else []
    exe = str(Path(sys.executable).with_name("mlflow"))
    return [exe, "ui", "--backend-store-uri", served or uri, *extra, "--host", "127.0.0.1",
            "--port", str(port)]


def _param_str(v: Any) -> str:
    return str(v)[:6000]


def _now_ms() -> int:
    return int(time.time() * 1000)


os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow prints two lines for each run it ends on a server ("View run ... at: URL"),
# the URL with its user:password when the tracking URI has them.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# A server that died or hangs: MLflow retries each request 7 times with backoff
# over about 4 minutes, at up to 120 s each, while the study waits. A study's
# server is on the team's network: a dead one is said in about a minute (3
# retries, 8, 16 and 32 s apart), a hung one in about two (20 s per attempt). A
# server restarted within that (one starts in 10-20 s) is not noticed: the
# writes wait in the tracking process while the trials train on.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "8")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
