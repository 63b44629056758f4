"""The Ray executor driven by a real `hypersweep run` process: a two-node cluster
joined with --ray-address, and Ctrl-C (SIGINT) on the driver."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from tests.conftest import Stores, small_config, study_runs

pytestmark = [pytest.mark.ray, pytest.mark.slow]
HYPERSWEEP = str(Path(sys.executable).with_name("hypersweep"))


def write_study(tmp_path: Path, stores: Stores, study: str, epochs: int, trials: int,
                **resources) -> Path:
    cfg = small_config(study, stores, strategy="random", trials=trials)
    cfg["params"]["epochs"] = epochs
    cfg["resources"] = {"executor": "ray", **resources}
    path = tmp_path / f"{study}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def stop_group(proc: subprocess.Popen) -> None:
    """Leave nothing behind: the process group we started, by its id."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def two_node_cluster():
    helper = Path(__file__).with_name("ray_cluster.py")
    proc = subprocess.Popen([sys.executable, str(helper)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        address = proc.stdout.readline().strip()
        assert address, "the cluster helper did not start"
        worker = proc.stdout.readline().strip()         # the worker node's id
        yield proc, address, worker
    finally:
        proc.stdin.close()          # the helper shuts its nodes down
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        stop_group(proc)


def test_trials_spread_over_two_nodes(two_node_cluster, stores, tmp_path):
    """One CPU per node and per trial: two trials at once must use both nodes. The
    stores are written by the driver process only. Trials of about a second: each
    node's slot opens when its worker has warmed up, and a node that warmed up
    sooner would run a handful of tiny trials alone."""
    _, address, _ = two_node_cluster
    path = write_study(tmp_path, stores, "cluster", epochs=300, trials=6,
                       parallel=2, cpus_per_trial=1)
    res = subprocess.run([HYPERSWEEP, "run", str(path), "--ray-address", address],
                         capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (f"on the Ray cluster at {address}: 2 nodes, 2 CPUs, no GPU; 2 trials at once"
            in res.stdout.splitlines()), res.stdout[:2000]
    _, children = study_runs(stores.mlflow_uri, "cluster")
    assert [c.data.tags["state"] for c in children] == ["COMPLETE"] * 6
    assert len({c.data.tags["node"] for c in children}) == 2
    assert all(c.data.tags["node_ip"] and c.data.tags["host"] for c in children)
    assert not any("attempts" in c.data.tags for c in children)     # none retried
    trials = optuna.load_study(study_name="cluster", storage=stores.optuna_url).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6


def test_a_lost_worker_node_has_its_trial_retried_and_the_study_goes_on(two_node_cluster, stores,
                                                                       tmp_path):
    """The worker node is removed (its raylet and workers killed) while it trains a
    trial: that trial runs again on the head, and the study finishes. Before, the
    relay between workers and driver could be placed on the worker node (about
    half the time): its loss ended the study, with its runs left RUNNING."""
    cluster, address, worker = two_node_cluster
    path = write_study(tmp_path, stores, "lost-node", epochs=3000, trials=2,
                       parallel=2, cpus_per_trial=1, max_retries=1)
    proc = subprocess.Popen([HYPERSWEEP, "run", str(path), "--ray-address", address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        # Until a trial trains on the worker node, in the first half of its 3000 epochs
        # (some seconds left, also under load): where each trial trains is on its run
        # while it trains, not only at its end.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            try:
                trials = optuna.load_study(study_name="lost-node",
                                           storage=stores.optuna_url).trials
                _, children = study_runs(stores.mlflow_uri, "lost-node")
            except Exception:  # noqa: BLE001 - the study may not exist yet
                trials, children = [], []
            there = [c for c in children if c.info.status == "RUNNING"
                     and c.data.tags.get("node") == worker]
            if there and len(trials[int(there[0].data.tags["optuna.trial_number"])]
                             .intermediate_values) < 1500:
                break
            time.sleep(0.2)
        else:
            pytest.fail("no trial started on the worker node")
        assert there[0].data.tags["node_ip"] and there[0].data.tags["device"] == "cpu"
        cluster.stdin.write("remove\n")
        cluster.stdin.flush()
        assert cluster.stdout.readline().strip() == "removed"
        out, err = proc.communicate(timeout=400)
    finally:
        stop_group(proc)
    assert proc.returncode == 0, err[-3000:]
    assert "its worker died; retrying it (attempt 2 of 2" in out + err, (out + err)[-3000:]
    assert "[state-dump]" not in out + err and "Last 20 lines" not in out + err   # Ray's 38
    assert (out + err).count("the raylet of a Ray node") <= 1
    trials = optuna.load_study(study_name="lost-node", storage=stores.optuna_url).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 2
    parent, children = study_runs(stores.mlflow_uri, "lost-node")
    assert parent.info.status == "FINISHED"
    assert [c.info.status for c in children] == ["FINISHED"] * 2
    retried = [c for c in children if "attempts" in c.data.tags]
    assert [c.data.tags["attempts"] for c in retried] == ["2"]      # the one the node lost
    assert retried[0].data.tags["node_ip"] and retried[0].data.tags["node"] != worker


@pytest.mark.parametrize("listening, why", [
    (None, "Connection refused"),
    ("web", "answers, but not as a Ray cluster"),
    ("silent", "takes connections but sent nothing in 5 s, where a Ray cluster answers at once"),
], ids=["closed port", "web server", "silent server"])
def test_bad_ray_address_is_a_user_error(stores, tmp_path, listening, why):
    """Nothing at the address, a server that is not Ray's (its dashboard's port 8265
    is the usual mistake), or one that takes connections and says nothing (a
    stalled tunnel): one line, at once. Ray retried the first two for minutes, and
    waited on the third without end."""
    import http.server
    import socket
    import threading

    path = write_study(tmp_path, stores, "nowhere", epochs=1, trials=1)
    web = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    silent = socket.create_server(("127.0.0.1", 0))     # listens, never accepts or answers
    port = {"web": web.server_address[1], "silent": silent.getsockname()[1]}.get(listening, 1)
    try:
        res = subprocess.run([HYPERSWEEP, "run", str(path), "--ray-address", f"127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=300)
    finally:
        web.shutdown()
        silent.close()
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: --ray-address:")
    assert why in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert stores.untouched()


def test_a_trial_no_node_can_hold_is_a_user_error(stores, tmp_path):
    """Ray would queue it forever: instead, one line and exit 2 before any store opens,
    and the local Ray instance is stopped."""
    path = write_study(tmp_path, stores, "too-big", epochs=1, trials=1, cpus_per_trial=4096)
    res = subprocess.run([HYPERSWEEP, "run", str(path)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2, res.stderr[-3000:]
    assert res.stderr.strip().startswith(
        "error: resources.cpus_per_trial: 4096 CPUs per trial, but this machine's Ray "
        "instance has at most")
    assert len(res.stderr.strip().splitlines()) == 1
    assert stores.untouched()


def wait_for_training(stores: Stores, study: str, proc: subprocess.Popen) -> None:
    """Until some trial has reported an epoch (the workers are mid-training)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        try:
            trials = optuna.load_study(study_name=study, storage=stores.optuna_url).trials
            if any(t.intermediate_values for t in trials):
                return
        except Exception:  # noqa: BLE001 - the study may not exist yet
            pass
        time.sleep(0.5)
    pytest.fail("no trial reported an epoch")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.parametrize("sig, to, code, reason", [
    (signal.SIGINT, "driver", 130, "Ctrl-C"),
    (signal.SIGINT, "terminal", 130, "Ctrl-C"),
    (signal.SIGTERM, "driver", 143, "SIGTERM"),
])
def test_ctrl_c_or_sigterm_fails_running_trials_and_exits_cleanly(stores, tmp_path, sig, to,
                                                                    code, reason):
    """SIGINT to the driver alone, or to its whole process group as a terminal's
    Ctrl-C sends it (Ray's own processes included); SIGTERM to the driver, as
    `kill`, `timeout` or a batch scheduler sends it."""
    path = write_study(tmp_path, stores, "interrupted", epochs=2000, trials=4, parallel=2)
    # As a terminal starts it: a runner that started us in the background (SIGINT
    # ignored, and so inherited) must not make the driver deaf to Ctrl-C.
    proc = subprocess.Popen([HYPERSWEEP, "run", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for_training(stores, "interrupted", proc)
        if to == "driver":
            proc.send_signal(sig)
        else:
            os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=180)
        deadline = time.monotonic() + 60      # Ray's processes exit with the driver
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftovers = group_alive(proc.pid)
    finally:
        stop_group(proc)
    assert not leftovers, "Ray processes outlived the driver"
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith(
        "running trials were marked FAIL; continue with: hypersweep resume interrupted "
        f"--storage {stores.optuna_url}")
    trials = optuna.load_study(study_name="interrupted", storage=stores.optuna_url).trials
    assert trials and all(t.state == optuna.trial.TrialState.FAIL for t in trials)
    assert all(reason in t.user_attrs["reason"] for t in trials)
    parent, children = study_runs(stores.mlflow_uri, "interrupted")
    assert parent.info.status == "KILLED"
    assert [c.info.status for c in children] == ["FAILED"] * len(trials)
    assert all(c.data.tags["state"] == "FAIL" for c in children)


def session_processes(sid: int) -> list[str]:
    """The live processes of a session (Linux /proc), by command line."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(Path(f"/proc/{entry}/cmdline").read_text().replace("\0", " "))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("sig, code, message", [(signal.SIGINT, 130, "interrupted"),
                                                 (signal.SIGTERM, 143, "stopped by SIGTERM")])
def test_a_stop_while_ray_starts_leaves_no_process(stores, tmp_path, sig, code, message):
    """Ray's dashboard and runtime-env agents, started before ray.init returned,
    outlived a driver stopped there by minutes; and a SIGTERM there met Ray's own
    handler: exit status 15, no message."""
    study = write_study(tmp_path, stores, "starting", epochs=3, trials=2)
    proc = subprocess.Popen([HYPERSWEEP, "run", str(study)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 90
        while not any("DashboardAgent" in c for c in session_processes(proc.pid)):
            assert time.monotonic() < deadline and proc.poll() is None, "Ray never started"
            time.sleep(0.02)
        proc.send_signal(sig)                       # the agents are up; ray.init is not done
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err
        assert err.strip().splitlines()[-1].startswith(message), err
        deadline = time.monotonic() + 10
        while session_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert session_processes(proc.pid) == []
    finally:
        stop_group(proc)


HOLDS_SIGTERM = """
import os, signal, time
from hypersweep.search import ray_executor
got = []
signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
assert ray_executor.connect(None)
ray_executor.stop_in_background()
ray_executor.wait_stopped()
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.5)
print("held", got, flush=True)
"""


def test_a_sigterm_after_ray_stopped_still_meets_this_process_s_handler(tmp_path):
    """Ray's core, disconnecting, set SIGTERM's disposition back to the default under
    Python's handler: a SIGTERM as the study's end was written (Ray stopping beside
    it) killed the process at once, the study never marked ended, its lease held."""
    done = subprocess.run([sys.executable, "-c", HOLDS_SIGTERM], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert done.returncode == 0 and done.stdout.strip() == f"held [{int(signal.SIGTERM)}]", \
        (done.returncode, done.stdout, done.stderr[-2000:])


def test_a_signal_inside_logging_s_code_is_sent_again_outside_it():
    """Ray's start forks, and logging's at-fork hooks hold its lock: a SIGTERM there
    had Ray's handler raise SystemExit inside them, which Python swallowed, leaving
    the stop lost and logging's lock held (the process hung at its end, for good)."""
    import logging

    from hypersweep.search.ray_executor import outside_logging

    frames = []

    class Catch(logging.Handler):
        def emit(self, record):
            frames.append(sys._getframe(1))     # logging's own Handler.handle

    log = logging.getLogger("frames")
    log.addHandler(Catch())
    log.warning("a line")
    assert frames[0].f_code.co_filename == logging.__file__
    handled, resent = [], []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: resent.append(signum))
    try:
        wrapped = outside_logging(lambda signum, frame: handled.append(signum))
        wrapped(signal.SIGUSR1, frames[0])          # inside logging: not handled there
        assert handled == []
        deadline = time.monotonic() + 5
        while not resent and time.monotonic() < deadline:
            time.sleep(0.01)
        assert resent == [signal.SIGUSR1]          # but sent again, to be handled outside
        wrapped(signal.SIGUSR1, sys._getframe())   # elsewhere: handled at once
        assert handled == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)
