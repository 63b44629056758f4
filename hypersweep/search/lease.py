"""Which process drives a study, while it runs.

`resume` marks the trials it finds RUNNING as failed: right after a crash, but
not while the driver still runs them (from another terminal, or a job thought
dead). Then the two drivers tell the same trials, and the first one ends in
Optuna's "Trial#0 has already finished". So the driver keeps a lease on its
study, an Optuna study user attr refreshed every few seconds from a thread, and
`resume` refuses a study whose lease is live: on this host, while its process
exists; on another, while its heartbeat is fresh.
"""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any

import optuna

from hypersweep.models.errors import UserError

LEASE = "driver"            # study user attr: {"host", "pid", "beat"} while a driver runs it
HEARTBEAT_S = 10.0          # how often the driver renews it
STALE_S = 3 * HEARTBEAT_S   # a lease not renewed for this long is a dead driver's


class Lease:
    """`with Lease(study):` around a driver's run of `study`."""

    def __init__(self, study: optuna.Study, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.study = study
        self.heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="study-lease", daemon=True)

    def __enter__(self) -> "Lease":
        self._write()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(Exception):    # a store that failed: the lease goes stale
            self.study.set_user_attr(LEASE, None)

    def _write(self) -> None:
        self.study.set_user_attr(LEASE, {"host": socket.gethostname(), "pid": os.getpid(),
                                         "beat": time.time()})

    def _renew(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with contextlib.suppress(Exception):    # a busy store: the next beat retries
                self._write()


def check_not_running(study: optuna.Study, stale_s: float = STALE_S,
                      before: str = "resuming") -> None:
    """A one-line error when a live driver holds the study's lease (`before`: what
    the command would do to the study)."""
    lease = study.user_attrs.get(LEASE)
    if not lease:
        return
    age = time.time() - float(lease.get("beat", 0))
    live = age < stale_s
    if live and lease.get("host") == socket.gethostname():
        live = _exists(int(lease.get("pid", 0)))    # here, a killed driver is seen at once
    if live:
        raise UserError(f"study '{study.study_name}' is running: its driver (pid {lease.get('pid')} "
                        f"on {lease.get('host')}) renewed its lease {age:.0f} s ago; stop it "
                        f"(Ctrl-C or SIGTERM) or let it finish before {before}")


def _exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:         # another user's process
        return True
    return True
