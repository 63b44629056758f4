"""New MLflow SQLite stores are copies of a saved empty store (search/store_template.py)."""
from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import pytest

from hypersweep.search import store_template
from hypersweep.search.tracking import MlflowTracker


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
    monkeypatch.setenv("HYPERSWEEP_CACHE", str(d))
    return d


def test_the_first_new_store_is_saved_empty_and_later_ones_are_copies_of_it(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)         # MLflow's default artifact root is under the cwd
    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    first.parent.mkdir()
    second.parent.mkdir()
    MlflowTracker(f"sqlite:///{first}")            # migrated by MLflow
    template = store_template.template_path("mlflow")
    assert template.parent == cache / "stores" and template.is_file()
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
    # with the mode SQLite gives a file it creates (mkstemp's was 0600)
    assert second.stat().st_mode & 0o777 == first.stat().st_mode & 0o777
    # and it takes runs like any store
    tracker.start_study("s", "study: s\n")
    assert [e.name for e in tracker.client.search_experiments()] == ["s", "Default"]


def test_an_existing_store_is_never_replaced(tmp_path: Path, cache: Path) -> None:
    db = tmp_path / "mlflow.db"
    MlflowTracker(f"sqlite:///{db}").start_study("kept", "study: kept\n")
    assert store_template.template_path("mlflow").is_file()
    assert not store_template.is_new(db)
    assert store_template.seed(db, "mlflow") is False         # even when asked to
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mlflow.db")]  # no copy left
    reopened = MlflowTracker(f"sqlite:///{db}")
    assert reopened.client.get_experiment_by_name("kept") is not None


def test_without_a_usable_cache_mlflow_creates_the_store_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory would be")
    monkeypatch.setenv("HYPERSWEEP_CACHE", str(blocker / "cache"))
    db = tmp_path / "mlflow.db"
    tracker = MlflowTracker(f"sqlite:///{db}")
    tracker.start_study("s", "study: s\n")
    assert not store_template.template_path("mlflow").exists()
    assert rows(db, "SELECT count(*) FROM experiments") == [(2,)]


def test_a_new_optuna_storage_is_a_copy_of_the_saved_empty_one(tmp_path: Path, cache: Path) -> None:
    import optuna

    from hypersweep.search.config import parse_config
    from hypersweep.search.driver import create_study

    def config(name: str) -> dict:
        d = tmp_path / name
        d.mkdir()
        return parse_config({"study": name, "model": "mlp", "space": {"lr": {"loguniform": [1e-3, 1e-1]}},
                             "tracking": {"uri": f"sqlite:///{d / 'mlflow.db'}",
                                          "storage": f"sqlite:///{d / 'optuna.db'}"}})

    first = create_study(config("a"))                   # created by Optuna
    template = store_template.template_path("optuna")
    assert template.is_file() and rows(template, "SELECT count(*) FROM studies") == [(0,)]
    second = create_study(config("b"))                  # a copy
    a, b = tmp_path / "a" / "optuna.db", tmp_path / "b" / "optuna.db"
    assert tables(b) == tables(a)
    for sql in ("SELECT * FROM alembic_version", "SELECT schema_version, library_version FROM version_info"):
        assert rows(b, sql) == rows(a, sql)
    second.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{b}")] == ["b"]
    assert len(first.trials) == 0 and len(second.trials) == 2


def test_only_sqlite_files_are_seeded() -> None:
    assert store_template.sqlite_file("sqlite:///runs/mlflow.db") == Path("runs/mlflow.db")
    assert store_template.sqlite_file("sqlite:////abs/m.db?mode=rw") == Path("/abs/m.db")
    for uri in ("sqlite:///:memory:", "http://127.0.0.1:5000", "postgresql://u@h/db",
                "file:///tmp/mlruns"):
        assert store_template.sqlite_file(uri) is None


def test_a_store_of_the_other_kind_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    """The MLflow and Optuna files sit side by side: given the MLflow file as the
    Optuna storage (or the other way round), the library added its tables to it
    and then failed on the other's schema version. Now one line, before it opens."""
    import subprocess
    import sys

    import optuna

    from hypersweep.models.errors import UserError

    mlflow_db, optuna_db, other = (tmp_path / n for n in ("mlflow.db", "optuna.db", "other.db"))
    MlflowTracker(f"sqlite:///{mlflow_db}").client.search_experiments()
    optuna.storages.RDBStorage(f"sqlite:///{optuna_db}")
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE notes (text)")
    (tmp_path / "junk.db").write_bytes(b"not a database, but not empty either" * 100)

    def tables(db: Path) -> set[str]:
        with sqlite3.connect(db) as c:
            return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    before = {db: tables(db) for db in (mlflow_db, optuna_db)}
    store_template.check_kind(f"sqlite:///{mlflow_db}", "mlflow")        # the right kinds pass
    store_template.check_kind(f"sqlite:///{optuna_db}", "optuna")
    store_template.check_kind(f"sqlite:///{tmp_path / 'new.db'}", "optuna")
    for uri, kind, message in (
            (f"sqlite:///{mlflow_db}", "optuna",
             f"tracking.storage: {mlflow_db} is an MLflow store, not an Optuna storage"),
            (f"sqlite:///{optuna_db}", "mlflow",
             f"tracking.uri: {optuna_db} is an Optuna storage, not an MLflow store"),
            (f"sqlite:///{other}", "optuna",
             f"tracking.storage: {other} is a database of other tables (notes, ...)"),
            (f"sqlite:///{tmp_path / 'junk.db'}", "mlflow",
             f"tracking.uri: {tmp_path / 'junk.db'} is not a SQLite database")):
        with pytest.raises(UserError) as e:
            store_template.check_kind(uri, kind)
        assert str(e.value).startswith(message)

    # As the commands meet it: one line, exit 2, both files as they were.
    exe = str(Path(sys.executable).with_name("hypersweep"))
    for args in (["studies", "--storage", f"sqlite:///{mlflow_db}"],
                 ["ui", "--tracking-uri", f"sqlite:///{optuna_db}"]):
        res = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        assert " is an " in res.stderr and "Traceback" not in res.stderr
    assert {db: tables(db) for db in (mlflow_db, optuna_db)} == before


def test_a_store_refused_as_the_other_kind_is_left_without_log_files(tmp_path: Path) -> None:
    """Reading a store in WAL mode (as the platform's are) by a read-only connection
    made its write-ahead log's files beside it (-wal, -shm), and left them there
    when the store was refused."""
    from hypersweep.models.errors import UserError

    db = tmp_path / "mlflow.db"
    with contextlib.closing(sqlite3.connect(db)) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.executescript("CREATE TABLE experiments (id); CREATE TABLE runs (id);")
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]
    with pytest.raises(UserError, match="is an MLflow store, not an Optuna storage"):
        store_template.check_kind(f"sqlite:///{db}", "optuna")
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]
    store_template.check_kind(f"sqlite:///{db}", "mlflow")        # nor when it passes
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"]
