"""Builder registry, the timm way: `@register("mlp")` on a function with typed
keyword arguments that returns an `nn.Module`.

Every builder takes two data-derived keywords, `input_shape` and `n_outputs`,
which the training code supplies from the dataset; every other keyword is a
hyperparameter that a study may fix or search.
"""
from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from models.errors import UserError, unknown

DATA_KWARGS = ("input_shape", "n_outputs")


@dataclass(frozen=True)
class HParam:
    """One hyperparameter as a study sees it."""

    name: str
    type: Any                 # python type or typing.Literal[...]
    default: Any
    choices: tuple | None = None   # the Literal values, when the type is a Literal

    @property
    def type_name(self) -> str:
        if self.choices is not None:
            return " | ".join(repr(c) for c in self.choices)
        return getattr(self.type, "__name__", str(self.type))


@dataclass(frozen=True)
class Builder:
    name: str
    fn: Callable[..., Any]
    task: str
    family: str
    variants: tuple[str, ...] = ()
    # A hyperparameter that only some values of another one use:
    # {"sparsity": ("variant", ("sparse",))}.
    used_when: Mapping[str, tuple[str, tuple[Any, ...]]] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fn) or ""

    def hyperparameters(self) -> dict[str, HParam]:
        return hparams_of(self.fn, skip=DATA_KWARGS)

    def build(self, **kwargs: Any) -> Any:
        return self.fn(**kwargs)


_REGISTRY: dict[str, Builder] = {}


def register(name: str, *, task: str = "classification", family: str | None = None,
             variants: tuple[str, ...] = (),
             used_when: Mapping[str, tuple[str, tuple[Any, ...]]] | None = None,
             ) -> Callable[[Callable], Callable]:
    def decorate(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"builder '{name}' is already registered")
        _REGISTRY[name] = Builder(name, fn, task, family or name, variants, dict(used_when or {}))
        return fn
    return decorate


def get_builder(name: str, key: str = "model") -> Builder:
    """The builder registered as `name`; else a one-line error naming `key` (the
    config's `model`, or the argument a command took it from)."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise unknown("builder", name, _REGISTRY, key=key) from None


def builder_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def hparams_of(fn: Callable, skip: tuple[str, ...] = ()) -> dict[str, HParam]:
    """Typed keyword arguments of `fn` (or of a dataclass) as HParams."""
    hints = typing.get_type_hints(fn)
    out: dict[str, HParam] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name in skip or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"hyperparameter '{p.name}' of {fn.__name__} needs a default")
        tp = hints.get(p.name, Any)
        choices = tuple(typing.get_args(tp)) if typing.get_origin(tp) is typing.Literal else None
        out[p.name] = HParam(p.name, tp, p.default, choices)
    return out


def check_value(hp: HParam, value: Any, key: str) -> Any:
    """Coerce a YAML value to the hyperparameter's type, or raise a one-line UserError."""
    if hp.choices is not None:
        if value not in hp.choices:
            raise unknown("value", value, hp.choices, key=key)
        return value
    tp = hp.type
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        origin = typing.get_origin(tp)
        if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
            args = typing.get_args(tp)
            if value is None and type(None) in args:
                return None
            for a in args:
                if a is type(None):
                    continue
                try:
                    return check_value(HParam(hp.name, a, hp.default), value, key)
                except UserError:
                    pass
        else:
            return value
    raise UserError(f"{key}: expected {hp.type_name if hp.choices else _tname(tp)}, "
                    f"got {type(value).__name__} {value!r}")


def _tname(tp: Any) -> str:
    # Plain classes read as `int`; generic and optional types by their full spelling.
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("NoneType", "None")


def _load_builtin() -> None:
    # Importing the family modules runs their @register decorators.
    import models.catalogue  # noqa: F401
