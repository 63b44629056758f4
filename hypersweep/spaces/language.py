"""The search-space language: a study's `space:` mapping -> typed parameters.

    lr:        {loguniform: [1.0e-4, 1.0e-1]}       -> Float(1e-4, 0.1, log=True)
    width:     {int: [16, 128], step: 16}           -> Int(16, 128, step=16)
    act:       {choice: [relu, tanh]}               -> Categorical(("relu", "tanh"))
    optimizer: {choice: {sgd: {momentum: ...}, adam: {}}}  -> Conditional(...)
    epochs:    30   or   {fixed: 30}                -> Fixed(30)

Names form one flat namespace, also inside conditional branches. Every mistake is
a one-line `UserError` naming the full key path and what would be valid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Union

from hypersweep.models.errors import UserError, given, shown, unknown

# Optuna stores exactly these categorical types in every storage backend.
Choice = Union[None, bool, int, float, str]
_CHOICE_TYPES = (bool, int, float, str, type(None))

KINDS = ("choice", "fixed", "int", "intlog", "loguniform", "uniform")
# Names other tools give these (Optuna, Ray Tune, W&B sweeps, hyperopt), for the
# did-you-mean: spelling alone takes `integer` for `intlog`.
ALIASES = {"integer": "int", "randint": "int", "int_uniform": "int", "qrandint": "int",
           "float": "uniform", "real": "uniform", "log_uniform": "loguniform",
           "log_uniform_values": "loguniform", "reciprocal": "loguniform", "lograndint": "intlog",
           "categorical": "choice", "values": "choice", "grid_search": "choice",
           "constant": "fixed", "value": "fixed"}


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    step: int = 1
    log: bool = False


@dataclass(frozen=True)
class Categorical:
    values: tuple[Choice, ...]


@dataclass(frozen=True)
class Conditional:
    """The parameter takes a branch name; that branch's sub-space is searched too."""

    branches: Mapping[Choice, Space]


@dataclass(frozen=True)
class Fixed:
    value: Any


Param = Union[Float, Int, Categorical, Conditional, Fixed]
Space = Mapping[str, Param]   # ordered: declaration order is suggest and grid order


# ---------------------------------------------------------------- parsing

def parse_space(raw: Any, key: str = "space") -> Space:
    """Parse and validate a `space:` mapping; raises a one-line UserError."""
    space = _parse_mapping(raw, key)
    _check_definitions(space, key)
    return space


def _parse_mapping(raw: Any, key: str) -> dict[str, Param]:
    if not isinstance(raw, Mapping):
        raise UserError(f"{key}: expected a mapping of name -> spec, got {shown(raw)}")
    space: dict[str, Param] = {}
    for name, spec in raw.items():
        if not isinstance(name, str) or not name:
            raise UserError(f"{key}: parameter names must be non-empty strings, got {name!r}")
        space[name] = _parse_param(spec, f"{key}.{name}")
    return space


def _parse_param(spec: Any, key: str) -> Param:
    if isinstance(spec, Mapping):
        return _parse_spec(spec, key)
    if spec is None:
        # `lr:` with nothing after it is almost always a forgotten spec.
        raise UserError(f"{key}: missing spec; write e.g. {{uniform: [0, 1]}}, "
                        f"or {{fixed: null}} to fix it to null")
    if isinstance(spec, (list, tuple)):
        raise UserError(f"{key}: a bare list is ambiguous; write {{choice: {spec!r}}} "
                        f"to search it or {{fixed: {spec!r}}} to fix it")
    return Fixed(spec)


def _parse_spec(spec: Mapping, key: str) -> Param:
    if not spec:
        raise UserError(f"{key}: empty spec; valid: {', '.join(KINDS)}, or a plain value")
    kinds = [k for k in spec if k in KINDS]
    if len(kinds) > 1:
        raise UserError(f"{key}: give exactly one distribution, got {', '.join(map(str, kinds))}")
    if not kinds:
        first = next((k for k in spec if k != "step"), "step")
        if str(first).lower() in ALIASES:        # another library's name for one of ours
            raise UserError(f"{key}: unknown distribution '{first}' (did you mean "
                            f"'{ALIASES[str(first).lower()]}'?); valid: {', '.join(KINDS)}")
        raise unknown("distribution", first, KINDS, key=key)
    kind = kinds[0]
    for extra in spec:
        if extra == kind or (kind == "int" and extra == "step"):
            continue
        if kind == "int":
            raise unknown("key", extra, ["int", "step"], key=key)
        raise UserError(f"{key}: unexpected key '{extra}' beside {kind}; "
                        f"only int takes an extra key (step)")
    return _PARSERS[kind](spec, kind, key)


