"""The files a study's trials read besides its config: a model of its own
(`model: nets.py:small_cnn`) and a data file or folder (`data.options.path`,
`data.options.root`). Their digests are kept with the study (the Optuna study's
`sources`, the parent run's `source.*` tags), so that a resume or a replay says
when one changed since: its trials would then train on other code or data than
the trials before, without a word."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

from hypersweep.models.registry import own_file

WHAT = {"model": "the model's file", "data.options.path": "the data file",
        "data.options.root": "the data folder"}


def source_digests(model: str, data: Mapping[str, Any]) -> dict[str, str]:
    """{key: sha256} of the model's own file and the data's file or folder (a
    folder by its files' names and sizes: reading every image again would cost
    what loading them does)."""
    out = {}
    file = own_file(model)
    if file is not None and Path(file).is_file():
        out["model"] = _file_digest(Path(file))
    # The config's form ({name, options: {path}}) or a trial.yaml's, flat ({name, path})
    options = {**{k: v for k, v in data.items() if k != "options"}, **(data.get("options") or {})}
    for key in ("path", "root"):
        given = options.get(key)
        if isinstance(given, str) and given:
            path = Path(given).expanduser()
            if path.is_file():
                out[f"data.options.{key}"] = _file_digest(path)
            elif path.is_dir():
                out[f"data.options.{key}"] = _folder_digest(path)
    return out


def changed(stored: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """A line for each source whose digest is not the one kept with the study."""
    return [f"{key}: {WHAT.get(key, key)} changed since the study's first trials; they "
            "trained on the earlier one" for key, digest in stored.items()
            if now.get(key) != digest]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _folder_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            # The name's bytes as the file system has them: a name that is not UTF-8
            # (b"bad\xff.png") too, which Python holds as lone surrogates.
            name = os.fsencode(p.relative_to(root).as_posix())
            h.update(name + f"\0{p.stat().st_size}\n".encode())
    return h.hexdigest()
