"""SIGTERM stops a study as Ctrl-C does (search/exit.py), in this process's main thread."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from search.exit import Terminated, stop_code, stop_reason, stops_as_interrupt


def signalled(signum: int, exc: type[BaseException]) -> None:
    """Send this process `signum`; its handler must raise `exc` (at once, or while
    sleeping in small steps)."""
    with pytest.raises(exc):
        os.kill(os.getpid(), signum)
        for _ in range(100):
            time.sleep(0.01)


def test_sigterm_raises_terminated_once_then_is_ignored():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stops_as_interrupt():
        signalled(signal.SIGTERM, Terminated)
        os.kill(os.getpid(), signal.SIGTERM)      # a second one while the study stops
        time.sleep(0.05)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_after_ctrl_c_a_sigterm_does_not_cut_the_clean_up_short():
    with stops_as_interrupt() as stopping:
        signalled(signal.SIGINT, KeyboardInterrupt)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)                # ignored: nothing raised here
        stopping()                      # may be called again by the clean-up


def test_a_signal_started_ignored_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stops_as_interrupt():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_outside_the_main_thread_nothing_is_installed():
    seen = []

    def body() -> None:
        with stops_as_interrupt() as stopping:
            seen.append(signal.getsignal(signal.SIGTERM))
            stopping()

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before]


def test_reason_and_exit_status():
    assert stop_reason(Terminated()) == "stopped by SIGTERM"
    assert stop_reason(KeyboardInterrupt()) == "interrupted by the user (Ctrl-C)"
    assert (stop_code(Terminated()), stop_code(KeyboardInterrupt())) == (143, 130)
