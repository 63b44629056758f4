"""The Ray executor on a real local Ray instance, against real SQLite stores."""
from __future__ import annotations

import functools
import re

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from hypersweep.search.config import parse_config
from hypersweep.search.driver import StudyDriver
from hypersweep.search.executors import SerialExecutor, auto_parallel, make_executor
from hypersweep.search.ray_executor import (RayExecutor, check_fits, cluster_line, device_for,
                                  drawn)
from hypersweep.search.tracking import MlflowTracker
from tests.conftest import ROOT, Stores, small_config, study_runs
from tests.search import trainers
from tests.search.events import Recorder


def ray_config(study: str, stores: Stores, resources: dict | None = None, **search) -> dict:
    cfg = small_config(study, stores, **search)
    cfg["resources"] = {"executor": "ray", "parallel": 2, **(resources or {})}
    return cfg


def run_study(cfg_dict: dict, executor_for, events=None):
    cfg = parse_config(cfg_dict)
    driver = StudyDriver(cfg, executor_for(cfg), MlflowTracker(cfg.tracking.uri), events=events)
    return driver.run()


def trials_and_runs(stores: Stores, study: str):
    trials = optuna.load_study(study_name=study, storage=stores.optuna_url).trials
    parent, children = study_runs(stores.mlflow_uri, study)
    return trials, parent, children


def assert_nothing_running(stores: Stores, study: str) -> None:
    trials, parent, children = trials_and_runs(stores, study)
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in trials)
    assert parent.info.status != "RUNNING"
    assert [c.info.status for c in children if c.info.status == "RUNNING"] == []
    assert all(c.data.tags["state"] != "RUNNING" for c in children)


# ---------------------------------------------------------------- pure logic

def test_ray_workers_draw_their_figures_before_returning():
    """Under Ray the workers draw side by side; only bytes travel to the driver."""
    from hypersweep.models.figures import Drawing, learning_curve
    from hypersweep.models.trial import TrialResult, TrialState

    history = ({"train_loss": 1.0, "val_loss": 1.1, "val_accuracy": 0.5},) * 3
    result = TrialResult(TrialState.COMPLETE, {"val_accuracy": 0.5}, history, 3, artifacts={
        "learning_curve.png": Drawing(learning_curve, (history,)), "model.pt": b"weights"})
    out = drawn(result)
    assert out.artifacts["learning_curve.png"][:4] == b"\x89PNG"
    assert out.artifacts["model.pt"] == b"weights" and out.history == history
    assert drawn(out) is out            # nothing left to draw


def test_device_for_follows_rays_gpu_assignment():
    assert device_for([], None, cuda_ok=True) == "cpu"
    assert device_for([0], "0", cuda_ok=False) == "cpu"            # no CUDA in this torch
    assert device_for([3], "3", cuda_ok=True) == "cuda:0"          # Ray masked the others
    assert device_for(["2"], "0,1,2,3", cuda_ok=True) == "cuda:2"
    assert device_for([5], None, cuda_ok=True) == "cuda:5"          # Ray did not mask


def test_auto_parallel_fills_each_node_by_its_gpus_and_cpus():
    assert auto_parallel([{"CPU": 16, "GPU": 2}], cpus_per_trial=1, gpus_per_trial=0.25) == 8
    assert auto_parallel([{"CPU": 16, "GPU": 2}], cpus_per_trial=1, gpus_per_trial=0) == 16
    assert auto_parallel([{"CPU": 2}], cpus_per_trial=0.5, gpus_per_trial=0) == 4
    assert auto_parallel([{"CPU": 1}], cpus_per_trial=2, gpus_per_trial=0) == 1
    # Per node: the trials' CPUs bound the GPU packing, and leftovers do not add up.
    assert auto_parallel([{"CPU": 2, "GPU": 1}], cpus_per_trial=1, gpus_per_trial=0.25) == 2
    assert auto_parallel([{"CPU": 3}, {"CPU": 3}], cpus_per_trial=2, gpus_per_trial=0) == 2
    assert auto_parallel([{"CPU": 8, "GPU": 1}, {"CPU": 8}], cpus_per_trial=1,
                         gpus_per_trial=0.5) == 2


def test_the_line_under_the_header_says_what_the_study_runs_on():
    assert cluster_line("the Ray cluster at h:6379", [{"CPU": 2}, {"CPU": 1}], 3) == (
        "on the Ray cluster at h:6379: 2 nodes, 3 CPUs, no GPU; 3 trials at once")
    assert cluster_line("this machine's Ray instance", [{"CPU": 16, "GPU": 1}], 4) == (
        "on this machine's Ray instance: 1 node, 16 CPUs, 1 GPU; 4 trials at once")
    assert cluster_line("x", [{"CPU": 0.5, "GPU": 2}], 1).endswith(
        "1 node, 0.5 CPUs, 2 GPUs; 1 trial at once")


@pytest.mark.ray
def test_the_header_names_the_cluster_auto_found(ray_local):
    """`--ray-address auto` read `on the Ray cluster at auto: ...`."""
    import ray

    from hypersweep.search.ray_executor import _joined
    gcs = ray.get_runtime_context().gcs_address
    assert gcs and _joined("auto") == f"{gcs} (auto)"
    assert _joined("10.0.0.5:6379") == "10.0.0.5:6379"


