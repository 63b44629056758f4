from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ROOT / "studies"


@dataclass(frozen=True)
class Stores:
    dir: Path

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.dir / 'mlflow.db'}"

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.dir / 'optuna.db'}"

    def cli_args(self) -> list[str]:
        return ["--tracking-uri", self.mlflow_uri, "--storage", self.optuna_url]

    def untouched(self) -> bool:
        return not any(self.dir.iterdir())


@pytest.fixture(scope="session", autouse=True)
def _store_template_cache(tmp_path_factory: pytest.TempPathFactory):
    """The session's own cache (empty stores, search/store_template.py; scorers),
    for this process and the commands it starts, not the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HYPERSWEEP_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture
def stores(tmp_path: Path) -> Stores:
    d = tmp_path / "stores"
    d.mkdir()
    return Stores(d)


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a study config (a dict, or the text of one) and return its path."""
    def write(config: dict | str, name: str = "study.yaml") -> Path:
        p = tmp_path / name
        p.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
        return p
    return write


def quickstart() -> dict:
    return yaml.safe_load((STUDIES / "quickstart.yaml").read_text())


def study_runs(uri: str, study: str):
    """(parent run, [child runs sorted by trial number]) of a study in an MLflow store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(study)
    assert exp is not None, f"no MLflow experiment named {study}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("hypersweep.role") == "study"]
    children = [r for r in runs if r.data.tags.get("hypersweep.role") == "trial"]
    assert len(parents) == 1, f"expected one parent run, found {len(parents)}"
    children.sort(key=lambda r: int(r.data.tags["optuna.trial_number"]))
    return parents[0], children


def small_config(study: str, stores: "Stores", **search) -> dict:
    """A fast digits MLP study: 3 epochs, a small space."""
    return {
        "study": study,
        "model": "mlp",
        "data": {"name": "digits"},
        "params": {"epochs": 3, "batch_size": 128, "width": 32},
        "space": {"lr": {"loguniform": [1e-3, 1e-1]}, "depth": {"int": [1, 2]},
                  "optimizer": {"choice": {"momentum": {"momentum": {"uniform": [0.5, 0.95]}},
                                           "adam": {}}}},
        "search": {"strategy": "tpe", "trials": 4, "seed": 3, **search},
        "resources": {"executor": "serial"},    # fast in-process; Ray tests override it
        "tracking": {"uri": stores.mlflow_uri, "storage": stores.optuna_url},
    }


# The example space of DESIGN.md (conditional optimizer branches), used by the space tests.
DESIGN_SPACE = """
lr:      {loguniform: [1.0e-4, 1.0e-1]}
depth:   {int: [1, 4]}
width:   {intlog: [16, 512]}
dropout: {uniform: [0.0, 0.5]}
optimizer:
  choice:
    sgd:  {momentum: {uniform: [0.0, 0.99]}, nesterov: {choice: [true, false]}}
    adam: {beta2: {choice: [0.99, 0.999]}}
    rmsprop: {}
"""


@contextlib.contextmanager
def read_only_view(directory: Path, command: list[str]) -> Iterator[list[str]]:
    """`command`, to be run with `directory` read-only to it: in a mount namespace
    of its own, with a read-only bind mount, as root (whom file modes do not stop);
    with the directory's write bits taken away meanwhile otherwise."""
    if os.geteuid() == 0:
        mount = (f'mount --bind "{directory}" "{directory}" && '
                 f'mount -o remount,bind,ro "{directory}" && exec "$@"')
        yield ["unshare", "-m", "sh", "-c", mount, "sh", *command]
        return
    directory.chmod(0o555)
    try:
        yield command
    finally:
        directory.chmod(0o755)


def wait_for_trials(proc, storage: str, study: str, ready, timeout: float = 300) -> bool:
    """Read the study's trials every 0.2 s until `ready(trials)` holds (True), or
    the process `proc` ends or `timeout` seconds pass (False)."""
    import time

    import optuna

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            trials = optuna.load_study(study_name=study, storage=storage).trials
        except KeyError:
            continue        # the study is not created yet
        if ready(trials):
            return True
    return False
