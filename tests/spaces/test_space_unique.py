"""A choice's duplicate values: found in one pass, with the error as before."""
from __future__ import annotations

import pytest
import yaml

from hypersweep.models.errors import UserError
from hypersweep.spaces import Categorical, parse_space


def error_of(values: list) -> str:
    with pytest.raises(UserError) as info:
        parse_space({"x": {"choice": values}})
    return str(info.value)


@pytest.mark.parametrize("values, message", [
    (["relu", "tanh", "relu"], "space.x.choice: duplicate value 'relu'"),
    ([1, True], "space.x.choice: duplicate value True (equal to 1)"),
    ([1.0, 2, 1], "space.x.choice: duplicate value 1 (equal to 1.0)"),
    ([0, 0.5, False, 0.0], "space.x.choice: duplicate value False (equal to 0)"),
    ([None, "a", None], "space.x.choice: duplicate value None"),
    # The first value equal to an earlier one, named with the first of those.
    (["a", 3, "b", 3.0, "a"], "space.x.choice: duplicate value 3.0 (equal to 3)"),
])
def test_values_equal_as_optuna_compares_them_are_duplicates(values, message):
    """Optuna finds a choice by ==: 1, 1.0 and True are one choice."""
    assert error_of(values) == message


@pytest.mark.parametrize("values", [
    ["1", 1, 1.5, "1.5", None, "None", "false", False],
    [2 ** 53 + 1, float(2 ** 53)],      # unequal, though the float is the int rounded
])
def test_values_that_only_look_alike_are_distinct(values):
    assert parse_space({"x": {"choice": values}})["x"] == Categorical(tuple(values))


def test_nan_twice_is_not_a_duplicate_as_nan_equals_nothing():
    """YAML's .nan is one object, which a set would find by identity; == never does."""
    values = yaml.safe_load("[.nan, .nan]")
    assert values[0] is values[1]
    assert len(parse_space({"x": {"choice": values}})["x"].values) == 2


def test_twenty_thousand_distinct_values_pass():
    values = list(range(10_000)) + [f"v{i}" for i in range(10_000)]
    assert parse_space({"x": {"choice": values}})["x"].values == tuple(values)


def test_distinct_values_are_checked_in_one_pass():
    """Each pair was compared: 20,000 values took 39 s, 200 million comparisons.
    Counted, not timed: a value is compared with at most a few others (2,000
    values were 2 million comparisons)."""
    compared = 0

    class Counted(str):
        __hash__ = str.__hash__

        def __eq__(self, other):
            nonlocal compared
            compared += 1
            return str.__eq__(self, other)

    values = [Counted(f"v{i}") for i in range(2_000)]
    assert len(parse_space({"x": {"choice": values}})["x"].values) == 2_000
    assert compared < 2 * len(values)
    with pytest.raises(UserError, match=r"^space\.x\.choice: duplicate value 'v3'$"):
        parse_space({"x": {"choice": [*values[:100], Counted("v3")]}})