def test_a_trial_no_node_can_hold_is_a_user_error():
    """Ray would queue such a task forever; the message names the key and the limit."""
    from hypersweep.models.errors import UserError
    nodes = [{"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}]
    check_fits(nodes, cpus_per_trial=8, gpus_per_trial=0.25)        # the second node holds it
    check_fits(nodes, cpus_per_trial=2, gpus_per_trial=0)
    with pytest.raises(UserError, match=r"^resources.gpus_per_trial: 2 GPU per trial, but the "
                                        r"Ray cluster has at most 1 GPUs on one node"):
        check_fits(nodes, cpus_per_trial=1, gpus_per_trial=2)
    with pytest.raises(UserError, match=r"^resources.gpus_per_trial: 0.5 GPU per trial, but "
                                        r"this machine has no GPU; use gpus_per_trial: 0"):
        check_fits([{"CPU": 2.0}], cpus_per_trial=1, gpus_per_trial=0.5, where="this machine")
    with pytest.raises(UserError, match=r"^resources.cpus_per_trial: 16 CPUs per trial, .* "
                                        r"at most 8 CPUs on one node; valid: up to 8$"):
        check_fits(nodes, cpus_per_trial=16, gpus_per_trial=0)
    with pytest.raises(UserError, match=r"^resources: no node of the Ray cluster has both 4 CPUs"):
        check_fits([{"CPU": 4.0}, {"CPU": 1.0, "GPU": 1.0}], cpus_per_trial=4, gpus_per_trial=1)
    # A head node started with --num-cpus 0, alone: "valid: up to 0" offered nothing.
    with pytest.raises(UserError) as e:
        check_fits([{"CPU": 0.0}, {}], cpus_per_trial=1, gpus_per_trial=0)
    assert str(e.value) == (
        "resources.cpus_per_trial: 1 CPUs per trial, but no node of the Ray cluster has a CPU "
        "for Ray's tasks (a head node started with --num-cpus 0 and no worker node joined?); "
        "join a node with CPUs")


def test_resources_the_cluster_lacks_are_one_line_alone_on_the_console(ray_local, stores,
                                                                        write_config):
    """The study's header (and, in a pipe, an empty line) came before the error."""
    from typer.testing import CliRunner

    from hypersweep.cli.app import app
    cfg = ray_config("lacking", stores, {"cpus_per_trial": 64})
    res = CliRunner().invoke(app, ["run", str(write_config(cfg))], catch_exceptions=False)
    assert res.exit_code == 2
    assert res.output.splitlines() == [
        "error: resources.cpus_per_trial: 64 CPUs per trial, but the Ray cluster has at most "
        "2 CPUs on one node; valid: up to 2"]
    assert stores.untouched()


def test_resources_keys_are_validated(stores):
    from hypersweep.models.errors import UserError
    cfg = small_config("bad", stores)
    for key, value in [("max_retries", -1), ("trial_timeout", 0), ("parallel", "many"),
                       ("executor", "dask")]:
        with pytest.raises(UserError, match=f"resources.{key}"):
            parse_config({**cfg, "resources": {key: value}})
    # NaN passed as out of range ("must be <= 31536000.0, got nan"); inf as too many CPUs.
    for key, value in [("trial_timeout", float("nan")), ("gpus_per_trial", float("nan")),
                       ("cpus_per_trial", float("inf"))]:
        with pytest.raises(UserError) as e:
            parse_config({**cfg, "resources": {key: value}})
        assert str(e.value) == f"resources.{key}: must be a finite number, got {value}"


# ---------------------------------------------------------------- real Ray

@pytest.mark.ray
@pytest.mark.slow
def test_parallel_trials_match_serial(ray_local, tmp_path):
    """Random search, no pruning: trial by trial the same params and metrics as the
    serial executor, with each trial's node and device recorded. Nothing can be
    pruned, so workers post their reports without waiting for the driver, and
    still every epoch reaches both stores."""
    outcomes = {}
    for name in ("serial", "ray"):
        stores = Stores(tmp_path / name)
        stores.dir.mkdir()
        cfg = (small_config if name == "serial" else ray_config)("same", stores,
                                                                 strategy="random", trials=4)
        make = (lambda c: SerialExecutor()) if name == "serial" else make_executor
        executor = make(parse_config(cfg))
        if name == "ray":
            assert executor.capacity == 2 and executor._prunes is False
        run_study(cfg, lambda c: executor)
        trials, _, children = trials_and_runs(stores, "same")
        client = MlflowClient(tracking_uri=stores.mlflow_uri)
        outcomes[name] = [(t.params, t.state, t.intermediate_values,
                           [m.step for m in client.get_metric_history(c.info.run_id, "val_loss")])
                          for t, c in zip(trials, children)]
        values = [t.value for t in trials]
        outcomes[name + "-values"] = values
        if name == "ray":
            assert {c.data.tags["device"] for c in children} == {"cpu"}
            assert all(c.data.tags["node"] for c in children)
    assert outcomes["ray"] == outcomes["serial"]
    assert outcomes["ray-values"] == pytest.approx(outcomes["serial-values"], abs=1e-6)


@pytest.mark.ray
def test_reports_posted_in_batches_arrive_live_and_complete(ray_local, stores):
    """Without a pruner, workers post epochs in batches while they train and the
    result carries the rest: every epoch reaches both stores exactly once, and
    the first ones are logged well before the trial ends."""
    cfg = ray_config("posted", stores, strategy="random", trials=2)
    cfg["params"]["epochs"] = 8
    outcome = run_study(cfg, lambda c: RayExecutor(c.resources, train=trainers.slow_epochs,
                                                   prunes=False))
    assert outcome.counts["COMPLETE"] == 2
    trials, _, children = trials_and_runs(stores, "posted")
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    for t, c in zip(trials, children):
        history = client.get_metric_history(c.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(1, 9))
        assert [m.value for m in history] == pytest.approx([e / 10 for e in range(1, 9)])
        assert sorted(t.intermediate_values) == list(range(1, 9))
        assert history[-1].timestamp - history[0].timestamp >= 1000     # ms: logged live


@pytest.mark.ray
@pytest.mark.slow
def test_median_pruning_under_ray_as_in_serial(ray_local, tmp_path):
    """The prune decision travels back to the worker: the same trials are pruned."""
    states = {}
    for name in ("serial", "ray"):
        stores = Stores(tmp_path / name)
        stores.dir.mkdir()
        cfg = ray_config("pruned", stores, strategy="random", trials=10, pruner="median")
        cfg["params"]["epochs"] = 6
        make = ((lambda c: SerialExecutor(train=trainers.by_number)) if name == "serial"
                else (lambda c: RayExecutor(c.resources, train=trainers.by_number)))
        outcome = run_study(cfg, make)
        trials, _, children = trials_and_runs(stores, "pruned")
        states[name] = ([t.state.name for t in trials], [c.data.tags["state"] for c in children],
                        [len(t.intermediate_values) for t in trials])
        assert outcome.counts == {"COMPLETE": 6, "PRUNED": 4, "FAIL": 0}
        assert_nothing_running(stores, "pruned")
    assert states["ray"] == states["serial"]
    assert states["ray"][1] == ["COMPLETE"] * 6 + ["PRUNED"] * 4


@pytest.mark.ray
def test_eight_trials_at_once_on_sqlite(ray_local, stores):
    """8 trials in parallel (1/4 CPU each): one writer, no 'database is locked'."""
    cfg = ray_config("eight", stores, {"parallel": 8, "cpus_per_trial": 0.25},
                     strategy="random", trials=16)
    cfg["params"]["epochs"] = 4
    recorder = Recorder()
    outcome = run_study(cfg, lambda c: RayExecutor(c.resources, train=trainers.by_number),
                        events=recorder)
    starts = recorder.started
    assert outcome.counts["COMPLETE"] + outcome.counts["PRUNED"] == 16
    # The progress display's running count: eight at once, never more.
    assert [n for n, _ in starts] == list(range(16))
    assert [r for _, r in starts[:8]] == list(range(1, 9))
    assert max(r for _, r in starts) == 8
    trials, _, children = trials_and_runs(stores, "eight")
    assert len(children) == 16
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    for c in children:
        steps = [m.step for m in client.get_metric_history(c.info.run_id, "val_accuracy")]
        assert steps == [1, 2, 3, 4]


@pytest.mark.ray
@pytest.mark.slow
def test_faults_fail_only_their_trial(ray_local, stores, tmp_path):
    """Raise, NaN, a worker killed once (retried, completes), a worker killed every
    time (retried, then FAIL), a trial past its timeout: both stores consistent."""
    cfg = ray_config("faults", stores, {"max_retries": 1, "trial_timeout": 10},
                     strategy="random", trials=7)
    train = functools.partial(trainers.faulty, marker_dir=str(tmp_path))
    recorder = Recorder()
    outcome = run_study(cfg, lambda c: RayExecutor(c.resources, train=train), events=recorder)
    notices = recorder.notices
    trials, parent, children = trials_and_runs(stores, "faults")
    states = [c.data.tags["state"] for c in children]
    assert states == ["COMPLETE", "FAIL", "FAIL", "COMPLETE", "FAIL", "FAIL", "COMPLETE"]
    assert [t.state.name for t in trials] == states
    assert outcome.counts == {"COMPLETE": 3, "PRUNED": 0, "FAIL": 4}
    reasons = {t.number: t.user_attrs.get("reason", "") for t in trials}
    assert "RuntimeError: simulated fault" in reasons[1]
    assert "nan" in reasons[2] or "inf" in reasons[2]
    assert "worker died" in reasons[4] and "2 attempts" in reasons[4]
    assert "timed out after 10 s" in reasons[5]
    # The epochs a timed-out or crashed trial reported are its epochs, not 0.
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    for n in (4, 5):
        logged = len(client.get_metric_history(children[n].info.run_id, "val_loss"))
        assert int(children[n].data.tags["epochs"]) == trials[n].user_attrs["epochs"] == logged
    assert trials[5].user_attrs["epochs"] > 10      # 0.2 s each for 10 s
    # Each retry is said once, by trial, in place of Ray's lines about the worker.
    assert sorted(notices) == [
        f"trial {n}: its worker died; retrying it (attempt 2 of 2, resources.max_retries)"
        for n in (3, 4)]
    assert children[4].data.tags["failure_reason"] == reasons[4]
    # A retried trial's tags name where its last attempt ran, and where the worker
    # that died ran too (one node here).
    for n in (3, 4):
        tags = children[n].data.tags
        assert tags["attempts"] == "2", tags
        # One node here: the retry ran where the worker died (named as `node` names it)
        assert (tags["earlier_nodes"], tags["earlier_node_ips"]) == \
            (tags["node"], tags["node_ip"]), tags
    assert "earlier_nodes" not in children[0].data.tags
    # A failed trial told Optuna no result: no final_* (the NaN trial's last epoch had one).
    finals = {n: [k for k in c.data.metrics if k.startswith("final_")]
              for n, c in enumerate(children)}
    assert [n for n in finals if finals[n]] == [0, 3, 6]
    # The retried trial's epoch 1 was reported by both attempts but logged once.
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    steps = [m.step for m in client.get_metric_history(children[3].info.run_id, "val_loss")]
    assert steps == [1, 2, 3]
    assert trials[3].intermediate_values.keys() == {1, 2, 3}
    assert_nothing_running(stores, "faults")


class _KillsTheBroker(Recorder):
    """Calls `kill` once, as the driver takes trial 0's epoch 2 (which it then
    answers through the broker killed)."""

    def __init__(self, kill) -> None:
        super().__init__()
        self.kill, self.killed = kill, False

    def epoch(self, number: int, step: int) -> None:
        super().epoch(number, step)
        if (number, step) == (0, 2) and not self.killed:
            self.killed = True
            self.kill()


@pytest.mark.ray
@pytest.mark.parametrize("prunes", [True, False], ids=["waits", "posts"])
@pytest.mark.parametrize("how", ["SIGKILL", "ray.kill"])
def test_a_dead_broker_does_not_end_the_study(ray_local, stores, how, prunes):
    """The broker's process killed mid-study (Ray restarts it), or the actor gone
    for good (the executor starts a new one): it ended the driver, with a trace,
    its trials left RUNNING in both stores. Now the trials complete, every epoch
    reaches both stores once, and one line says what happened."""
    import os
    import signal

    import ray

    # Two trials run as it is killed, two more after it (and its restart)
    cfg = ray_config("broker", stores, strategy="random", trials=4,
                     **({"pruner": "median"} if prunes else {}))
    cfg["params"]["epochs"] = 8
    executor = RayExecutor(parse_config(cfg).resources, train=trainers.slow_epochs,
                           prunes=prunes)

    def kill() -> None:
        if how == "ray.kill":
            ray.kill(executor._broker, no_restart=True)
        else:       # as QA did: its process, found from inside the actor
            pid = ray.get(executor._broker.__ray_call__.remote(lambda broker: os.getpid()))
            os.kill(pid, signal.SIGKILL)

    recorder = _KillsTheBroker(kill)
    outcome = run_study(cfg, lambda c: executor, events=recorder)
    assert recorder.killed
    assert outcome.counts == {"COMPLETE": 4, "PRUNED": 0, "FAIL": 0}
    trials, _, children = trials_and_runs(stores, "broker")
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    for t, c in zip(trials, children):
        history = client.get_metric_history(c.info.run_id, "val_accuracy")
        # Each epoch once; epochs posted to the dead broker come with the trial's
        # result, after those the new one relayed (MLflow lists them as logged)
        assert sorted(m.step for m in history) == list(range(1, 9))
        assert sorted(t.intermediate_values) == list(range(1, 9))
    assert sorted(recorder.epochs) == [(n, e) for n in range(4) for e in range(1, 9)]
    said = [line for line in recorder.notices if "ReportBroker" in line]
    assert said == ([
        "the Ray actor that relays the trials' epochs to this process (ReportBroker) died; "
        "Ray restarted it, and the trials go on"] if how == "SIGKILL" else [
        "the Ray actor that relays the trials' epochs to this process (ReportBroker) is "
        "gone; started a new one: the trials running now send their epochs as they end"
        + (", and cannot be pruned" if prunes else "")])
    assert_nothing_running(stores, "broker")


def test_rays_lines_about_a_trials_dead_worker_leave_the_console():
    """Ray printed a paragraph of ids per dead worker, then "Task run_trial failed.
    There are 1 retries remaining..." (the executor now says it by trial); Ray's
    other lines, and the workers' own output, still reach the console."""
    from ray._private import worker

    from hypersweep.search.ray_executor import quiet_trial_crashes

    printed: list[dict] = []
    real = worker.print_to_stdstream        # what Ray's error listener prints with
    worker.print_to_stdstream = lambda data, ignore_prefix: printed.append(data)
    try:
        quiet_trial_crashes()
        quiet_trial_crashes()           # once, however often it is called
        died = ("A worker died or was killed while executing a task by an unexpected "
                "system error. To troubleshoot the problem, check the logs for the dead "
                "worker. Worker PID: 16418 Worker exit type: SYSTEM_ERROR")
        retry = ("Task run_trial failed. There are 1 retries remaining, so the task will "
                 "be retried. Error: ")
        low = "Task was killed due to the node running low on memory."
        # A lost node: its raylet's last log lines and state dump, then its death
        gone = ("Raylet is terminated. Termination is unexpected. Possible reasons include: "
                "(1) SIGKILL by the user or system OOM killer, (2) ... Last 20 lines of the "
                "Raylet logs:\n    [state-dump] NodeManager:\n    [state-dump] Node ID: f\n")
        dead = ("The node with node id: fcd0 and address: 192.0.2.2 and node name: 192.0.2.2 "
                "has been marked dead because the detector has missed too many heartbeats "
                "from it. This can happen when a \t(1) raylet crashes unexpectedly (OOM, etc.) "
                "\n\t(2) raylet has lagging heartbeats due to slow network or busy workload.")
        for data in ({"pid": "raylet", "lines": [died]}, {"pid": "raylet", "lines": [retry]},
                     {"pid": "raylet", "lines": [died, low]},
                     {"pid": 1234, "lines": [died]},     # a trial's own output, as it is
                     {"pid": "raylet", "ip": "192.0.2.2", "lines": [gone]},
                     {"pid": "raylet", "lines": [dead]},
                     {"pid": "raylet", "ip": "192.0.2.2", "lines": [gone]}):    # said once
            worker.print_to_stdstream(data, ignore_prefix=False)
    finally:
        worker.print_to_stdstream = real
    assert printed == [
        {"pid": "raylet", "lines": [low]}, {"pid": 1234, "lines": [died]},
        {"pid": "raylet", "ip": "192.0.2.2", "lines": [
            "the raylet of a Ray node (192.0.2.2) stopped unexpectedly (killed, out of "
            "memory, or a crash): its trials are retried up to resources.max_retries, on the "
            "nodes left"]},
        {"pid": "raylet", "lines": [
            "The node with node id: fcd0 and address: 192.0.2.2 and node name: 192.0.2.2 has "
            "been marked dead because the detector has missed too many heartbeats from it."]}]


def test_rays_lines_about_the_brokers_calls_leave_the_console():
    """Ray said a line per call to a restarting broker (the executor says one)."""
    from hypersweep.search.ray_executor import _without_trial_crashes

    printed: list[dict] = []
    quiet = _without_trial_crashes(lambda data, *args, **kwargs: printed.append(data))
    retried = ("Task ReportBroker.take failed. There are infinite retries remaining, so the "
               "task will be retried. Error: The actor is temporarily unavailable: RpcError")
    quiet({"pid": "raylet", "lines": [retried]}, ignore_prefix=False)
    quiet({"pid": 1234, "lines": [retried]}, ignore_prefix=False)     # a trial's own output
    assert printed == [{"pid": 1234, "lines": [retried]}]


def test_a_worker_that_lost_its_node_says_no_more_on_the_console(monkeypatch):
    """A worker blocked on the prune decision as its node's raylet was killed wrote
    a fatal line of Ray's ("You have likely discovered a bug in Ray") and a stack
    trace of 70 lines; the executor says what becomes of the trial instead."""
    from hypersweep.search import ray_executor
    from hypersweep.search.ray_executor import _without_trial_crashes

    printed: list[dict] = []
    quiet = _without_trial_crashes(lambda data, *args, **kwargs: printed.append(data))
    fatal = ("[2026-12-03 17:27:37,973 C 20976 20976] memory_store.cc:352:  An unexpected "
             "system state has occurred. You have likely discovered a bug in Ray. Please report "
             "this issue at https://github.com/ray-project/ray/issues and we'll work with you "
             "to fix it. Check failed: raylet_ipc_client_->NotifyWorkerBlocked() Status not OK: "
             "IOError: Broken pipe")
    worker = {"ip": "192.0.2.2", "pid": 20976}
    quiet({**worker, "lines": ["epoch 4 done", fatal, "*** StackTrace Information ***"]})
    quiet({**worker, "lines": ["/ray/_raylet.so(+0x1812b9a) [0x7f6144a12b9a] ray::operator<<()"]})
    quiet({"ip": "192.0.2.2", "pid": 20977, "lines": [fatal]})
    other = {"ip": "192.0.2.3", "pid": 20976, "lines": ["a trial's own line"]}
    quiet(other)
    # Another fatal line of Ray's (not about the raylet) is a fault to show.
    assertion = "[2026-12-03 17:27:37,973 C 31 31] task_manager.cc:12: Check failed: x > 0"
    quiet({"ip": "192.0.2.3", "pid": 31, "lines": [assertion]})
    assert printed == [{**worker, "lines": ["epoch 4 done"]}, other,
                       {"ip": "192.0.2.3", "pid": 31, "lines": [assertion]}]
    # Past a minute the pid may be a new worker's: what it says is shown.
    monkeypatch.setattr(ray_executor, "ORPHAN_SECONDS", 0.0)
    quiet({**worker, "lines": ["a new worker's line"]})
    assert printed[-1] == {**worker, "lines": ["a new worker's line"]}


@pytest.mark.ray
def test_the_workers_lines_pass_through_the_quiet_printer(ray_local):
    """`ray.init` bound the workers' log handler to Ray's own printer, so a worker's
    stack trace reached the console whatever the quiet one held back."""
    from ray._private import worker

    from hypersweep.search.ray_executor import quiet_trial_crashes
    quiet_trial_crashes()
    bound = [h for name, h in worker.global_worker_stdstream_dispatcher.handlers
             if name == "ray_print_logs"]
    assert bound and all(getattr(h.func, "quiet", False) for h in bound)
    assert worker.print_to_stdstream.quiet


def test_splits_are_loaded_and_placed_once_per_process():
    """A worker's next trial finds the dataset loaded, and off the CPU already on
    the device; other data options load anew."""
    import torch

    from hypersweep.models.train import _splits_on

    data = {"name": "digits", "val_fraction": 0.2, "test_fraction": 0.2}
    meta = torch.device("meta")          # a device that is not the CPU, on any machine
    first, again = _splits_on(data, meta), _splits_on(dict(data), meta)
    assert first is again and first.x_train.device.type == "meta"
    other = _splits_on({**data, "val_fraction": 0.3}, meta)
    assert other is not first and len(other.y_val) > len(first.y_val)
    cpu = torch.device("cpu")
    on_cpu = _splits_on(data, cpu)
    assert _splits_on({"test_fraction": 0.2, "val_fraction": 0.2, "name": "digits"}, cpu) is on_cpu
    assert on_cpu.x_train.device.type == "cpu" and len(on_cpu.y_val) == len(first.y_val)


@pytest.mark.ray
def test_fractional_gpus_pack_trials_on_one_gpu(ray_local, stores, tmp_path):
    """gpus_per_trial 0.25: four trials are placed on one GPU at the same time (each
    waits for the others to start), each told its CUDA device, in bf16. Without a
    CUDA device the session's Ray has one logical GPU: Ray packs the trials the
    same way and they train on the CPU."""
    import torch
    gpus = ray_local.cluster_resources().get("GPU", 0)
    assert gpus >= 1
    cfg = ray_config("gpu", stores, {"parallel": "auto", "gpus_per_trial": 0.25,
                                     "cpus_per_trial": 0.5}, strategy="random", trials=4)
    cfg["params"]["precision"] = "bf16"
    cfg_obj = parse_config(cfg)
    (tmp_path / "started").mkdir()
    train = functools.partial(trainers.together, marker_dir=str(tmp_path / "started"), expected=4)
    executor = RayExecutor(cfg_obj.resources, train=train)
    assert executor.capacity == int(gpus / 0.25)
    recorder = Recorder()
    outcome = StudyDriver(cfg_obj, executor, MlflowTracker(cfg_obj.tracking.uri),
                          events=recorder).run()
    assert outcome.counts["COMPLETE"] == 4
    _, _, children = trials_and_runs(stores, "gpu")
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert {c.data.tags["device"] for c in children} == {device}
    # A GPU Ray gave that torch cannot use is said, once for the node (it trained
    # on the CPU without a word).
    said = [line for line in recorder.notices if "sees no CUDA device" in line]
    assert len(said) == (0 if torch.cuda.is_available() else 1)
    if said:
        assert re.fullmatch(r"trial \d: Ray gave it 0.25 GPU on node \S+, but torch there sees "
                            r"no CUDA device \(.*\): it trains on the CPU", said[0]), said
    assert [c.data.metrics["started_together"] for c in children] == [4.0] * 4
    assert_nothing_running(stores, "gpu")


@pytest.mark.ray
def test_workers_train_on_the_dataset_the_driver_loaded(ray_local, stores):
    """The driver puts the dataset in Ray's object store once; workers, fresh or
    reused, find it in place (a split no earlier test used: no worker has it)."""
    cfg = ray_config("data", stores, strategy="random", trials=4)
    cfg["data"] = {"name": "digits", "val_fraction": 0.23}
    run_study(cfg, lambda c: RayExecutor(c.resources, train=trainers.found_its_data))
    trials, _, _ = trials_and_runs(stores, "data")
    assert [t.value for t in trials] == [1.0] * 4


def test_a_builder_of_the_studys_own_trains_on_the_workers(ray_local, stores, tmp_path,
                                                          monkeypatch):
    """`model: nets.py:tiny`, relative to where hypersweep runs: the study stores its
    absolute path, and each Ray worker loads the file itself."""
    import os

    from hypersweep.search.config import load_config
    from tests.models.test_registry import write_nets

    marks = tmp_path / "marks"
    marks.mkdir()
    write_nets(tmp_path, marks)
    monkeypatch.chdir(tmp_path)
    cfg = ray_config("own", stores, strategy="random", trials=3)
    cfg["model"] = "nets.py:tiny"
    cfg["params"] = {"epochs": 3, "batch_size": 128, "lr": 0.01}
    cfg["space"] = {"width": {"intlog": [4, 32]}, "act": {"choice": ["relu", "tanh"]}}
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(cfg))
    loaded = load_config(tmp_path / "own.yaml")
    assert loaded.model == f"{tmp_path / 'nets.py'}:tiny"
    run_study(loaded.model_dump(), lambda c: RayExecutor(c.resources))
    trials, _, children = trials_and_runs(stores, "own")
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert all(t.value > 0.2 for t in trials)          # learnt something: 10 classes
    assert {c.data.params["act"] for c in children} <= {"relu", "tanh"}
    workers = {int(p.name) for p in marks.iterdir()} - {os.getpid()}
    assert workers, "no Ray worker built the net"


def test_a_dataset_has_one_key_with_nested_or_inline_options():
    from hypersweep.models.train import data_key, loaded_splits

    nested = {"name": "adding", "val_fraction": 0.2, "options": {"length": 7, "n": 300}}
    inline = {"n": 300, "name": "adding", "length": 7, "val_fraction": 0.2}
    assert data_key(nested) == data_key(inline) != data_key({**inline, "length": 8})
    assert loaded_splits(nested) is loaded_splits(inline)         # validation's load is reused


def test_a_worker_holding_the_dataset_does_not_fetch_it_again():
    from hypersweep.models.train import loaded_splits, preload

    data = {"name": "adding", "n": 200, "length": 5}
    held = loaded_splits(data)
    preload(data, lambda: pytest.fail("fetched a dataset this process holds"))
    assert loaded_splits(data) is held
    other = {**data, "length": 6}
    preload(other, lambda: held)          # not held: fetched, and replaces the last one
    assert loaded_splits(other) is held


WARM_UP = """
import gc, sys
from hypersweep.search.ray_executor import warm_up
assert gc.isenabled() and gc.get_freeze_count() == 0
assert warm_up() is True
from hypersweep.models import figures
print(all(m in sys.modules for m in ("torch._dynamo", "hypersweep.models.train", "matplotlib.backends.backend_agg")),
      gc.isenabled(), gc.get_freeze_count() > 100_000, ("curve",) in figures._templates.kept)
"""


def test_a_warm_up_imports_what_trials_need_with_the_collector_held():
    """In a fresh process: afterwards the trial's imports are done, collection is on
    again and what the imports made is exempt from it (search/heap.py)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", WARM_UP], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True"] * 4


@pytest.mark.ray
def test_workers_warm_up_in_every_trial_slot_as_the_executor_starts(ray_local, stores):
    cfg = parse_config(ray_config("warm", stores))
    executor = RayExecutor(cfg.resources)
    try:
        import ray
        assert len(executor._warming) == executor.capacity == 2
        assert ray.get(executor._warming, timeout=120) == [True, True]
    finally:
        executor.shutdown()


@pytest.mark.ray
def test_shutdown_lets_go_of_every_ray_handle(ray_local, stores):
    """Objects, tasks, the broker: an executor that kept one after shutdown would
    free it later, maybe while its Ray instance stops in the background, and a
    call into a stopped Ray worker ends the whole process (it did, now and then,
    between two studies in one process)."""
    import ray
    from ray.actor import ActorHandle

    def handles(value) -> list:
        if isinstance(value, (ray.ObjectRef, ActorHandle)):
            return [value]
        if isinstance(value, dict):
            return [h for item in value.items() for h in handles(item)]
        if isinstance(value, (list, tuple, set)):
            return [h for item in value for h in handles(item)]
        return []

    cfg = parse_config(ray_config("handles", stores))
    executor = RayExecutor(cfg.resources)           # with warm-ups, the dataset, a trial
    spec = _spec(cfg)
    executor.submit(spec)
    done = []
    while not done:
        done = executor.wait(lambda number, step, metrics: False)
    assert [(number, r.state.value) for number, r in done] == [(spec.trial_number, "COMPLETE")]
    assert handles(vars(executor))                  # it held some while running
    executor.shutdown()
    assert handles(vars(executor)) == []
    executor.shutdown()                             # a second call finds nothing to do


def _spec(cfg):
    from hypersweep.models.trial import TrialSpec
    from hypersweep.search.driver import data_dict
    return TrialSpec(model=cfg.model, data=data_dict(cfg), params={**cfg.params, "epochs": 1},
                     seed=0, trial_number=0, study=cfg.study)


def test_ray_only_keys_are_refused_with_the_serial_executor(stores):
    from hypersweep.models.errors import UserError
    from hypersweep.search.config import check_semantics

    cfg = small_config("serial", stores)
    for key, value in [("trial_timeout", 60), ("address", "127.0.0.1:6379")]:
        with pytest.raises(UserError) as e:
            check_semantics(parse_config({**cfg, "resources": {"executor": "serial", key: value}}))
        # How to run such a study serially (`run --executor serial`, as `resume` does).
        assert str(e.value) == (f"resources.{key}: needs executor: ray; the serial executor "
                                "runs trials inside this process (for a serial run of a study "
                                f"that sets it: --set resources.{key}=null)")
    check_semantics(parse_config({**cfg, "resources": {"executor": "ray", "trial_timeout": 60}}))



STOP_THEN_START = """
import ray
import hypersweep.search.ray_executor as rx
from hypersweep.search.config import ResourcesConfig
from hypersweep.search.ray_executor import RayExecutor, wait_stopped
first = RayExecutor(ResourcesConfig(executor="ray", parallel=1))
first.shutdown()
print("returned", rx._stopping.is_alive())    # still stopping: shutdown did not wait
second = RayExecutor(ResourcesConfig(executor="ray", parallel=1))  # waits for the first
assert ray.is_initialized() and second.capacity == 1
second.shutdown()
wait_stopped()
print("stopped", ray.is_initialized())
"""


@pytest.mark.ray
def test_a_study_returns_while_its_own_ray_instance_stops():
    """An executor stops the Ray instance it started in the background (a study's
    end does not wait for it); the next one in the process waits before starting."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", STOP_THEN_START], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    returned, stopped = [line.split() for line in out.stdout.splitlines()[-2:]]
    assert returned == ["returned", "True"]
    assert stopped == ["stopped", "False"]


