"""SQLite stores in write-ahead-log mode.

Both stores (Optuna's RDB storage and MLflow's SQLAlchemy store) are SQLite files
by default, written by the study driver while `hypersweep ui`, `hypersweep studies`
or a second study read them. In WAL mode readers never block the writer and a
commit costs an append instead of a rewrite of the journal; `synchronous=NORMAL`
is SQLite's recommended pairing (a power cut may lose the last commits, never
corrupt the file). Importing this module turns it on for every SQLite connection
SQLAlchemy opens in this process, and keeps track of the engines, so that
`close_all` can close them before a process ends without the interpreter's
teardown (`search.exit.exit_now`).
"""
from __future__ import annotations

import os
import sqlite3
import weakref
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine

from hypersweep.models.errors import StoreFileGone


@event.listens_for(Engine, "connect")
def _wal(dbapi_connection, _record) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    try:
        # In-memory databases answer "memory" and stay as they are.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


_ENGINES: "weakref.WeakSet[Engine]" = weakref.WeakSet()


@event.listens_for(Engine, "engine_connect")
def _remember(connection, *_) -> None:
    if connection.engine.dialect.name == "sqlite":
        _ENGINES.add(connection.engine)


def close_all() -> None:
    """Close every SQLite database this process opened through SQLAlchemy: the last
    connection to close folds the write-ahead log back into the file, as it does
    when the interpreter tears down."""
    for engine in list(_ENGINES):
        engine.dispose()


WATCHED = {"mlflow": "the MLflow store's file", "optuna": "the Optuna storage's file"}


class FileWatch:
    """The file a store's path named when a study opened it, to tell when the path
    no longer names it (`rm optuna.db`, `mv`, a copy put in its place): else the
    study runs on, exits 0, and what it wrote since is gone with the file."""

    def __init__(self, db: Path) -> None:
        self.db = Path(os.path.abspath(db))
        self._id = _identity(self.db)

    def check(self, what: str) -> None:
        """Raise StoreFileGone, saying `what` the file is (e.g. "the MLflow store's
        file"), when the path no longer names the file it named at first."""
        now = _identity(self.db)
        if self._id is None:        # made by the store's first write, after the watch
            self._id = now
            return
        if now != self._id:
            how = "deleted or moved" if now is None else "replaced by another file"
            kept = self._set_aside()
            log = (f"; its write-ahead log, the writes since the last checkpoint, is kept as "
                   f"{kept.name} (beside a moved file, named as the file with -wal, SQLite "
                   "reads it back)") if kept else ""
            raise StoreFileGone(f"{what} {self.db} was {how} while the study ran; what the "
                                f"study wrote to it from then on is lost with it{log}")

    def _set_aside(self) -> Path | None:
        """The gone file's write-ahead log and its index, left at its path, are
        taken away: a new store made there (or the file put in its place) read that
        log as its own, and the deleted study came back in it. The log, which holds
        writes, is kept under another name (returned); the index is rebuilt."""
        wal, shm = Path(f"{self.db}-wal"), Path(f"{self.db}-shm")
        kept = None
        try:
            if wal.is_file() and wal.stat().st_size:
                kept = wal.with_name(f"{wal.name}.orphaned")
                os.replace(wal, kept)
            else:
                wal.unlink(missing_ok=True)
            shm.unlink(missing_ok=True)
        except OSError:         # a directory gone or read-only: nothing to set aside
            return None
        return kept


def _identity(db: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(db)
    except OSError:
        return None
    return st.st_dev, st.st_ino


_READ_ONLY: set[str] = set()    # database files this process only reads, by absolute path


def read_only(db: Path) -> None:
    """Open `db` read-only from here on (`reading_uri`), whatever URL names it."""
    _READ_ONLY.add(os.path.abspath(db))


def reading_uri(db: Path) -> str:
    """SQLite's URI that opens `db` to read only. SQLite reads a write-ahead-log file
    by way of an index beside it (`-shm`) and creates that index when it is missing,
    which a directory this process cannot write refuses: there the file is read as
    it is (`immutable`), unless a study writes to it now, whose index is then there
    to read by. A log left with no index (a study killed, the files copied without
    it) holds the last commits: the file and its log are read from a copy, where
    SQLite can index the log."""
    where = Path(os.path.abspath(db))
    if os.access(where.parent, os.W_OK) or Path(f"{where}-shm").exists():
        return f"{where.as_uri()}?mode=ro"
    log = Path(f"{where}-wal")
    if log.is_file() and log.stat().st_size:
        return f"{_copy_with_log(where, log).as_uri()}?mode=ro"
    return f"{where.as_uri()}?immutable=1"


_COPIES: dict[str, Path] = {}


def _copy_with_log(db: Path, log: Path) -> Path:
    """A copy of `db` and its write-ahead log in a directory of this process's, made
    once per process and removed when it ends."""
    import atexit
    import shutil
    import tempfile

    if str(db) not in _COPIES:
        folder = tempfile.mkdtemp(prefix="hypersweep-read-")
        atexit.register(shutil.rmtree, folder, True)
        shutil.copyfile(db, Path(folder, db.name))
        shutil.copyfile(log, Path(folder, f"{db.name}-wal"))
        _COPIES[str(db)] = Path(folder, db.name)
    return _COPIES[str(db)]


@event.listens_for(Engine, "do_connect")
def _read_only(dialect, _record, cargs, cparams) -> None:
    """Connects to a file `read_only` named through `reading_uri`: Optuna and MLflow
    take the store's usual URL (MLflow makes directories from its path)."""
    if dialect.name == "sqlite" and cargs and isinstance(cargs[0], str) \
            and not cparams.get("uri") and os.path.abspath(cargs[0]) in _READ_ONLY:
        cargs[0] = reading_uri(Path(cargs[0]))
        cparams["uri"] = True
