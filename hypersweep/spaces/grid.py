"""Exhaustive grids over a space.

Continuous ranges become `grid_points` values including both ends, geometric for
log ranges ("usually of log scale"), linear otherwise. A conditional is enumerated
branch by branch: each branch contributes its own sub-grid, never a cross product
with another branch's parameters, so `optimizer: {sgd: {momentum: 3 values}, adam: {}}`
costs 3 + 1 points, not 3 x 2.
"""
from __future__ import annotations

import itertools
import math
from typing import Any

from hypersweep.models.errors import UserError
from hypersweep.spaces.language import (Categorical, Conditional, Fixed, Float, Int, Param, Space,
                                        walk)

Point = dict[str, Any]


def grid(space: Space, grid_points: int) -> list[Point]:
    """Every point of the grid, in a deterministic order (first parameter slowest)."""
    _check_points(grid_points)
    return _grid(space, grid_points)


def grid_size(space: Space, grid_points: int) -> int:
    """len(grid(space, grid_points)), without building the points."""
    _check_points(grid_points)
    return _size(space, grid_points)


def grid_point(space: Space, grid_points: int, index: int) -> Point:
    """grid(space, grid_points)[index], without building the grid: a grid of
    billions of points can still be sampled."""
    _check_points(grid_points)
    if not 0 <= index < _size(space, grid_points):
        raise IndexError(index)
    return _point(space, grid_points, index)


def on_grid(space: Space, grid_points: int, point: Point) -> bool:
    """Whether `point` (values of the searched names) is a point of the grid: an
    enqueued point that is one runs once, not twice."""
    _check_points(grid_points)
    named: set[str] = set()

    def fits(sub: Space) -> bool:
        for name, p in sub.items():
            if isinstance(p, Fixed):
                continue
            named.add(name)
            if name not in point:
                return False
            v = point[name]
            if isinstance(p, Conditional):
                if not any(_same(v, b) for b in p.branches) or not fits(p.branches[v]):
                    return False
            elif not any(_same(v, a) for a in axis(p, grid_points)):
                return False
        return True

    return fits(space) and named == set(point)


def _same(a: Any, b: Any) -> bool:
    """Equal as values of a parameter: 0 is 0.0, but true is not 1."""
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    return a == b and (numbers or type(a) is type(b))


def axis(param: Param, grid_points: int) -> list[Any]:
    """The grid values of one non-conditional parameter."""
    if isinstance(param, Float):
        return _float_axis(param, grid_points)
    if isinstance(param, Int):
        return _int_axis(param, grid_points)
    if isinstance(param, Categorical):
        return list(param.values)
    if isinstance(param, Conditional):
        raise TypeError("a conditional has no single axis; use grid()")
    return [param.value]


GRID_POINTS_MAX = 10_000     # values per range: already that many trials for one parameter


def _check_points(grid_points: int) -> None:
    if isinstance(grid_points, bool) or not isinstance(grid_points, int) or grid_points < 2:
        raise UserError(f"search.grid_points: needs an integer >= 2 (both ends of every "
                        f"range), got {grid_points!r}")
    if grid_points > GRID_POINTS_MAX:
        raise UserError(f"search.grid_points: at most {GRID_POINTS_MAX:,} values per range, "
                        f"got {grid_points:,}; for a finer search use a random or Bayesian "
                        "strategy")


def _grid(space: Space, n: int) -> list[Point]:
    per_param = [_param_grid(name, p, n) for name, p in space.items()]
    return [_merge(parts) for parts in itertools.product(*per_param)]


def _param_grid(name: str, p: Param, n: int) -> list[Point]:
    if not isinstance(p, Conditional):
        return [{name: v} for v in axis(p, n)]
    return [{name: branch, **sub}
            for branch, branch_space in p.branches.items()
            for sub in _grid(branch_space, n)]


def _point(space: Space, n: int, index: int) -> Point:
    """The index-th point of `_grid`: its product order is a mixed-radix number,
    the first parameter its most significant digit."""
    out: Point = {}
    sizes = [_param_size(p, n) for p in space.values()]
    for k, (name, p) in enumerate(space.items()):
        digit, index = divmod(index, math.prod(sizes[k + 1:]))
        out.update(_param_point(name, p, n, digit))
    return out


def _param_point(name: str, p: Param, n: int, i: int) -> Point:
    if not isinstance(p, Conditional):
        return {name: axis(p, n)[i]}
    for branch, branch_space in p.branches.items():     # branch by branch, as _param_grid
        size = _size(branch_space, n)
        if i < size:
            return {name: branch, **_point(branch_space, n, i)}
        i -= size
    raise IndexError(i)


def _merge(parts: tuple[Point, ...]) -> Point:
    out: Point = {}
    for part in parts:
        out.update(part)
    return out


def _size(space: Space, n: int) -> int:
    return math.prod(_param_size(p, n) for p in space.values())


def _param_size(p: Param, n: int) -> int:
    if isinstance(p, Conditional):
        return sum(_size(sub, n) for sub in p.branches.values())
    if isinstance(p, Float):
        return n        # without listing them: ten ranges of many points each hung
    return len(axis(p, n))


def _spread(low: float, high: float, n: int, log: bool) -> list[float]:
    """n values from low to high inclusive, evenly spaced (in log space when log)."""
    if log:
        a, b = math.log(low), math.log(high)
        inner = [math.exp(a + (b - a) * i / (n - 1)) for i in range(1, n - 1)]
    else:
        inner = [low + (high - low) * i / (n - 1) for i in range(1, n - 1)]
    return [low, *inner, high]   # the ends exactly as written, free of rounding


def _float_axis(p: Float, n: int) -> list[float]:
    # The inner values to 12 significant digits: 0.001, not 0.0010000000000000002, in
    # logs and the MLflow UI. Not the ends: rounded, an end of 0.1234567890124 fell
    # outside its own range, which Optuna refused once the trials had run.
    low, *inner, high = _spread(p.low, p.high, n, p.log)
    return [low, *(min(max(float(f"{v:.12g}"), low), high) for v in inner), high]


def spreads_a_range(space: Space, grid_points: int) -> bool:
    """Whether some range of the space is spread over `grid_points` values rather
    than taken whole (a float range always is; an integer one with more values)."""
    return any(isinstance(p, Float) or isinstance(p, Int) and _int_count(p) > grid_points
               for _, p, _, _ in walk(space))


def _int_count(p: Int) -> int:
    return (p.high - p.low) // p.step + 1


def _int_axis(p: Int, n: int) -> list[int]:
    count = _int_count(p)
    if count <= n:
        return list(range(p.low, p.high + 1, p.step))
    if p.log:   # intlog has step 1
        raw = _spread(p.low, p.high, n, log=True)
        return list(dict.fromkeys(_round(v) for v in raw))
    steps = count - 1
    return list(dict.fromkeys(p.low + _round(steps * i / (n - 1)) * p.step for i in range(n)))


def _round(x: float) -> int:
    # Half up, not Python's half to even, so the spread does not depend on parity.
    return math.floor(x + 0.5)