@pytest.mark.ray
def test_more_trials_at_once_than_the_cluster_runs_gets_a_note(ray_local, stores):
    """The session's Ray has 2 CPUs: parallel 3 at 1 CPU a trial leaves one waiting."""
    notes = {}
    for parallel in (2, 3, "auto"):
        cfg = parse_config(ray_config("notes", stores, {"parallel": parallel}))
        executor = RayExecutor(cfg.resources, train=trainers.by_number)
        notes[parallel] = (executor.capacity, executor.notes)
        if parallel == 3:
            runs_on = executor.runs_on
        executor.shutdown()
    assert notes[2] == (2, []) and notes["auto"] == (2, [])
    assert notes[3][0] == 3
    assert notes[3][1] == ["resources.parallel: 3 trials at once, but the Ray cluster runs 2 "
                           "at a time; the others wait in Ray's queue, and count as running "
                           "meanwhile (parallel: auto fills the cluster)"]
    # The line under the header says what runs at once (it said 3, above that note)
    assert runs_on.endswith("; 2 trials at once"), runs_on
    # A study of one trial runs one at once, and warms one worker up, not the cluster's
    # two (at 0.2 CPUs a trial, a 3-trial study warmed 10 up on these 2 CPUs)
    cfg = parse_config(ray_config("notes", stores, {"parallel": "auto"}))
    executor = RayExecutor(cfg.resources, most=1)
    try:
        assert executor.runs_on.endswith("; 1 trial at once"), executor.runs_on
        assert len(executor._warming) == 1
    finally:
        executor.shutdown()
    # Nor a resumed study more than the rest of its budget (3 of 4 run: one)
    from hypersweep.search.executors import make_executor
    cfg = parse_config(ray_config("notes", stores, {"parallel": "auto"}, trials=4))
    executor = make_executor(cfg, done=3)
    try:
        assert executor.runs_on.endswith("; 1 trial at once"), executor.runs_on
    finally:
        executor.shutdown()


