"""The driver's lease on its study, and `resume` refusing a study that still runs."""
from __future__ import annotations

import socket
import subprocess
import sys
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