def _parse_float(spec: Mapping, kind: str, key: str) -> Float:
    raw = spec[kind]
    low, high = _bounds(raw, f"{key}.{kind}", integer=False)
    _check_order(raw, low, high, key)
    if kind == "loguniform" and low <= 0:
        raise UserError(f"{key}: loguniform needs low > 0, got {raw[0]}")
    return Float(low, high, log=kind == "loguniform")


def _parse_int(spec: Mapping, kind: str, key: str) -> Int:
    raw = spec[kind]
    low, high = _bounds(raw, f"{key}.{kind}", integer=True)
    _check_order(raw, low, high, key)
    if kind == "intlog":
        if low < 1:
            raise UserError(f"{key}: intlog needs low >= 1, got {raw[0]}")
        return Int(low, high, log=True)
    written = spec.get("step", 1)
    try:
        step = _int(written)        # `16.0` too, as the range's ends take it
    except TypeError:
        step = 0
    if step < 1:
        raise UserError(f"{key}.step: expected a positive integer, got {given(written)}")
    if (high - low) % step:
        # Optuna would silently lower `high`; say so instead of searching another range.
        fit = low + (high - low) // step * step
        raise UserError(f"{key}: range {low}..{high} is not a whole number of steps of {step}; "
                        f"use high {fit} or {fit + step}")
    return Int(low, high, step=step)


def _parse_choice(spec: Mapping, kind: str, key: str) -> Categorical | Conditional:
    raw = spec[kind]
    if isinstance(raw, Mapping):
        return _parse_conditional(raw, f"{key}.{kind}")
    if not isinstance(raw, (list, tuple)):
        raise UserError(f"{key}.{kind}: expected a list of values or a mapping of branches, "
                        f"got {shown(raw)}")
    if not raw:
        raise UserError(f"{key}.{kind}: choice needs at least one value")
    for i, value in enumerate(raw):
        _check_choice_value(value, f"{key}.{kind}[{i}]")
    _check_unique(raw, f"{key}.{kind}")
    return Categorical(tuple(raw))


def _parse_conditional(raw: Mapping, key: str) -> Conditional:
    if not raw:
        raise UserError(f"{key}: choice needs at least one branch")
    branches: dict[Choice, Space] = {}
    for branch, sub in raw.items():
        _check_choice_value(branch, key)
        where = f"{key}.{branch}"
        # `adam:` with nothing after it reads naturally as "adam, no sub-space".
        branches[branch] = {} if sub is None else _parse_mapping(sub, where)
    _check_unique(list(raw), key)
    return Conditional(branches)


def _parse_fixed(spec: Mapping, kind: str, key: str) -> Fixed:
    return Fixed(spec[kind])


_PARSERS = {"uniform": _parse_float, "loguniform": _parse_float, "int": _parse_int,
            "intlog": _parse_int, "choice": _parse_choice, "fixed": _parse_fixed}


def _bounds(raw: Any, key: str, integer: bool) -> tuple[Any, Any]:
    what = "[low, high] as integers" if integer else "[low, high] as numbers"
    if not isinstance(raw, (list, tuple)) or len(raw) != 2:
        raise UserError(f"{key}: expected {what}, got {shown(raw)}")
    text = next((v for v in raw if isinstance(v, str)), None)
    if text is not None:    # a number in quotes, refused as a config's numeric keys refuse it
        raise UserError(f"{key}: expected {what}, got text {text!r}")
    try:
        pair = tuple(_int(v) if integer else _float(v) for v in raw)
    except (TypeError, ValueError):
        raise UserError(f"{key}: expected {what}, got {shown(raw)}") from None
    return pair


def _float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(v)
    out = float(v)
    if not math.isfinite(out):
        raise ValueError(v)
    return out


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise TypeError(v)
    if isinstance(v, float) and v.is_integer():   # `1.0e+3` is how YAML spells 1000.
        return int(v)
    if not isinstance(v, int):
        raise TypeError(v)
    return v


def _check_order(raw: Any, low: float, high: float, key: str) -> None:
    if not low < high:
        raise UserError(f"{key}: low ({raw[0]}) must be < high ({raw[1]})")


def _check_choice_value(value: Any, key: str) -> None:
    if not isinstance(value, _CHOICE_TYPES):
        raise UserError(f"{key}: choice values must be bool, int, float, str or null "
                        f"(what Optuna can store), got {type(value).__name__} {value!r}")


