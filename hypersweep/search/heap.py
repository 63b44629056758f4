"""Keep Python's cyclic garbage collector out of a process's start-up.

Importing torch, Optuna and MLflow makes about half a million objects that live
as long as the process, and the collector's full passes during those imports walk
them again and again: 0.7 s of a `hypersweep run` start-up here, for garbage that
imports hardly make. The command's processes (the driver and its tracking
process) call `hold` first thing and `release` once the start-up is over (the
first trial is about to train; the tracking process has warmed up): everything
alive then is exempted from later passes (`gc.freeze`), and collection resumes
for what the trials make. A process that never called `hold` (a library user,
the test session) is left alone.
"""
from __future__ import annotations

import gc

_held = False


def hold() -> None:
    """No automatic collection until `release`."""
    global _held
    if gc.isenabled():
        gc.disable()
        _held = True


def release() -> None:
    """After `hold`: exempt every object alive now from later collections, and
    collect automatically again. Otherwise, and when called again, nothing."""
    global _held
    if _held:
        _held = False
        gc.freeze()
        gc.enable()
