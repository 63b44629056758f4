"""What a finished study's trials say about its space: a searched range whose end
the best trials crowd against. The course of a search is coarse to fine: where
the best values of a hyperparameter sit at an end of the range searched, a better
one may lie past it, and the range should be widened before it is narrowed."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import optuna

from hypersweep.spaces.language import Float, Int, Space, walk

# A range's ends, on its own scale (log for log ranges): where the best trial sits
# (its outer tenth), and where the other best ones sit too (its outer fifth).
EDGE, NEAR = 0.1, 0.2
TRIALS_MIN = 10     # complete trials before the best of them say anything of a range
TOP_SHARE = 10      # the best tenth of the trials (at least 3), all but a fifth of them


@dataclass(frozen=True)
class CrowdedEnd:
    key: str            # the space's key: space.lr, space.optimizer.choice.sgd.momentum
    name: str
    end: str            # "low" or "high"
    best: float | int   # the best trial's value
    low: float | int
    high: float | int
    beyond: tuple[float | int, ...]     # values past that end, the farthest first
    branch: dict[str, Any]  # the branch values that lead to the definition

    def note(self, to: float | int | None = None) -> str:
        """The note, widening the range to `to` (default: the farthest value past it)."""
        side, past = ("bottom", "below") if self.end == "low" else ("top", "above")
        to = self.beyond[0] if to is None else to
        return (f"{self.key}: the best trials sit at the {side} of the searched range "
                f"[{_shown(self.low)}, {_shown(self.high)}] (the best: {_shown(self.best)}); "
                f"a better value may lie {past} it: widen the range (to {_shown(to)}, "
                f"say), then narrow it around the best")


def crowded_ends(space: Space, trials: Sequence[optuna.trial.FrozenTrial],
                 direction: str) -> list[CrowdedEnd]:
    """The ranges of `space` at one end of which the best trial sits, with the best
    tenth of the trials that set it (at least 3; all but a fifth of them) near that
    end: a single best value at an end can be chance, and random search puts a
    tenth of its trials in the outer tenth. Only with `TRIALS_MIN` complete trials
    or more."""
    complete = [t for t in trials
                if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None
                and math.isfinite(t.value)]
    if len(complete) < TRIALS_MIN:
        return []
    ranked = sorted(complete, key=lambda t: t.value, reverse=direction == "maximize")
    found: list[CrowdedEnd] = []
    for name, param, key, path in _ranges(space):
        having = [t for t in ranked if name in t.params
                  and all(t.params.get(cond) == branch for cond, branch in path)]
        if len(having) < 3:
            continue
        top = having[:max(3, math.ceil(len(having) / TOP_SHARE))]
        # More trials tied at the best value than `top` holds: which of them are the
        # best ones is the order they ran in, not what they scored
        if sum(t.value == having[0].value for t in having) > len(top):
            continue
        end = _end(param, having[0].params[name])
        near = sum(_end(param, t.params[name], NEAR) == end for t in top)
        beyond = _beyond(param, end) if end is not None else ()
        if end is None or near < len(top) - len(top) // 5 or not beyond:
            continue
        found.append(CrowdedEnd(key, name, end, having[0].params[name], param.low, param.high,
                                beyond, dict(path)))
    return found


INT_VALUES_MIN = 5  # an int range of fewer values has its ends in most trials by chance


def _ranges(space: Space) -> Iterator[tuple[str, Float | Int, str, tuple]]:
    for name, param, key, path in walk(space):
        if isinstance(param, Float) and param.high > param.low or isinstance(param, Int) \
                and (param.high - param.low) // param.step + 1 >= INT_VALUES_MIN:
            yield name, param, key, path


def _end(param: Float | Int, value: Any, edge: float = EDGE) -> str | None:
    """Which end of the range `value` sits at (within `edge` of it), or None."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    scale = math.log if param.log else (lambda v: v)
    if param.log and value <= 0:
        return None
    at = (scale(value) - scale(param.low)) / (scale(param.high) - scale(param.low))
    return "low" if at <= edge else "high" if at >= 1 - edge else None


def _beyond(param: Float | Int, end: str) -> tuple[float | int, ...]:
    """Values past `end`, the farthest first: half or twice it on a log range, a
    quarter of the width past it on a linear one, then halfway there (a momentum
    can reach 0.95, not 1.0). A range of positive values stays positive (a width,
    a learning rate: half the low end rather than below 0); an int, a whole number
    of steps, and not the end itself."""
    at = param.low if end == "low" else param.high
    if param.log:
        far = at / 2 if end == "low" else at * 2
    else:
        far = at - (param.high - param.low) / 4 if end == "low" else \
            at + (param.high - param.low) / 4
        if param.low > 0 >= far:
            far = at / 2
        elif param.high < 0 <= far:
            far = at / 2
    values = [far, (at + far) / 2]
    if isinstance(param, Int):
        step = param.step
        values = [at + round((v - at) / step) * step for v in values]
        floor = 1 if param.low >= 1 else 0 if param.low >= 0 else None
        values = [int(v) for v in values if v != at and (floor is None or v >= floor)]
    return tuple(dict.fromkeys(values))


def _shown(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def crowded_end_notes(cfg: Any, trials: Sequence[optuna.trial.FrozenTrial]) -> list[str]:
    """Notes, after a single-objective study's trials, of the ranges whose end the
    best trials crowd against and that can be widened there: a value past the end
    is one the hyperparameter takes (not a dropout below 0, nor a depth of 0)."""
    if len(cfg.search.objectives) != 1:
        return []
    from hypersweep.models.errors import UserError
    from hypersweep.models.train import check_space_values
    from hypersweep.spaces import parse_space

    notes = []
    for end in crowded_ends(parse_space(cfg.space), trials, cfg.search.objectives[0].direction):
        for to in end.beyond:       # the farthest value the hyperparameter takes
            try:
                check_space_values(cfg.model, cfg.data.model_dump(), cfg.params,
                                   [(end.name, end.key, to, end.branch)])
            except UserError:
                continue
            notes.append(end.note(to))
            break
    return notes