def _check_unique(values: list | tuple, key: str) -> None:
    # Optuna finds a choice by ==, so 1, 1.0 and True would be the same choice.
    # Choice values (_CHOICE_TYPES) hash as they compare: one pass over a dict finds
    # the first value equal to an earlier one, as comparing each pair did (39 s for
    # 20,000 values). NaN equals nothing, itself included: never a duplicate, though
    # a dict would find YAML's .nan (one object) by identity.
    first: dict[Any, Any] = {}
    for value in values:
        if value != value:      # NaN
            continue
        if value in first:
            earlier = first[value]
            same = "" if repr(value) == repr(earlier) else f" (equal to {earlier!r})"
            raise UserError(f"{key}: duplicate value {value!r}{same}")
        first[value] = value


# ----------------------------------------------------- one name, one meaning

_Path = tuple[tuple[str, Choice], ...]   # the (conditional, branch) choices leading here


def walk(space: Space, key: str = "space",
         path: _Path = ()) -> Iterator[tuple[str, Param, str, _Path]]:
    """Every definition, branches included: (name, param, key path, branch path)."""
    for name, param in space.items():
        where = f"{key}.{name}"
        yield name, param, where, path
        if isinstance(param, Conditional):
            for branch, sub in param.branches.items():
                yield from walk(sub, f"{where}.choice.{branch}", path + ((name, branch),))


def _exclusive(a: _Path, b: _Path) -> bool:
    """Whether two definitions sit in different branches of one conditional."""
    for (cond_a, branch_a), (cond_b, branch_b) in zip(a, b):
        if (cond_a, branch_a) != (cond_b, branch_b):
            return cond_a == cond_b
    return False


def _check_definitions(space: Space, key: str) -> None:
    """A name defined more than once must sit in branches that exclude each other,
    and be searched alike in each: Optuna keeps one distribution per name. A fixed
    value is never suggested, so branches may fix a name each their own way, or
    fix it where another branch searches it (`sgd: {momentum: 0.0}` beside
    `momentum: {momentum: {uniform: [0.5, 0.99]}}`)."""
    seen: dict[str, list[tuple[Param, str, _Path]]] = {}
    for name, param, where, path in walk(space, key):
        for first, first_where, first_path in seen.get(name, []):
            if not _exclusive(path, first_path):
                raise UserError(f"{where}: '{name}' is also defined at {first_where} and "
                                f"both can be active in one trial; define it once")
            if param != first and not (isinstance(param, Fixed) or isinstance(first, Fixed)):
                raise UserError(f"{where}: '{name}' is already searched differently at "
                                f"{first_where}; one name is one hyperparameter, searched "
                                "alike in every branch (a branch may fix it instead)")
        seen.setdefault(name, []).append((param, where, path))


# ------------------------------------------------------------------ helpers

def values_beside(space: Space, name: str, path: _Path) -> tuple[set | None, bool]:
    """The values `name` can take in a trial where the definition at branch path
    `path` is active: (the values, or None where a range searches it; whether the
    space always sets it there, else its value outside the space can hold too)."""
    branch = dict(path)
    if name in branch:
        return {branch[name]}, True
    values: set | None = set()
    always = False
    for other, param, _, other_path in walk(space):
        if other != name or _exclusive(path, other_path):
            continue
        always = always or other_path == path[:len(other_path)]
        if isinstance(param, Fixed):
            values = None if values is None else values | {param.value}
        elif isinstance(param, Categorical):
            values = None if values is None else values | set(param.values)
        elif isinstance(param, Conditional):
            values = None if values is None else values | set(param.branches)
        else:
            values = None
    return values, always


def space_values(space: Space) -> Iterator[tuple[str, str, Any, dict[str, Choice]]]:
    """Every value the space names for a hyperparameter, branches included: both
    ends of each numeric range, each choice, each fixed value (a branch's name is
    checked as a name, by `check_against`): (name, key, value, the branch values
    that lead to it)."""
    for name, param, where, path in walk(space):
        if isinstance(param, (Float, Int)):
            values: tuple = (param.low, param.high)
        elif isinstance(param, Categorical):
            values = param.values
        elif isinstance(param, Fixed):
            values = (param.value,)
        else:
            continue
        for value in values:
            yield name, where, value, dict(path)


