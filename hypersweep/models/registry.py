"""Builder registry, the timm way: `@register("mlp")` on a function with typed
keyword arguments that returns an `nn.Module`.

Every builder takes two data-derived keywords, `input_shape` and `n_outputs`,
which the training code supplies from the dataset; every other keyword is a
hyperparameter that a study may fix or search.

A study may name a builder of its own, `FILE.py:FUNCTION` or `MODULE:FUNCTION` (an
importable module), written the same way: it is loaded where it is used (the
driver and each worker), and fits the task the dataset poses as the supervised
builders do.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
import traceback
import typing
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from hypersweep.models.errors import ExitInModel, UserError, first_line, given, unknown

DATA_KWARGS = ("input_shape", "n_outputs")


@dataclass(frozen=True)
class HParam:
    """One hyperparameter as a study sees it."""

    name: str
    type: Any                 # python type or typing.Literal[...]
    default: Any
    choices: tuple | None = None   # the Literal values, when the type is a Literal
    inferred: bool = False         # no type hint: the type is the default's

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
        if isinstance(self.fn, type):     # its own, not torch's nn.Module docstring
            return inspect.cleandoc(vars(self.fn).get("__doc__") or "")
        return inspect.getdoc(self.fn) or ""

    def hyperparameters(self) -> dict[str, HParam]:
        return hparams_of(self.fn, skip=DATA_KWARGS)

    def build(self, **kwargs: Any) -> Any:
        try:
            return self.fn(**kwargs)
        except SystemExit as e:
            raise ExitInModel.of(e) from None


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
    if name in _REGISTRY:
        return _REGISTRY[name]
    if isinstance(name, str) and ":" in name:
        return _own_builder(name, key)
    if isinstance(name, str) and _names_a_file(name):
        raise UserError(f"{key}: '{name}' names a file; add the function that builds the net: "
                        f"{name}:FUNCTION")
    raise unknown("builder", name, _REGISTRY, key=key)


OWN = "FILE.py:FUNCTION or MODULE:FUNCTION"
_OWN: dict[str, Builder] = {}


def is_own(name: str) -> bool:
    """Whether `name` names a builder of the study's own (`nets.py:small_cnn`)."""
    return ":" in name


def own_file(name: str) -> str | None:
    """The file part of a `FILE.py:FUNCTION` builder name, else None."""
    where = name.rpartition(":")[0]
    return where if _names_a_file(where) else None


def _names_a_file(where: str) -> bool:
    """`nets.py`, `models/nets`: a file, where `nets` alone is a module's name."""
    return where.endswith(".py") or "/" in where


def _own_builder(name: str, key: str) -> Builder:
    """A builder of the study's own, loaded once per process."""
    if name in _OWN:
        return _OWN[name]
    where, _, attr = name.rpartition(":")
    if not where or not attr.isidentifier():
        raise UserError(f"{key}: '{name}' is neither a builder nor {OWN}")
    module = _own_module(where, key)
    fn = getattr(module, attr, None)
    if fn is None:
        mine = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                and getattr(v, "__module__", None) == module.__name__]
        raise unknown("function", attr, mine, key=f"{key}: {where}")
    if not callable(fn):
        raise UserError(f"{key}: {where}:{attr} is not a function (a value of type "
                        f"{type(fn).__name__})")
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        raise UserError(f"{key}: {where}:{attr} has no signature to read") from None
    missing = [k for k in DATA_KWARGS if k not in params]
    if missing:
        raise UserError(f"{key}: {attr} must take the keyword arguments input_shape (one "
                        "sample's shape) and n_outputs (the classes, or targets), as every "
                        f"builder does; it lacks {' and '.join(missing)}")
    try:
        own = hparams_of(fn, skip=DATA_KWARGS)
    except TypeError as e:
        raise UserError(f"{key}: {where}:{attr}: {first_line(e)}, which a study that does "
                        "not set it takes") from None
    except NameError as e:      # a type hint that does not resolve
        raise UserError(f"{key}: {where}:{attr}: a type hint does not resolve: "
                        f"{first_line(e)}") from None
    from hypersweep.models.train import training_hparams     # imports this module
    clash = [k for k in own if k in training_hparams()]
    if clash:
        what = "the names of training options" if len(clash) > 1 else \
            "the name of a training option"
        raise UserError(f"{key}: {where}:{attr} takes {', '.join(clash)}, {what} that "
                        f"hypersweep's loop sets (params.{clash[0]} is the loop's); rename "
                        f"{'them' if len(clash) > 1 else 'it'} in the builder "
                        f"(model_{clash[0]}, say)")
    builder = Builder(name, fn, "classification", "own")
    _OWN[name] = builder
    return builder


