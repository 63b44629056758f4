"""How a trial's fault is told: its reason names the line of code that failed."""
from __future__ import annotations

import json

from hypersweep.models.errors import UserError
from hypersweep.search.executors import failure_reason


def test_a_faults_reason_names_the_deepest_line_outside_the_libraries():
    """A model of one's own calling torch (or any library) wrongly: the reason named
    the library's file (`rnn.py:1114`); it names the caller's line."""
    def parse():
        return json.loads("{")          # raises inside the standard library

    try:
        parse()
    except ValueError as e:
        reason = failure_reason(e)
    line = parse.__code__.co_firstlineno + 1
    assert reason.startswith("JSONDecodeError: ")
    assert reason.endswith(f"(test_executors.py:{line})")


def test_a_user_errors_reason_is_its_message_alone():
    assert failure_reason(UserError("params.dropout: must be in [0, 1), got 1.5")) == (
        "params.dropout: must be in [0, 1), got 1.5")