def test_validate_notes_more_trials_at_once_than_this_machine_runs(stores, write_config):
    """`validate` printed none of the note `run` gives; with no Ray address the local
    instance's size is this machine's."""
    import os

    from typer.testing import CliRunner

    from hypersweep.cli.app import app
    cpus = os.cpu_count() or 1
    path = write_config(ray_config("notes", stores, {"parallel": cpus + 1}))
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 0, res.output
    assert (f"note: resources.parallel: {cpus + 1} trials at once, but this machine's Ray "
            f"instance runs {cpus} at a time;") in res.output
    res = CliRunner().invoke(app, ["validate", str(path), "--parallel", str(cpus)])
    assert res.exit_code == 0 and "note: resources.parallel" not in res.output, res.output


def test_a_raylets_port_is_not_taken_for_the_cluster_s(ray_local, stores, write_config):
    """A gRPC server with no GCS behind it (a raylet's port given as the cluster's):
    `ray.init` asked it again and again for 27 s, 21 lines of Ray's on the console."""
    import subprocess
    import sys

    node = ray_local.nodes()[0]
    address = f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}"
    path = write_config(ray_config("raylet", stores))
    res = subprocess.run([sys.executable, "-m", "hypersweep.cli.app", "run", str(path), "--ray-address",
                          address], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-3000:]
    assert res.stderr.strip().splitlines() == [
        f"error: --ray-address: {address} answers gRPC, but not as a Ray cluster's GCS (a "
        "raylet's or another service's port?); give the head node's GCS address (`ray start "
        "--head` prints it; port 6379 unless --port)"]
    assert stores.untouched()


