"""New MLflow SQLite stores are copies of a saved empty store (search/store_template.py)."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from search import store_template
from search.tracking import MlflowTracker


def tables(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as con:
        return dict(con.execute("SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'index')"
                                " AND name NOT LIKE 'sqlite_%'"))


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("HYPERSWEEP_CACHE_DIR", str(d))
    return d


def test_the_first_new_store_is_saved_empty_and_later_ones_are_copies_of_it(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)         # MLflow's default artifact root is under the cwd
    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    first.parent.mkdir()
    second.parent.mkdir()
    MlflowTracker(f"sqlite:///{first}")            # migrated by MLflow
    template = store_template.template_path()
    assert template.parent == cache and template.is_file()
    assert rows(template, "SELECT count(*) FROM experiments") == [(0,)]

    before_ms = time.time() * 1000
    tracker = MlflowTracker(f"sqlite:///{second}")   # a copy
    assert tables(second) == tables(first)
    assert rows(second, "SELECT version_num FROM alembic_version") == \
        rows(first, "SELECT version_num FROM alembic_version")
    # MLflow added the Default experiment to the copy, as to a store it migrated:
    # this store's location, and now.
    (one,) = rows(first, "SELECT name, artifact_location FROM experiments")
    (two,) = rows(second, "SELECT name, artifact_location, creation_time FROM experiments")
    assert two[:2] == one == ("Default", str(tmp_path / "mlruns" / "0"))
    assert two[2] >= before_ms - 1000
    # and it takes runs like any store
    tracker.start_study("s", "study: s\n")
    assert [e.name for e in tracker.client.search_experiments()] == ["s", "Default"]


def test_an_existing_store_is_never_replaced(tmp_path: Path, cache: Path) -> None:
    db = tmp_path / "mlflow.db"
    MlflowTracker(f"sqlite:///{db}").start_study("kept", "study: kept\n")
    assert store_template.template_path().is_file()
    assert not store_template.is_new(db)
    assert store_template.seed(db) is False         # even when asked to
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mlflow.db")]  # no copy left
    reopened = MlflowTracker(f"sqlite:///{db}")
    assert reopened.client.get_experiment_by_name("kept") is not None


def test_without_a_usable_cache_mlflow_creates_the_store_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory would be")
    monkeypatch.setenv("HYPERSWEEP_CACHE_DIR", str(blocker / "cache"))
    db = tmp_path / "mlflow.db"
    tracker = MlflowTracker(f"sqlite:///{db}")
    tracker.start_study("s", "study: s\n")
    assert not store_template.template_path().exists()
    assert rows(db, "SELECT count(*) FROM experiments") == [(2,)]


def test_only_sqlite_files_are_seeded() -> None:
    assert store_template.sqlite_file("sqlite:///runs/mlflow.db") == Path("runs/mlflow.db")
    assert store_template.sqlite_file("sqlite:////abs/m.db?mode=rw") == Path("/abs/m.db")
    for uri in ("sqlite:///:memory:", "http://127.0.0.1:5000", "postgresql://u@h/db",
                "file:///tmp/mlruns"):
        assert store_template.sqlite_file(uri) is None
