"""The tracking process (search.writer) against real MLflow and Optuna SQLite stores."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from hypersweep.models.trial import TrialResult, TrialState
from hypersweep.search.config import parse_config
from hypersweep.search.driver import StudyDriver
from hypersweep.search.executors import SerialExecutor
from hypersweep.search.tracking import MlflowTracker
from hypersweep.search.writer import TrackingError, TrackingWriter
from tests.conftest import Stores, small_config, study_runs


def _content(uri: str, study: str) -> list[dict]:
    """What a user sees of each trial's run: params, metric histories, tags, artifacts."""
    client = MlflowClient(tracking_uri=uri)
    _, children = study_runs(uri, study)
    out = []
    for c in children:
        histories = {k: [(m.step, m.value) for m in sorted(
            client.get_metric_history(c.info.run_id, k), key=lambda m: m.step)]
            for k in c.data.metrics
            if k not in ("epoch_time", "final_epoch_time", "final_inference_ms")}    # timings
        tags = {k: v for k, v in c.data.tags.items()
                if not k.startswith("mlflow.") and k not in ("host", "node")}
        out.append({"params": c.data.params, "metrics": histories, "tags": tags,
                    "status": c.info.status,
                    "artifacts": sorted(a.path for a in client.list_artifacts(c.info.run_id))})
    return out


def test_a_study_tracked_by_the_writer_matches_one_tracked_in_process(tmp_path):
    """Same study, serial executor: the tracking process writes what the in-process
    tracker writes, figures drawn as PNGs, and Optuna points at the real run ids."""
    contents = []
    for name, make in (("inproc", MlflowTracker), ("writer", TrackingWriter)):
        stores = Stores(tmp_path / name)
        stores.dir.mkdir()
        cfg = parse_config(small_config("same", stores, strategy="random", trials=3))
        with make(cfg.tracking.uri) as tracker:
            outcome = StudyDriver(cfg, SerialExecutor(), tracker).run()
        assert not outcome.parent_run_id.startswith("@")
        contents.append(_content(stores.mlflow_uri, "same"))
        parent, children = study_runs(stores.mlflow_uri, "same")
        study = optuna.load_study(study_name="same", storage=stores.optuna_url)
        assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id == outcome.parent_run_id
        assert [t.user_attrs["mlflow_run_id"] for t in study.trials] == [c.info.run_id for c in children]
        client = MlflowClient(tracking_uri=stores.mlflow_uri)
        for c in children:
            for png in ("learning_curve.png", "confusion_matrix.png"):
                path = client.download_artifacts(c.info.run_id, png, str(tmp_path))
                assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert contents[0] == contents[1]
    assert [len(t["metrics"]["val_accuracy"]) for t in contents[1]] == [3, 3, 3]


