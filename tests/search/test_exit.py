"""SIGTERM stops a study as Ctrl-C does (search/exit.py), in this process's main thread."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from hypersweep.search.exit import Abandoned, Stops, Terminated, stops_as_interrupt

CTRL_C = ("interrupted by the user (Ctrl-C)", 130)
SIGTERM = ("stopped by SIGTERM", 143)


def signalled(signum: int, exc: type[BaseException]) -> BaseException:
    """Send this process `signum`; its handler must raise `exc` (at once, or while
    sleeping in small steps)."""
    with pytest.raises(exc) as caught:
        os.kill(os.getpid(), signum)
        for _ in range(100):
            time.sleep(0.01)
    return caught.value


def test_sigterm_raises_terminated_once_then_is_only_noted():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stops_as_interrupt() as stops:
        stop = signalled(signal.SIGTERM, Terminated)
        os.kill(os.getpid(), signal.SIGTERM)      # a second one while the study stops
        time.sleep(0.05)
        assert stops.why(stop) == SIGTERM
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_sigterm_that_ray_re_raises_as_a_plain_keyboard_interrupt_is_still_a_sigterm():
    """`ray.wait` turns an exception its signal check raised into KeyboardInterrupt."""
    with stops_as_interrupt() as stops:
        signalled(signal.SIGTERM, Terminated)
        assert stops.why(KeyboardInterrupt()) == SIGTERM


def test_a_ctrl_c_alone_is_a_ctrl_c():
    with stops_as_interrupt() as stops:
        stop = signalled(signal.SIGINT, KeyboardInterrupt)
        stops.stopping()
        assert stops.why(stop) == CTRL_C


def test_after_ctrl_c_a_sigterm_does_not_cut_the_clean_up_short():
    """A SIGTERM to the process group with Ray: Ray's processes stop and Ray
    interrupts the main thread as Ctrl-C does, and the SIGTERM's handler runs
    after it. Nothing is raised in the clean-up, and the stop is the SIGTERM's."""
    with stops_as_interrupt() as stops:
        stop = signalled(signal.SIGINT, KeyboardInterrupt)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)                # noted: nothing raised here
        stops.stopping()                # may be called again by the clean-up
        assert stops.why(stop) == SIGTERM


def test_while_stopping_one_more_ctrl_c_is_held_with_a_hint_and_the_next_quits(capsys):
    """A double Ctrl-C by reflex cut the clean-up short: the study's parent run was
    left RUNNING, its end unwritten, with no word of how to continue."""
    with stops_as_interrupt() as stops:
        stop = signalled(signal.SIGINT, KeyboardInterrupt)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)                # held: nothing raised here
        assert Stops.QUIT_HINT in capsys.readouterr().err
        signalled(signal.SIGINT, KeyboardInterrupt)         # asked again: quits
        assert stops.why(stop) == CTRL_C


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
        with stops_as_interrupt() as stops:
            seen.append(signal.getsignal(signal.SIGTERM))
            stops.stopping()
            seen.append(signal.getsignal(signal.SIGTERM))
            seen.append(stops.why(Terminated()))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before, before, SIGTERM]


def test_sighup_stops_a_study_as_sigterm_does():
    """The terminal or the SSH session went away: the study was left RUNNING in
    both stores (exit 129, no clean-up) until a resume."""
    with stops_as_interrupt() as stops:
        stop = signalled(signal.SIGHUP, Terminated)
        assert stops.why(stop) == ("stopped by SIGHUP", 129)
        assert stops.why(KeyboardInterrupt()) == ("stopped by SIGHUP", 129)    # via Ray


def test_under_nohup_sighup_stays_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stops_as_interrupt() as stops:
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            stops.stopping()
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_once_a_stopped_block_s_end_is_written_the_first_stop_decides_to_the_end(capsys):
    """The driver's block restored the CLI's handlers as it ended: a Ctrl-C after a
    SIGTERM, as the results printed, made the exit 130 and a bare `interrupted`."""
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stops_as_interrupt():                  # the CLI's
        with stops_as_interrupt() as stops:     # the driver's
            stop = signalled(signal.SIGTERM, Terminated)
            stops.stopping()
            stops.ended(stops.why(stop)[1], "continue with: hypersweep resume s")
        try:
            os.kill(os.getpid(), signal.SIGINT)     # noted, without a word: nothing raised
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        except KeyboardInterrupt as later:
            pytest.fail(f"a later signal raised {type(later).__name__} once the end was written")
        assert capsys.readouterr().err == ""
        quit_ = signalled(signal.SIGINT, Abandoned)     # asked again: quits, as SIGTERM's
        assert (quit_.code, quit_.hint) == (143, "continue with: hypersweep resume s")
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_quitting_before_the_end_is_written_keeps_the_first_stop_s_status():
    with stops_as_interrupt() as stops:
        signalled(signal.SIGTERM, Terminated)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        quit_ = signalled(signal.SIGINT, Abandoned)
        assert (quit_.code, quit_.hint) == (143, None)      # the driver adds the hint
