"""A parsed space checked against the hyperparameters a builder (plus training) takes."""
from __future__ import annotations

import types
import typing
from typing import Any, Mapping

from hypersweep.models.errors import UserError, unknown
from hypersweep.models.registry import HParam, check_value
from hypersweep.spaces.language import (Categorical, Conditional, Float, Int, Param, Space,
                                        kind_name, walk)


def check_against(space: Space, hparams: Mapping[str, HParam], key: str = "space") -> None:
    """Every name is a known hyperparameter and every distribution fits its type."""
    for name, param, where, _ in walk(space, key):
        hp = hparams.get(name)
        if hp is None:
            raise unknown("hyperparameter", name, hparams, key=where)
        _check_param(hp, param, where)


def _check_param(hp: HParam, param: Param, key: str) -> None:
    if isinstance(param, (Float, Int)):
        allowed = _numeric_kinds(hp)
        if not isinstance(param, allowed):
            advice = "int or intlog" if allowed == (Int,) else "choice or fixed"
            why = (f" (no type hint: its default, {hp.default!r}, says so; annotate it "
                   f"`{hp.name}: float = {float(hp.default)!r}` to search floats)"
                   if hp.inferred and hp.type is int else "")
            raise UserError(f"{key}: {hp.name} is {_type_name(hp)}{why}; "
                            f"use {advice}, not {kind_name(param)}")
    elif isinstance(param, Categorical):
        for value in param.values:
            check_value(hp, value, key)
    elif isinstance(param, Conditional):
        for branch in param.branches:    # the branch names are the values it takes
            check_value(hp, branch, key)
    else:
        check_value(hp, param.value, key)


def _numeric_kinds(hp: HParam) -> tuple[type, ...]:
    """Which numeric distributions a hyperparameter's type accepts."""
    if hp.choices is not None:       # a Literal lists its values: search them by choice
        return ()
    if hp.type is Any:
        return (Float, Int)
    args = _union_args(hp.type) - {bool}
    if float in args:                # an int distribution on a float is still a float
        return (Float, Int)
    if int in args:
        return (Int,)
    return ()


def _union_args(tp: Any) -> set[Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return set(typing.get_args(tp))
    return {tp}


def _type_name(hp: HParam) -> str:
    if hp.choices is not None:
        return hp.type_name
    if typing.get_origin(hp.type) is None and hasattr(hp.type, "__name__"):
        return hp.type.__name__
    return str(hp.type).replace("typing.", "")   # Optional[str], tuple[int, ...]