def test_a_cluster_that_requires_a_token_is_one_line_at_once(stores, tmp_path, write_config):
    """A cluster started with token auth, joined without RAY_AUTH_MODE=token: Ray's
    connect retried for 20 s, printing a line of `Failed to get cluster ID from GCS
    server: Unauthenticated` each second, before the one-line error."""
    import os
    import secrets
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from hypersweep.search.net import unreachable
    from tests.servers import free_port

    home = tmp_path / "home"            # the cluster's token: never the machine's ~/.ray
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="hs-ray-", dir="/tmp"))    # short socket paths
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--port", str(port),
         "--temp-dir", str(temp), "--num-cpus", "1", "--include-dashboard", "false",
         "--disable-usage-stats", "--block"],
        env={**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(600):            # until its GCS listens (or it gave up)
            if not unreachable("127.0.0.1", port) or head.poll() is not None:
                break
            subprocess.run(["sleep", "0.5"])
        assert head.poll() is None, "ray start --head exited"
        path = write_config(ray_config("token", stores))
        env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
        res = subprocess.run([sys.executable, "-m", "hypersweep.cli.app", "run", str(path),
                              "--ray-address", f"127.0.0.1:{port}"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    finally:
        os.killpg(head.pid, signal.SIGKILL)         # the head and the daemons it started
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)
    assert res.returncode == 2, res.stderr[-3000:]
    assert res.stderr.strip().splitlines() == [
        f"error: --ray-address: cannot connect to Ray at '127.0.0.1:{port}': it requires "
        "a token: set RAY_AUTH_MODE=token for hypersweep too (a cluster started where "
        "~/.ray/auth_token exists requires one)"]
    assert stores.untouched()


@pytest.mark.ray
@pytest.mark.parametrize("executor", ["serial", "ray"])
def test_learning_curves_plot_the_studys_objective(ray_local, stores, tmp_path, executor):
    """Beside the losses, each trial's learning curve plots the study's objective
    (val_f1), not the task's first metric (val_accuracy): drawn by the tracking
    process (serial) or by the worker (Ray), the same PNG as drawn here."""
    import io

    from PIL import Image

    from hypersweep.models.figures import learning_curve
    cfg = small_config("f1", stores, strategy="random", trials=2)
    cfg["search"]["objective"] = {"metric": "val_f1", "direction": "maximize"}
    cfg["resources"] = {"executor": executor, **({"parallel": 2} if executor == "ray" else {})}
    run_study(cfg, make_executor)
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    for run in study_runs(stores.mlflow_uri, "f1")[1]:
        history = [{k: client.get_metric_history(run.info.run_id, k)[i].value
                    for k in ("train_loss", "val_loss", "val_accuracy", "val_f1")}
                   for i in range(3)]
        png = (tmp_path / client.download_artifacts(run.info.run_id, "learning_curve.png",
                                                     str(tmp_path))).read_bytes()
        pixels = lambda b: Image.open(io.BytesIO(b)).convert("RGB").tobytes()  # noqa: E731
        assert pixels(png) == pixels(learning_curve(history, metric="val_f1"))
        assert pixels(png) != pixels(learning_curve(history, metric="val_accuracy"))
