"""grid() and grid_size(): exact point sets, per-branch enumeration of conditionals."""
from __future__ import annotations

import pytest
import yaml

from hypersweep.models.errors import UserError
from hypersweep.spaces import grid, grid_point, grid_size, parse_space
from tests.conftest import DESIGN_SPACE


def space_of(text: str):
    return parse_space(yaml.safe_load(text))


def values_of(space_text: str, n: int, name: str) -> list:
    return [p[name] for p in grid(space_of(space_text), n)]


def test_log_range_is_geometric():
    lrs = values_of("lr: {loguniform: [1.0e-4, 1.0e-1]}", 4, "lr")
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1], rel=1e-12)
    # Rounded to 12 significant digits, so the UI shows 0.001, not 0.0010000000000000002.
    assert lrs == [1e-4, 1e-3, 1e-2, 1e-1]


def test_linear_range_is_evenly_spaced_with_both_ends():
    assert values_of("d: {uniform: [0.0, 0.9]}", 4, "d") == pytest.approx([0.0, 0.3, 0.6, 0.9])
    assert values_of("d: {uniform: [-1, 1]}", 5, "d") == [-1.0, -0.5, 0.0, 0.5, 1.0]


def test_int_ranges():
    # Few enough distinct values: all of them.
    assert values_of("d: {int: [1, 4]}", 4, "d") == [1, 2, 3, 4]
    assert values_of("d: {int: [1, 3]}", 5, "d") == [1, 2, 3]
    assert values_of("w: {int: [16, 64], step: 16}", 4, "w") == [16, 32, 48, 64]
    # Too many: spread evenly on the step lattice, ends included.
    assert values_of("d: {int: [0, 10]}", 3, "d") == [0, 5, 10]
    assert values_of("d: {int: [1, 10]}", 4, "d") == [1, 4, 7, 10]
    assert values_of("w: {int: [16, 256], step: 16}", 3, "w") == [16, 144, 256]   # midpoint 136 is off the lattice; half up
    assert values_of("w: {intlog: [1, 1000]}", 4, "w") == [1, 10, 100, 1000]
    assert values_of("w: {intlog: [16, 512]}", 4, "w") == [16, 51, 161, 512]
    # Rounding collides at the low end of a log range: deduplicated.
    assert values_of("w: {intlog: [1, 6]}", 5, "w") == [1, 2, 4, 6]
    assert all(type(v) is int for v in values_of("w: {intlog: [16, 512]}", 4, "w"))


def test_choices_and_fixed_values_as_given():
    points = grid(space_of("act: {choice: [tanh, relu, null]}\nepochs: 30"), 4)
    assert points == [{"act": "tanh", "epochs": 30}, {"act": "relu", "epochs": 30},
                      {"act": None, "epochs": 30}]


def test_conditional_is_enumerated_per_branch():
    space = space_of("optimizer: {choice: {sgd: {momentum: {uniform: [0, 0.9]}}, adam: {}}}")
    assert grid(space, 3) == [
        {"optimizer": "sgd", "momentum": 0.0},
        {"optimizer": "sgd", "momentum": 0.45},
        {"optimizer": "sgd", "momentum": 0.9},
        {"optimizer": "adam"},
    ]
    assert grid_size(space, 3) == 4


