"""Team set-up: a real `mlflow server` as the tracking store and a real PostgreSQL
as Optuna storage, started by the tests on 127.0.0.1."""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from hypersweep.cli.app import app
from hypersweep.search.config import StudyConfig, parse_config
from hypersweep.search.driver import StudyDriver, StudyEvents
from hypersweep.search.executors import SerialExecutor
from hypersweep.search.tracking import MlflowTracker
from hypersweep.search.writer import TrackingError, TrackingWriter
from tests.conftest import small_config, study_runs
from tests.executors import ThreadExecutor
from tests.servers import mlflow_server, mlflow_server_argv, postgres_cluster, serving

runner = CliRunner()
pytestmark = pytest.mark.slow


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_study_logs_to_an_mlflow_server(stores, tmp_path, write_config):
    with mlflow_server(tmp_path / "server") as url:
        path = write_config(small_config("remote", stores, trials=3))
        res = invoke("run", str(path), "--tracking-uri", url)
        assert res.exit_code == 0, res.output

        client = MlflowClient(tracking_uri=url)
        parent, children = study_runs(url, "remote")
        assert len(children) == 3
        assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
            "study.yaml", "trials.csv", "optimization_history.png"}
        for child in children:
            assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
            history = client.get_metric_history(child.info.run_id, "val_loss")
            assert [m.step for m in history] == [1, 2, 3]
            assert {"trial.yaml", "model.pt", "learning_curve.png"} <= {
                a.path for a in client.list_artifacts(child.info.run_id)}

        # The lifecycle commands work against the server too.
        res = invoke("replay", children[0].info.run_id, "--tracking-uri", url)
        assert res.exit_code == 0 and "identical" in res.output, res.output
        res = invoke("final", "remote", "--storage", stores.optuna_url, "--tracking-uri", url)
        assert res.exit_code == 0, res.output
        # MLflow's "View run ... at: URL" lines, with user:password when the URI has them
        assert "View run" not in res.output and "View experiment" not in res.output
        assert client.get_model_version("remote", "1").run_id


def test_postgres_storage_with_parallel_trials(stores):
    with postgres_cluster() as pg:
        raw = small_config("pg", stores, trials=6)
        raw["tracking"]["storage"] = pg
        raw["resources"] = {"executor": "serial", "parallel": 3}
        cfg = parse_config(raw)
        outcome = StudyDriver(cfg, ThreadExecutor(capacity=3), MlflowTracker(cfg.tracking.uri)).run()
        assert outcome.counts["COMPLETE"] == 6

        study = optuna.load_study(study_name="pg", storage=pg)
        assert [t.number for t in study.trials] == list(range(6))
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
        assert all(len(t.intermediate_values) == 3 for t in study.trials)
        _, children = study_runs(stores.mlflow_uri, "pg")
        assert [t.user_attrs["mlflow_run_id"] for t in study.trials] == [c.info.run_id for c in children]

        res = invoke("studies", "--storage", pg)
        assert res.exit_code == 0 and "pg" in res.output
        res = invoke("rerun", "pg", "--storage", pg, "--set", "search.trials=2")
        assert res.exit_code == 0, res.output
        assert "pg-rerun-1" in optuna.study.get_all_study_names(pg)


def test_store_passwords_are_kept_out_of_what_the_study_stores(stores, write_config):
    """A password in the storage URL reaches neither the Optuna study's config
    snapshot nor the parent run's study.yaml; commands given the URL work, and one
    that would fall back on the stored URL says which option to pass."""
    with postgres_cluster() as pg:          # trust auth: any password is accepted
        url = pg.replace("hypersweep@", "hypersweep:s3cret@")
        raw = small_config("secret", stores, trials=2)
        raw["resources"] = {"executor": "serial"}
        res = invoke("run", str(write_config(raw)), "--storage", url)
        assert res.exit_code == 0, res.output
        assert "s3cret" not in res.output

        study = optuna.load_study(study_name="secret", storage=url)
        stored = study.user_attrs["config"]["tracking"]["storage"]
        assert stored == url.replace("s3cret", "***")
        parent, _ = study_runs(stores.mlflow_uri, "secret")
        client = MlflowClient(tracking_uri=stores.mlflow_uri)
        with tempfile.TemporaryDirectory() as tmp:
            text = Path(client.download_artifacts(parent.info.run_id, "study.yaml", tmp)).read_text()
        assert "s3cret" not in text and stored in text

        res = invoke("best", "secret", "--storage", url)
        assert res.exit_code == 0, res.output
        res = runner.invoke(app, ["rerun", parent.info.run_id, "--tracking-uri", stores.mlflow_uri])
        assert res.exit_code == 2
        assert res.output.strip() == (
            f"error: tracking.storage: the study stored {stored} without its password; pass "
            "--storage with it (or leave it out of the URL: PGPASSWORD / ~/.pgpass, "
            "MLFLOW_TRACKING_PASSWORD)")