def lowest_whole_values(space: Space,
                        branch: Mapping[str, Choice] | None = None) -> dict[str, int]:
    """The smallest whole number the space can give each name that takes whole
    numbers (an int range's low end, a choice's least integer, a fixed value) in a
    trial of `branch` ({conditional: its branch}): definitions in other branches of
    those conditionals never meet it. The values that make a model smallest, mostly."""
    lows: dict[str, int] = {}
    branch = branch or {}
    for name, param, _, path in walk(space):
        if any(cond in branch and branch[cond] != choice for cond, choice in path):
            continue
        if isinstance(param, Int):
            whole = [param.low]
        elif isinstance(param, Categorical):
            whole = [v for v in param.values if isinstance(v, int) and not isinstance(v, bool)]
        elif isinstance(param, Fixed) and isinstance(param.value, int) \
                and not isinstance(param.value, bool):
            whole = [param.value]
        else:
            continue
        if whole:
            lows[name] = min(whole + ([lows[name]] if name in lows else []))
    return lows


def trial_lows(space: Space, most: int = 256) -> list[dict[str, int]]:
    """`lowest_whole_values` for each combination of branches one trial can take
    (nested conditionals included): what a value fixed for every trial must fit
    with in each. Past `most` combinations, one entry: the lows over all
    branches (the least each name can be in any trial)."""
    combos: list[dict[str, Choice]] = [{}]
    done: list[dict[str, Choice]] = []
    while combos:
        combo = combos.pop()
        # The conditionals this combination reaches and has not chosen a branch of.
        open_ = [(name, param) for name, param, _, path in walk(space)
                 if isinstance(param, Conditional) and name not in combo
                 and all(combo.get(cond) == choice for cond, choice in path)]
        if not open_:
            done.append(combo)
            continue
        name, param = open_[0]
        combos += [{**combo, name: b} for b in param.branches]
        if len(combos) + len(done) > most:
            return [lowest_whole_values(space)]
    return [lowest_whole_values(space, combo) for combo in done]


def param_names(space: Space) -> set[str]:
    """Every name the space can set, in all branches."""
    return {name for name, _, _, _ in walk(space, "")}


def fixed_values(space: Space, key: str = "space") -> dict[_Path, dict[str, tuple[Any, str]]]:
    """The values the space sets rather than searches, by the branch path where they
    hold (`()`: in every trial), each with its key: {path: {name: (value, key)}}. A
    plain or `fixed` value, a choice of one value, a conditional of one branch (that
    branch's name): each trial that has the name takes that value, so a value that
    cannot fit the data fails them all, as it would fixed in `params`."""
    out: dict[_Path, dict[str, tuple[Any, str]]] = {}
    for name, param, where, path in walk(space, key):
        if isinstance(param, Fixed):
            value = param.value
        elif isinstance(param, Categorical) and len(param.values) == 1:
            value = param.values[0]
        elif isinstance(param, Conditional) and len(param.branches) == 1:
            value = next(iter(param.branches))
        else:
            continue
        out.setdefault(path, {})[name] = (value, where)
    return out


def to_raw(space: Space) -> dict[str, Any]:
    """The YAML form of a space; `parse_space(to_raw(s)) == s`."""
    return {name: _param_raw(p) for name, p in space.items()}


def _param_raw(p: Param) -> Any:
    if isinstance(p, Float):
        return {kind_name(p): [p.low, p.high]}
    if isinstance(p, Int):
        raw: dict[str, Any] = {kind_name(p): [p.low, p.high]}
        if p.step != 1:
            raw["step"] = p.step
        return raw
    if isinstance(p, Categorical):
        return {"choice": list(p.values)}
    if isinstance(p, Conditional):
        return {"choice": {b: to_raw(sub) for b, sub in p.branches.items()}}
    return {"fixed": p.value}


def describe(space: Space, indent: str = "") -> str:
    """One line per parameter, each branch's sub-space indented under it."""
    lines: list[str] = []
    for name, p in space.items():
        if not isinstance(p, Conditional):
            lines.append(f"{indent}{name}: {_text(p)}")
            continue
        lines.append(f"{indent}{name}: choice of {', '.join(map(str, p.branches))}")
        for branch, sub in p.branches.items():
            if sub:
                lines.append(f"{indent}  when {name}={branch}:")
                lines.append(describe(sub, indent + "    "))
    return "\n".join(lines)


def kind_name(p: Param) -> str:
    """The YAML keyword of a parameter's kind."""
    if isinstance(p, Float):
        return "loguniform" if p.log else "uniform"
    if isinstance(p, Int):
        return "intlog" if p.log else "int"
    return "fixed" if isinstance(p, Fixed) else "choice"


def _text(p: Param) -> str:
    if isinstance(p, (Float, Int)):
        step = f" step {p.step}" if isinstance(p, Int) and p.step != 1 else ""
        return f"{kind_name(p)} [{p.low}, {p.high}]{step}"
    if isinstance(p, Categorical):
        return f"choice {list(p.values)}"
    return f"fixed {p.value!r}" if isinstance(p, Fixed) else kind_name(p)