def test_branches_cross_the_other_params_but_not_each_other():
    space = space_of("""
    lr: {loguniform: [1.0e-3, 1.0e-1]}
    optimizer:
      choice:
        sgd:  {momentum: {uniform: [0.0, 0.9]}, nesterov: {choice: [true, false]}}
        adam: {beta2: {choice: [0.99, 0.999]}}
        rmsprop: {}
    depth: {int: [1, 2]}
    """)
    points = grid(space, 3)
    branch_points = 3 * 2 + 2 + 1                      # a sum over branches ...
    assert len(points) == grid_size(space, 3) == 3 * branch_points * 2   # ... times the rest
    assert len({tuple(sorted(p.items(), key=str)) for p in points}) == len(points)
    for p in points:
        expected = {"sgd": {"momentum", "nesterov"}, "adam": {"beta2"}, "rmsprop": set()}
        assert set(p) == {"lr", "optimizer", "depth"} | expected[p["optimizer"]]
    sgd = [p for p in points if p["optimizer"] == "sgd"]
    assert {(p["lr"], p["momentum"], p["nesterov"], p["depth"]) for p in sgd} == {
        (lr, m, n, d) for lr in (1e-3, 1e-2, 1e-1) for m in (0.0, 0.45, 0.9)
        for n in (True, False) for d in (1, 2)}
    # Deterministic order: first parameter slowest.
    assert points[0] == {"lr": 1e-3, "optimizer": "sgd", "momentum": 0.0, "nesterov": True,
                         "depth": 1}
    assert points[-1] == {"lr": 1e-1, "optimizer": "rmsprop", "depth": 2}
    assert grid(space, 3) == points


NESTED_SPACE = """
model:
  choice:
    cnn:
      block: {choice: {plain: {}, residual: {k: {int: [1, 3]}}}}
      width: {int: [8, 16], step: 8}
    mlp: {width: {int: [8, 16], step: 8}}
"""


def test_nested_conditionals_and_shared_branch_names():
    space = space_of(NESTED_SPACE)
    # cnn: (1 + 3) blocks x 2 widths = 8; mlp: 2 widths.
    assert grid_size(space, 4) == len(grid(space, 4)) == 10


def test_grid_size_of_the_design_example():
    space = space_of(DESIGN_SPACE)
    assert grid_size(space, 4) == 4 * 4 * 4 * 4 * (4 * 2 + 2 + 1)
    assert len(grid(space, 4)) == grid_size(space, 4)


def test_empty_space_is_one_empty_point():
    assert grid({}, 3) == [{}]
    assert grid_size({}, 3) == 1


@pytest.mark.parametrize("bad", [1, 0, True, 2.5])
def test_grid_points_must_be_at_least_two(bad):
    with pytest.raises(UserError, match=r"search.grid_points: needs an integer >= 2"):
        grid(space_of("lr: {uniform: [0, 1]}"), bad)


@pytest.mark.parametrize("text", [DESIGN_SPACE,
                                  NESTED_SPACE + "lr: {loguniform: [1.0e-4, 1.0e-1]}\n"])
def test_grid_point_is_the_point_at_that_index_of_the_grid(text):
    """Indexing the grid without building it: the same points, in the same order,
    conditionals branch by branch."""
    space = space_of(text)
    points = grid(space, 3)
    assert [grid_point(space, 3, i) for i in range(len(points))] == points
    with pytest.raises(IndexError):
        grid_point(space, 3, len(points))


def test_the_ends_of_a_float_range_are_exactly_as_written():
    """Rounded to 12 digits, 0.1234567890124 became 0.123456789012: below its own
    range, which Optuna refused once the study's trials had run."""
    axis_ = grid(space_of("dropout: {uniform: [0.1234567890124, 0.4]}"), 3)
    assert [p["dropout"] for p in axis_] == [0.1234567890124, 0.261728394506, 0.4]
    low, mid, high = (p["lr"] for p in grid(space_of("lr: {loguniform: [1.0e-4, 1.0e-2]}"), 3))
    assert (low, mid, high) == (1e-4, 1e-3, 1e-2)       # inner values still rounded


def test_a_grid_of_many_ranges_is_sized_without_listing_them():
    """Ten ranges of 10,000 values each: 10**40 points, counted at once (it hung)."""
    space = space_of("".join(f"p{i}: {{uniform: [0, 1]}}\n" for i in range(10)))
    assert grid_size(space, 10_000) == 10 ** 40
    assert 0 <= grid_point(space, 10_000, 10 ** 40 - 1)["p9"] <= 1
    with pytest.raises(UserError, match=r"^search.grid_points: at most 10,000 values per range, "
                                        r"got 100,000,000; for a finer search use a random"):
        grid_size(space, 100_000_000)