def _own_module(where: str, key: str) -> Any:
    file = where if _names_a_file(where) else None
    try:
        if file is None:
            return importlib.import_module(where)
        path = Path(file).expanduser()
        if not path.is_file():
            raise UserError(f"{key}: {path}: no such file ({OWN})")
        # A name of its own per file, registered, so that the classes it defines
        # pickle and their tracebacks name the file.
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        module_name = f"hypersweep_own_{digest}"
        if module_name in sys.modules:
            return sys.modules[module_name]
        # Its folder first on the path, as `python FILE.py` has it: the file may
        # import the modules beside it.
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise UserError(f"{key}: {path}: not a Python file ({OWN})")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module
    except UserError:
        raise
    except ModuleNotFoundError as e:
        if file is None and e.name is not None and where.startswith(e.name):
            here = Path(where.replace(".", "/") + ".py")
            hint = f"give the file: {here}:FUNCTION" if here.is_file() else \
                "give the file (FILE.py:FUNCTION), or put its folder on PYTHONPATH"
            raise UserError(f"{key}: no module named '{where}' here; {hint}") from None
        raise UserError(f"{key}: {where} fails to import: {first_line(e)}") from None
    except SystemExit as e:     # sys.exit or argparse at the top of a script
        argparse = any(f.filename.endswith("argparse.py")
                       for f in traceback.extract_tb(e.__traceback__))
        why = " (an argparse that read hypersweep's own command line)" if argparse else ""
        raise UserError(f"{key}: {where} exits as it is imported: sys.exit({e.code!r}){why}; "
                        "a model file is imported, not run: put its script code under "
                        "`if __name__ == \"__main__\":`") from None
    except Exception as e:      # noqa: BLE001 - the user's module, failing as it loads
        raise UserError(f"{key}: {where} fails to import: {type(e).__name__}: "
                        f"{first_line(e)}") from None


def builder_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def hparams_of(fn: Callable, skip: tuple[str, ...] = ()) -> dict[str, HParam]:
    """Typed keyword arguments of `fn` (or of a class: a dataclass's fields, another
    class's __init__) as HParams."""
    return dict(_hparams_of(fn, skip))


@functools.lru_cache(maxsize=None)
def _hparams_of(fn: Callable, skip: tuple[str, ...]) -> tuple[tuple[str, HParam], ...]:
    # Read once per function: a signature's type hints cost a tenth of a millisecond,
    # and each value a space names is checked through them (20,000 choices: 40 s).
    plain_class = isinstance(fn, type) and not dataclasses.is_dataclass(fn)
    hints = typing.get_type_hints(fn.__init__ if plain_class else fn)
    out: dict[str, HParam] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name in skip or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"hyperparameter '{p.name}' of {fn.__name__} needs a default")
        # No type hint (code moved over from a script): the default's type, where it
        # is a plain one. Any took every value, and a width searched as a float
        # failed every trial inside torch.
        inferred = p.name not in hints and type(p.default) in (bool, int, float, str)
        tp = type(p.default) if inferred else hints.get(p.name, Any)
        choices = tuple(typing.get_args(tp)) if typing.get_origin(tp) is typing.Literal else None
        out[p.name] = HParam(p.name, tp, p.default, choices, inferred)
    return tuple(out.items())


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
            if not math.isfinite(value):    # `v > 0` holds for inf: every trial went NaN
                raise UserError(f"{key}: must be a finite number, got {value}")
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
    why = (f" (no type hint on {hp.name}: its default, {hp.default!r}, says so; annotate "
           f"it in the builder to take others)" if hp.inferred else "")
    raise UserError(f"{key}: expected {hp.type_name if hp.choices else _tname(tp)}{why}, "
                    f"got {given(value)}")


# A YAML value's kind in the words a config's own keys use (search.config): the
# user wrote YAML, not Python's `int` and `str`.
_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _tname(tp: Any) -> str:
    # Plain classes in words; generic and optional types by their full spelling.
    if isinstance(tp, type) and not typing.get_args(tp):
        return _KINDS.get(tp, tp.__name__)
    return str(tp).replace("typing.", "").replace("NoneType", "None")


def _load_builtin() -> None:
    # Importing the family modules runs their @register decorators.
    import hypersweep.models.catalogue  # noqa: F401
