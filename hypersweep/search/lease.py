"""Which process drives a study, while it runs.

`resume` marks the trials it finds RUNNING as failed: right after a crash, but
not while the driver still runs them (from another terminal, or a job thought
dead). Then the two drivers tell the same trials, and the first one ends in
Optuna's "Trial#0 has already finished". So the driver keeps a lease on its
study, an Optuna study user attr refreshed every few seconds from a thread, and
`resume` refuses a study whose lease is live: on this host, while its process
exists (the same process: its pid and start), however long it has been
suspended; on another, while its heartbeat is fresh.

Two `resume`s started together both find the lease free. The stores offer no
compare-and-set, so a driver claims the lease in three steps: it writes the lease
with a token of its own at once after finding it free, waits `SETTLE_S` (longer
than that check-and-write takes), and reads it back. Of two drivers that both
wrote, each reads the later writer's token: that one runs the study, the other
stops before it has touched a trial in either store.
"""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import optuna

from hypersweep.models.errors import UserError

# Study user attr while a driver runs the study: {"host", "pid", "started" (the
# process's start), "beat", "token"}
LEASE = "driver"
HEARTBEAT_S = 10.0          # how often the driver renews it
STALE_S = 3 * HEARTBEAT_S   # a lease not renewed for this long is a dead driver's
SETTLE_S = 0.5              # a claim's wait between writing the lease and reading it back


class Lease:
    """`with Lease(study):` around a driver's run of `study`. `settle_s`: the wait
    of the claim (0 for a study this process has just created: no other driver
    can have it)."""

    def __init__(self, study: optuna.Study, heartbeat_s: float = HEARTBEAT_S,
                 settle_s: float = SETTLE_S) -> None:
        self.study = study
        self.heartbeat_s = heartbeat_s
        self.settle_s = settle_s
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="study-lease", daemon=True)

    def __enter__(self) -> "Lease":
        check_not_running(self.study)
        self._write()
        if self.settle_s:
            time.sleep(self.settle_s)
            # Another driver's claim, written between this one's check and its read.
            if not self._held():
                check_not_running(self.study)
                raise UserError(f"study '{self.study.study_name}' is running: another driver "
                                "claimed it at the same time")
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with contextlib.suppress(Exception):    # a store that failed: the lease goes stale
            if self._held():                    # not a driver's that claimed it since
                self.study.set_user_attr(LEASE, None)

    def _held(self) -> bool:
        lease = self.study.user_attrs.get(LEASE) or {}
        return lease.get("token") == self.token

    def _write(self) -> None:
        self.study.set_user_attr(LEASE, {"host": socket.gethostname(), "pid": os.getpid(),
                                         "started": _started(os.getpid()),
                                         "beat": time.time(), "token": self.token})

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
    pid = int(lease.get("pid", 0))
    if lease.get("host") == socket.gethostname():
        if lease.get("started") is not None:
            # Here the process itself says: a killed driver is seen at once, and a
            # suspended one (Ctrl-Z, SIGSTOP), silent for minutes, still holds the
            # study; its pid taken by another process since does not.
            live = _exists(pid) and _started(pid) == lease["started"]
        elif live:
            live = _exists(pid)
    if live:
        raise UserError(f"study '{study.study_name}' is running: its driver (pid {lease.get('pid')} "
                        f"on {lease.get('host')}) renewed its lease {age:.0f} s ago; stop it "
                        f"(Ctrl-C or SIGTERM) or let it finish before {before}")


def _started(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot; None where /proc is not):
    a pid with another start is another process."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


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
