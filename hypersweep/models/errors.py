"""The error users see: one line, naming the key and what is valid."""
from __future__ import annotations

import datetime
import difflib
from typing import Any, Iterable


class UserError(ValueError):
    """Bad input from the user. The CLI prints it as one line and exits 2."""


class StoreFileGone(RuntimeError):
    """A SQLite store's file deleted, moved or replaced while a study wrote to it:
    the study's connections still write, to a file that no path names any more
    (`search.sqlite.FileWatch`)."""


class OutOfRange(UserError):
    """A hyperparameter's value outside the values it takes, whatever the data
    (a dropout of 1.5, a negative depth): a searched range that reaches one is
    refused before the study starts."""


class ExitInModel(RuntimeError):
    """A SystemExit that a model's own code raised (`sys.exit`, an argparse that
    read hypersweep's command line): a fault of the trial that ran it, not the end
    of the process. Raised with the SystemExit's traceback, so that a trial's
    reason names the model's line."""

    @classmethod
    def of(cls, e: SystemExit) -> "ExitInModel":
        return cls(f"the model's code called sys.exit({e.code!r})").with_traceback(
            e.__traceback__)


def shown(value: Any) -> str:
    """A value as an error quotes it, in YAML's words: `true` and `null`, not
    Python's True and None; a list or mapping in YAML's flow style; text quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(shown, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (datetime.date, datetime.datetime)):     # YAML reads 2024-01-01 so
        return f"the date {value.isoformat()} (quote it in the YAML for text: '{value}')"
    return repr(value)


def given(value: Any) -> str:
    """A wrong value as an error quotes it, with what it is where that is not plain:
    `text '3'` (quoted in the YAML), `true`, `null`, `a list [1]`."""
    if isinstance(value, str):
        return f"text {value!r}"
    kind = {list: "a list", tuple: "a list", dict: "a mapping"}.get(type(value))
    return f"{kind} {shown(value)}" if kind else shown(value)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none):
    what a one-line error quotes of a library's multi-line one."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def check_at_least(low: float, key_prefix: str = "params", **values: float) -> None:
    """`params.KEY: must be >= LOW, got V` for the first of `values` below `low`, or
    NaN (which compares false to every number, so `value < low` let it through)."""
    for key, value in values.items():
        if not value >= low:
            raise OutOfRange(f"{key_prefix}.{key}: must be >= {low:g}, got {value}")


MAX_LAYERS = 1000       # layers or blocks of one kind in a net


def check_layers(key_prefix: str = "params", **values: int) -> None:
    """`params.KEY: must be <= 1000, got V` for counts of layers or blocks (depth,
    layers, stages, ...): a depth of a billion is a typo, and building it to check
    it hung `validate`."""
    for key, value in values.items():
        if value > MAX_LAYERS:
            raise OutOfRange(f"{key_prefix}.{key}: must be <= {MAX_LAYERS}, got {value}")


def check_fraction(key_prefix: str = "params", **values: float) -> None:
    """`params.KEY: must be in [0, 1), got V` (dropout rates and the like)."""
    for key, value in values.items():
        if not 0.0 <= value < 1.0:
            raise OutOfRange(f"{key_prefix}.{key}: must be in [0, 1), got {value}")


def refuse_label_smoothing(label_smoothing: float, task: str) -> None:
    """A UserError for a task without classes to smooth, where a nonzero value would
    be accepted and do nothing."""
    if label_smoothing:
        raise UserError(f"params.label_smoothing: {task} has no class labels to smooth; "
                        f"got {label_smoothing}, use 0")


def unknown(kind: str, name: object, valid: Iterable[object], key: str | None = None) -> UserError:
    """`unknown builder 'mpl' (did you mean 'mlp'?); valid: linear, mlp`."""
    choices = sorted(str(v) for v in valid)
    close = difflib.get_close_matches(str(name), choices, n=1)
    if not close:                   # `MLP` for `mlp`
        lower = {c.lower(): c for c in choices}
        close = [lower[c] for c in difflib.get_close_matches(str(name).lower(), lower, n=1)]
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    where = f"{key}: " if key else ""
    quoted = f"'{name}'" if isinstance(name, str) else shown(name)    # `true`, not 'True'
    return UserError(f"{where}unknown {kind} {quoted}{hint}; valid: {', '.join(choices)}")