def test_a_storage_whose_driver_is_not_installed_names_the_package(tmp_path, monkeypatch):
    """Optuna said only "Failed to import DB access module for the specified storage URL"."""
    monkeypatch.chdir(tmp_path)
    res = invoke("studies", "--storage", "mysql://u@127.0.0.1:1/optuna")
    assert res.exit_code == 2
    assert res.output.strip() == ("error: --storage: 'mysql://u@127.0.0.1:1/optuna': "
                                  "its database driver (MySQLdb) is not installed; pip install "
                                  "mysqlclient (or pymysql, with mysql+pymysql://)")


def test_a_server_that_is_not_mlflow_is_bad_input_before_the_study_is_made(stores, write_config):
    """A web server at the tracking URI (a wrong port, the wrong service): the study was
    created in Optuna, then its first run refused, and a retry said the name was taken."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        res = invoke("run", str(write_config(small_config("web", stores, trials=2))),
                     "--tracking-uri", url)
    finally:
        server.shutdown()
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1] == (
        f"error: --tracking-uri: {url}: no MLflow tracking server answers at this URI "
        "(a wrong port or path?)")
    assert stores.untouched()


class _ServerDies(StudyEvents):
    """Stops the MLflow server at trial 1's first epoch, once all sent before has
    landed, and has the tracking process meet it there (trial 1's metrics)."""

    def __init__(self, tracker: TrackingWriter, stop) -> None:
        self.tracker, self.stop, self.driver = tracker, stop, None

    def epoch(self, number: int, step: int) -> None:
        if (number, step) != (1, 1):
            return
        self.tracker.sync()
        self.stop()
        self.tracker.flush(self.driver.running[1].run_id)
        with contextlib.suppress(TrackingError):
            self.tracker.sync()


class _ServerDiesAtTheEnd(StudyEvents):
    """Stops the server once the last trial's writes have landed: what fails is
    the study's own end (parent-run figures, metrics, status)."""

    def __init__(self, tracker: TrackingWriter, stop, last: int) -> None:
        self.tracker, self.stop, self.last = tracker, stop, last

    def trial_ended(self, event) -> None:
        if event.number == self.last:
            self.tracker.sync()
            self.stop()


def _served_study(stores, tmp_path, name: str, trials: int) -> tuple[StudyConfig, str, list[str]]:
    """Study `name`'s config tracked by an `mlflow server` not started yet: the
    config, the server's URL and its argv (to start it, and again on the same
    port and store)."""
    url, argv = mlflow_server_argv(tmp_path / "server")
    raw = small_config(name, stores, trials=trials)
    raw["tracking"]["uri"] = url
    return parse_config(raw), url, argv


def _until_the_server_dies(stores, tmp_path, monkeypatch, name: str, trials: int, events_for):
    """Run study `name` against a real `mlflow server`, which the events made by
    `events_for(tracker, stop)` kill with `stop()`. What the run raised, the
    server's URL, and its argv to start it again on the same port and store."""
    # A write to the dead server fails at once, not after MLflow's backoff (a minute).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    cfg, url, argv = _served_study(stores, tmp_path, name, trials)
    with serving(argv, f"{url}/health") as server:
        def stop() -> None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        tracker = TrackingWriter(url)
        try:
            events = events_for(tracker, stop)
            events.driver = StudyDriver(cfg, SerialExecutor(), tracker, events=events)
            with pytest.raises(TrackingError) as failure:
                events.driver.run()
        finally:
            with contextlib.suppress(TrackingError):
                tracker.close()
    return str(failure.value), url, argv


class _ServerRestarts(StudyEvents):
    """Kills the MLflow server at trial 1's first epoch, once all sent before has
    landed, and starts it again on the same port and store without waiting."""

    def __init__(self, tracker: TrackingWriter, restart) -> None:
        self.tracker, self.restart = tracker, restart

    def epoch(self, number: int, step: int) -> None:
        if (number, step) == (1, 1):
            self.tracker.sync()
            self.restart()


def test_an_mlflow_server_restarted_mid_study_is_not_noticed(stores, tmp_path):
    """A server down while it restarts (10-20 s here; the test holds it down 20 s
    more) failed the study 14 s after it went: MLflow's client gave up after 3
    retries, 2, 4 and 8 s apart. The writes now wait out about a minute, and every
    trial reaches the server whole."""
    cfg, url, argv = _served_study(stores, tmp_path, "restart", 3)
    again: list[subprocess.Popen] = []
    timers: list[threading.Timer] = []
    try:
        with serving(argv, f"{url}/health") as server:
            def start() -> None:
                again.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, start_new_session=True))

            def restart() -> None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
                timers.append(threading.Timer(20, start))
                timers[0].start()
            tracker = TrackingWriter(url)
            try:
                outcome = StudyDriver(cfg, SerialExecutor(), tracker,
                                      events=_ServerRestarts(tracker, restart)).run()
            finally:
                tracker.close()
        assert again, "the server was not restarted"
        assert outcome.counts == {"COMPLETE": 3, "PRUNED": 0, "FAIL": 0}
        study = optuna.load_study(study_name="restart", storage=stores.optuna_url)
        assert study.user_attrs["ended"] == "FINISHED"
        parent, children = study_runs(url, "restart")
        assert parent.info.status == "FINISHED" and "best_value" in parent.data.metrics
        client = MlflowClient(tracking_uri=url)
        assert len(children) == 3
        for trial, child in zip(study.trials, children):
            assert child.info.status == "FINISHED"
            steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")]
            assert steps == list(range(1, trial.user_attrs["epochs"] + 1))
            assert "model.pt" in {a.path for a in client.list_artifacts(child.info.run_id)}
    finally:
        for timer in timers:        # a study that failed first: no server starts after it
            timer.cancel()
            timer.join()
        for proc in again:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_an_mlflow_server_that_dies_at_the_study_end_leaves_it_failed(
        stores, tmp_path, monkeypatch):
    """The study's last writes failed only when the tracking process was closed,
    after the study had been marked ended FINISHED: MLflow's raw error, and a
    study that looked done although its parent run was still RUNNING."""
    failure, url, argv = _until_the_server_dies(
        stores, tmp_path, monkeypatch, "ends", 2,
        lambda tracker, stop: _ServerDiesAtTheEnd(tracker, stop, last=1))
    assert failure == (
        f"tracking.uri: the MLflow server at {url} stopped answering (Connection refused); "
        f"once it is back, continue with: hypersweep resume ends --storage "
        f"{shlex.quote(stores.optuna_url)}")
    study = optuna.load_study(study_name="ends", storage=stores.optuna_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert study.user_attrs["ended"] == "FAILED"

    with serving(argv, f"{url}/health"):        # back: resume writes the end
        res = invoke("resume", "ends", "--storage", stores.optuna_url)
        assert res.exit_code == 0, res.output
        parent, children = study_runs(url, "ends")
        assert parent.info.status == "FINISHED" and "best_value" in parent.data.metrics
        assert len(children) == 2
    study = optuna.load_study(study_name="ends", storage=stores.optuna_url)
    assert len(study.trials) == 2 and study.user_attrs["ended"] == "FINISHED"


def test_an_mlflow_server_that_dies_mid_study_leaves_nothing_running_in_optuna(
        stores, tmp_path, monkeypatch):
    """The server killed mid-study: the driver exited 1 quoting MLflow's
    'Max retries exceeded' with the Optuna storage (up) left with a trial RUNNING
    and no `ended`; the message said neither what failed nor how to continue."""
    failure, url, argv = _until_the_server_dies(stores, tmp_path, monkeypatch, "dies", 3,
                                                _ServerDies)
    why = f"the MLflow server at {url} stopped answering (Connection refused)"
    assert failure == (
        f"tracking.uri: {why}; the running trials were marked FAIL in the Optuna storage; "
        f"once it is back, continue with: hypersweep resume dies --storage "
        f"{shlex.quote(stores.optuna_url)}")
    study = optuna.load_study(study_name="dies", storage=stores.optuna_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]
    cut = study.trials[1].user_attrs
    assert cut["interrupted"] and cut["reason"] == f"interrupted: {why}" and cut["epochs"] == 1
    assert study.user_attrs["ended"] == "FAILED"

    with serving(argv, f"{url}/health"):        # back, on the same port and store
        res = invoke("resume", "dies", "--storage", stores.optuna_url)
        assert res.exit_code == 0, res.output
        client = MlflowClient(tracking_uri=url)
        run = client.get_run(cut["mlflow_run_id"])
        assert run.info.status == "FAILED" and run.data.tags["state"] == "FAIL"
        assert run.data.tags["failure_reason"] == f"interrupted: {why}"
        assert client.get_run(study.trials[0].user_attrs["mlflow_run_id"]).info.status == \
            "FINISHED"
    study = optuna.load_study(study_name="dies", storage=stores.optuna_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert study.user_attrs["ended"] == "FINISHED"


def tables(url: str) -> set[str]:
    """The tables of a database on a server."""
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return set(inspect(c).get_table_names())
    finally:
        engine.dispose()


def test_looking_a_study_up_in_an_empty_server_database_leaves_it_empty(
        stores, tmp_path, write_config):
    """`studies`, `best`, `export`, `delete`, `resume` and a warm start given a new
    PostgreSQL database: Optuna created its schema there by opening it, for a
    command that only looked (and then found no study)."""
    with postgres_cluster() as pg:
        res = invoke("studies", "--storage", pg)
        assert res.exit_code == 0 and res.output.startswith("no studies in "), res.output
        assert tables(pg) == set()
        for command in (["best", "x"], ["export", "x", "-o", str(tmp_path / "x.csv")]):
            res = runner.invoke(app, [*command, "--storage", pg])
            assert res.exit_code == 2, (command, res.output)
            assert res.output.strip() == (
                f"error: STUDY: unknown study 'x'; {pg} holds no study"), (command, res.output)
        res = runner.invoke(app, ["delete", "x", "--yes", "--storage", pg,
                                  "--tracking-uri", stores.mlflow_uri])
        assert res.exit_code == 2 and res.output.startswith(
            f"error: STUDY: no study 'x' in {pg}, and no MLflow experiment"), res.output
        config = write_config(small_config("empty", stores, trials=1))
        res = runner.invoke(app, ["resume", str(config), "--storage", pg])
        assert res.exit_code == 2 and "holds no study" in res.output, res.output
        res = runner.invoke(app, ["run", str(config), "--storage", pg, "--warm-start", "x"])
        assert res.exit_code == 2 and f"{pg} holds no study" in res.output, res.output
        assert tables(pg) == set()
    assert stores.untouched()


def test_a_server_database_of_the_other_kind_is_refused_before_anything_is_written(
        stores, write_config):
    """A PostgreSQL database that holds the Optuna storage, given as the MLflow store
    (or the reverse): the library added its tables beside the other's, then failed
    on their shared alembic_version ("Can't locate revision ..."), the database
    changed for good."""
    from sqlalchemy import create_engine, text

    with postgres_cluster() as pg:
        engine = create_engine(pg, isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            c.execute(text("CREATE DATABASE mlf"))
        engine.dispose()
        mlf = pg.rsplit("/", 1)[0] + "/mlf"
        optuna.create_study(study_name="there", storage=pg)
        MlflowClient(tracking_uri=mlf).search_experiments()
        before = {pg: tables(pg), mlf: tables(mlf)}
        assert "studies" in before[pg] and "experiments" in before[mlf]
        config = write_config(small_config("mixed", stores, trials=1))

        res = runner.invoke(app, ["run", str(config), "--tracking-uri", pg])
        assert res.exit_code == 2
        assert res.output.strip() == (
            f"error: --tracking-uri: {pg} holds an Optuna storage, not an MLflow store; give "
            "the mlflow store a database of its own (the two cannot share one)")
        res = runner.invoke(app, ["run", str(config), "--storage", mlf])
        assert res.exit_code == 2
        assert res.output.strip().startswith(
            f"error: --storage: {mlf} holds an MLflow store, not an Optuna storage")
        res = runner.invoke(app, ["studies", "--storage", mlf])
        assert res.exit_code == 2 and res.output.startswith("error: --storage: ")
        res = runner.invoke(app, ["ui", "--tracking-uri", pg])
        assert res.exit_code == 2 and res.output.startswith("error: --tracking-uri: ")
        assert {pg: tables(pg), mlf: tables(mlf)} == before
        assert stores.untouched()


def test_a_tracking_server_that_never_answers_is_bad_input_at_once(stores, write_config):
    """A stalled tunnel or a hung server: MLflow's client waited 20 s a try, five
    tries, then quoted urllib3's 'Max retries exceeded ... Read timed out'."""
    from tests.search.test_net import listening

    config = write_config(small_config("hung", stores, trials=1))
    with listening() as port:
        res = runner.invoke(app, ["run", str(config), "--tracking-uri", f"http://127.0.0.1:{port}"])
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"error: --tracking-uri: cannot reach http://127.0.0.1:{port}: it takes the connection "
        "but sends nothing back within 5 s (a stalled tunnel or port-forward, a server that "
        "hangs)")
    assert stores.untouched()
