"""The driver's lease on its study, and `resume` refusing a study that still runs."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import optuna
import pytest

from hypersweep.models.errors import UserError
from hypersweep.search.lease import LEASE, Lease, check_not_running


@pytest.fixture
def study(tmp_path) -> optuna.Study:
    return optuna.create_study(study_name="leased", storage=f"sqlite:///{tmp_path / 'optuna.db'}")


def test_the_lease_is_written_renewed_and_cleared(study):
    with Lease(study, heartbeat_s=0.05):
        first = study.user_attrs[LEASE]
        assert first["host"] == socket.gethostname() and first["pid"] > 0
        time.sleep(0.5)
        assert study.user_attrs[LEASE]["beat"] > first["beat"]      # renewed
        with pytest.raises(UserError, match=r"^study 'leased' is running: its driver \(pid "):
            check_not_running(study)
    assert study.user_attrs[LEASE] is None
    check_not_running(study)


def test_a_dead_or_silent_driver_does_not_hold_the_study(study):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])        # a pid that is gone
    gone.wait()
    now = time.time()
    here = socket.gethostname()
    cases = [({"host": here, "pid": gone.pid, "beat": now}, False),          # killed: seen at once
             ({"host": here, "pid": 1, "beat": now - 3600}, False),          # pid reused, silent
             ({"host": "elsewhere", "pid": 1234, "beat": now}, True),        # renewing
             ({"host": "elsewhere", "pid": 1234, "beat": now - 3600}, False)]
    for lease, held in cases:
        study.set_user_attr(LEASE, lease)
        if held:
            with pytest.raises(UserError, match="on elsewhere"):
                check_not_running(study)
        else:
            check_not_running(study)


def test_of_two_drivers_claiming_a_study_at_once_one_runs_it(tmp_path):
    """Both found the lease free and went on to fail the study's running trials and
    run it side by side; the claim is read back, and the later writer's stands."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="raced", storage=url)
    studies = [optuna.load_study(study_name="raced", storage=url) for _ in range(2)]
    start = threading.Barrier(2)
    ran: list[str] = []
    refused: list[str] = []

    def drive(study: optuna.Study) -> None:
        start.wait()
        try:
            with Lease(study, settle_s=0.5) as lease:
                ran.append(lease.token)
                time.sleep(1.0)
        except UserError as e:
            refused.append(str(e))

    threads = [threading.Thread(target=drive, args=(s,)) for s in studies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ran) == 1 and len(refused) == 1
    assert refused[0].startswith("study 'raced' is running")
    assert studies[0].user_attrs[LEASE] is None         # cleared by the driver that ran


def test_a_suspended_driver_here_still_holds_the_study_and_a_reused_pid_does_not(study):
    """Ctrl-Z (SIGSTOP) stops the lease's heartbeat: 30 s later resume took the
    study over, and the driver, continued, died in UpdateFinishedTrialError."""
    from hypersweep.search.lease import _started

    here, me = socket.gethostname(), os.getpid()
    study.set_user_attr(LEASE, {"host": here, "pid": me, "started": _started(me),
                                "beat": time.time() - 3600})
    with pytest.raises(UserError, match="renewed its lease 3600 s ago"):
        check_not_running(study)
    study.set_user_attr(LEASE, {"host": here, "pid": me, "started": _started(me) - 1,
                                "beat": time.time()})       # the pid is another process's now
    check_not_running(study)