def test_handles_resolve_to_run_ids_and_reads_wait(stores):
    with TrackingWriter(stores.mlflow_uri) as w:
        parent = w.start_study("handles", "study: handles\n")
        child = w.start_trial(parent, 0, {"lr": 0.1})
        assert parent.startswith("@") and child.startswith("@")
        for step in range(1, 4):
            w.log_metrics(child, step, {"val_accuracy": step / 10})
        w.end_trial(child, TrialResult(TrialState.COMPLETE, {"val_accuracy": 0.3}, epochs=3), {})
        assert w.trial_runs(parent) == {0: [w.resolve(child)]}      # a read after the writes
        assert w.known(child) == w.resolve(child) and len(w.resolve(child)) == 32
        assert w.read_text(parent, "study.yaml") == "study: handles\n"
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    history = client.get_metric_history(w.resolve(child), "val_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert client.get_run(w.resolve(child)).info.status == "FINISHED"


def test_a_trials_end_is_written_in_as_few_requests_as_mlflow_takes(stores, monkeypatch):
    """Its pending epochs, its summary and its tags in one request where they fit in
    MLflow's 1000 entries; more pending epochs go first, in full requests."""
    monkeypatch.setattr("hypersweep.search.tracking.FLUSH_SECONDS", 3600.0)
    with MlflowTracker(stores.mlflow_uri) as tracker:
        parent = tracker.start_study("ends", "study: ends\n")
        requests = []
        log_batch = tracker.client.log_batch
        monkeypatch.setattr(tracker.client, "log_batch", lambda run_id, **kw: (
            requests.append({k: len(v) for k, v in kw.items()}), log_batch(run_id, **kw)))
        for epochs, expected in ((3, [{"metrics": 4, "tags": 2}]),      # state, epochs
                                 (2100, [{"metrics": 1000}, {"metrics": 103},
                                         {"metrics": 998, "tags": 2}])):
            child = tracker.start_trial(parent, epochs, {"lr": 0.1})
            requests.clear()
            for step in range(1, epochs + 1):
                tracker.log_metrics(child, step, {"val_loss": 1 / step})
            tracker.end_trial(child, TrialResult(TrialState.COMPLETE, {"val_loss": 0.5},
                                                 epochs=epochs), {})
            assert requests == expected
            run = tracker.client.get_run(child)
            history = tracker.client.get_metric_history(child, "val_loss")
            assert sorted(m.step for m in history) == list(range(1, epochs + 1))
            assert run.data.metrics["final_val_loss"] == 0.5
            assert run.data.tags["epochs"] == str(epochs) and run.info.status == "FINISHED"


def test_a_store_that_cannot_be_opened_fails_the_next_call(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    w = TrackingWriter(f"sqlite:///{blocker}/mlflow.db")
    with pytest.raises(TrackingError) as e:
        for _ in range(200):            # the open fails in the child, a moment later
            w.start_study("nowhere", "")
            time.sleep(0.05)
    message = str(e.value)
    assert message.startswith(f"tracking (sqlite:///{blocker}/mlflow.db): ") and "\n" not in message
    with pytest.raises(TrackingError):
        w.close()


def test_a_writer_never_opened_is_stopped_without_an_error():
    """A config error before the store is named: the process goes, quietly."""
    w = TrackingWriter()
    w.close()
    assert w._proc.returncode == -signal.SIGKILL and not _alive(w._proc.pid)


def killed_driver(stores: Stores, tmp_path, study: str, writes: str) -> list[tuple[int, float]]:
    """Run a driver that opens a TrackingWriter, starts `study` with one trial
    (`child`), makes `writes`, then SIGKILLs itself. Wait for the tracking process
    to end (it must: nothing is left behind) and return the trial's val_loss
    history as (step, value), by step."""
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, time
        from hypersweep.search.writer import HOLD_SECONDS, TrackingWriter
        w = TrackingWriter({stores.mlflow_uri!r})
        parent = w.start_study({study!r}, "study: {study}\\n")
        child = w.start_trial(parent, 0, {{"lr": 0.1}})
    """) + textwrap.dedent(writes) + textwrap.dedent("""
        print(w._proc.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=os.getcwd(), timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    _, children = study_runs(stores.mlflow_uri, study)
    history = MlflowClient(tracking_uri=stores.mlflow_uri).get_metric_history(
        children[0].info.run_id, "val_loss")
    return sorted((m.step, m.value) for m in history)


def test_a_killed_driver_leaves_its_writes_to_the_tracking_process(stores, tmp_path):
    """SIGKILL the driver right after it sent its writes: the tracking process writes
    them all, finds the pipe closed and exits (no process is left behind)."""
    history = killed_driver(stores, tmp_path, "killed", """
        for step in range(1, 501):
            w.log_metrics(child, step, {"val_loss": 1.0 / step})
        w.flush(child)
    """)
    assert [step for step, _ in history] == list(range(1, 501))


def test_metrics_wait_in_the_driver_at_most_the_hold_time(stores, tmp_path):
    """Metrics go down the pipe with the next other call, or with the first report
    after HOLD_SECONDS: a driver killed then has sent all but the reports of its
    last moment (here: step 3, made right after a write)."""
    history = killed_driver(stores, tmp_path, "held", """
        w.log_metrics(child, 1, {"val_loss": 1.0})
        time.sleep(HOLD_SECONDS + 0.1)
        w.log_metrics(child, 2, {"val_loss": 0.5})       # writes steps 1 and 2
        w.log_metrics(child, 3, {"val_loss": 0.25})      # held
    """)
    assert history == [(1, 1.0), (2, 0.5)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:        # a zombie (exited, not yet reaped by init) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_tracking_server_that_does_not_answer_is_a_one_line_error_at_once(tmp_path):
    """MLflow's client would retry a dead server for minutes."""
    from hypersweep.models.errors import UserError
    from hypersweep.search.net import unreachable
    from tests.servers import free_port

    port = free_port()
    assert unreachable("127.0.0.1", port) == "Connection refused"
    url = f"http://user:s3cret@127.0.0.1:{port}"
    start = time.monotonic()
    with TrackingWriter() as writer, pytest.raises(UserError) as e:
        writer.open(url, wait=True)
    assert str(e.value) == f"tracking.uri: cannot reach http://user:***@127.0.0.1:{port}: Connection refused"
    with pytest.raises(UserError, match="^tracking.uri: cannot reach"):
        MlflowTracker(url)
    assert time.monotonic() - start < 60


def test_a_store_that_fails_in_use_is_said_once_not_in_mlflow_s_logged_traceback(stores, capfd):
    """MLflow logged the database's error with its traceback (forty lines of it on
    the command's stderr) before raising it, which the command says in one line."""
    import sqlite3

    from mlflow.exceptions import MlflowException

    tracker = MlflowTracker(stores.mlflow_uri)
    parent = tracker.start_study("failing", "study: failing\n")
    with sqlite3.connect(stores.dir / "mlflow.db") as db:      # the store broken under it
        db.execute("DROP TABLE params")
    with pytest.raises(MlflowException, match="no such table: params"):
        tracker.start_trial(parent, 0, {"lr": 0.1})
    err = capfd.readouterr().err
    assert "SQLAlchemy database error" not in err and "Traceback" not in err


def test_a_tracking_process_killed_by_a_signal_is_said_by_the_signal_s_name(stores):
    """It read `exited with code -7`, a number to decode, for a SIGBUS (a store's
    file cut short under SQLite's memory map)."""
    writer = TrackingWriter()
    try:
        writer.open(stores.mlflow_uri, wait=True)
        os.kill(writer._proc.pid, signal.SIGBUS)
        writer._proc.wait()
        with pytest.raises(TrackingError, match=r"the tracking process (is gone \(it )?was "
                                                r"killed by SIGBUS"):
            writer.resolve(writer.start_study("bus", "study: bus\n"))
    finally:
        with contextlib.suppress(TrackingError):
            writer.close()


def test_a_tracking_process_killed_mid_study_is_not_said_as_a_store_to_bring_back(stores):
    """It read `the MLflow store sqlite:///... failed in use: the tracking process was
    killed by SIGKILL; ... once it is back, continue with`: the store never went."""
    from hypersweep.search.driver import StudyEvents

    class KillsTheWriter(StudyEvents):
        def epoch(self, number: int, step: int) -> None:
            if (number, step) == (1, 1):
                os.kill(writer._proc.pid, signal.SIGKILL)
                writer._proc.wait()

    cfg = parse_config(small_config("writer-killed", stores, trials=3))
    writer = TrackingWriter(cfg.tracking.uri)
    try:
        with pytest.raises(TrackingError) as failed:
            StudyDriver(cfg, SerialExecutor(), writer, events=KillsTheWriter()).run()
    finally:
        with contextlib.suppress(TrackingError):
            writer.close()
    message = str(failed.value)
    assert message.startswith(f"tracking.uri: the tracking process writing {stores.mlflow_uri} ")
    assert "killed by SIGKILL" in message and "once it is back" not in message
    assert message.endswith("; continue with: hypersweep resume writer-killed --storage "
                            f"{stores.optuna_url}"), message
    study = optuna.load_study(study_name="writer-killed", storage=stores.optuna_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]


def test_the_callers_work_runs_while_the_store_opens_and_stops_once_it_has(tmp_path):
    """`open(wait=True, meanwhile=...)`: the caller's own start-up work runs while
    the tracking process has not answered; a failing piece is skipped, and what is
    left once the answer has come is not done (it would only delay the study)."""
    stores = Stores(tmp_path)
    done: list[str] = []
    writer = TrackingWriter()

    def fails() -> None:
        raise RuntimeError("a head start only")

    def until_answered() -> None:
        done.append("ran")
        deadline = time.monotonic() + 120
        while not writer._answers and time.monotonic() < deadline:  # the open's answer
            time.sleep(0.01)

    with writer:
        writer.open(stores.mlflow_uri, wait=True,
                    meanwhile=[fails, until_answered, lambda: done.append("late")])
        assert done == ["ran"]
        assert writer.find_parent("nothing") is None       # the store is open and answers
