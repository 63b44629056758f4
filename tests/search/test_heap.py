"""search/heap.py: the command's start-up is kept from the garbage collector.
Each test runs in its own interpreter: freezing this one would keep the test
session's garbage for good."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT


def python(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_held_start_up_objects_are_exempted_and_collection_resumes():
    python("""
        import gc
        from hypersweep.search import heap
        heap.hold()
        assert not gc.isenabled()
        start_up = [[i] for i in range(5000)]
        heap.release()
        assert gc.isenabled() and gc.get_freeze_count() >= 5000
        frozen = gc.get_freeze_count()
        later = [[i] for i in range(100)]
        heap.release()                          # once only
        assert gc.get_freeze_count() == frozen
        a = []; a.append(a); del a              # a trial's cyclic garbage is still collected
        assert gc.collect() >= 1
    """)


def test_a_process_that_did_not_hold_is_left_alone():
    python("""
        import gc
        from hypersweep.search import heap
        heap.release()
        assert gc.isenabled() and gc.get_freeze_count() == 0
        gc.disable()                            # the caller's own choice stays
        heap.hold(); heap.release()
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    """)
