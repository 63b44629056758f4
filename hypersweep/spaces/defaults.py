"""Default search spaces: `spaces/defaults/<builder>.yaml`, in the study-config
`space:` language. A study that names a builder and no space searches its default."""
from __future__ import annotations

import copy
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


@lru_cache(maxsize=None)
def _raw(builder: str) -> dict[str, Any] | None:
    path = resources.files("hypersweep.spaces").joinpath("defaults", f"{builder}.yaml")
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text()) or {}


def default_space(builder: str) -> dict[str, Any]:
    """The raw default space of a builder (a fresh copy), or {} when it has none."""
    raw = _raw(builder)
    return copy.deepcopy(raw) if raw else {}     # in file order, as written


def builders_with_defaults() -> list[str]:
    folder = resources.files("hypersweep.spaces").joinpath("defaults")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
