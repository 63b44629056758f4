"""New SQLite stores start as a copy of an empty one.

Opening a SQLite file that does not exist yet makes MLflow create every table and
then run its whole chain of schema migrations (about 0.7 s), and Optuna create its
tables and stamp their version (about 0.2 s), for every new study directory and
every test. The result is the same file each time for one library version, so the
first new store of each kind is also saved, empty, as a template in the cache
directory, and later new stores are copies of it. An MLflow template is saved
without its Default experiment: MLflow adds that to each store it opens without
one, with this store's artifact location and the current time, exactly as in a
store it migrated.

Templates are keyed by the library's version and kept in `$HYPERSWEEP_CACHE/stores`
(default `~/.cache/hypersweep/stores`). Anything that goes wrong here (no cache
directory, a read-only disk) leaves the library to create the store as usual.
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Iterator

# kind -> (a query that counts what an empty store must not hold, what to remove
# from a new store before it is saved)
_EMPTY = {
    "mlflow": ("SELECT count(*) FROM experiments WHERE experiment_id != 0",
               "DELETE FROM experiments WHERE experiment_id = 0"),
    "optuna": ("SELECT count(*) FROM studies", None),
}


def cache_dir() -> Path:
    root = os.environ.get("HYPERSWEEP_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "hypersweep") / "stores"


def cannot_open(key: str, url: str, e: BaseException) -> Exception:
    """`KEY: cannot open URL: why` as a UserError; a database driver that is not
    installed is named, with the package that brings it (Optuna says only "Failed
    to import DB access module")."""
    from hypersweep.models.errors import UserError, first_line
    from hypersweep.search.config import without_password

    db = sqlite_file(url)
    if db is not None:
        check_writable(db, key)     # the clearer reason, where it is the reason
    why, cause = first_line(e), e
    while cause is not None and not isinstance(cause, ModuleNotFoundError):
        if type(cause).__name__ == "OperationalError":  # the database's own reason, not
            why = first_line(cause)                     # Optuna's wrapper around it
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        from hypersweep.search.config import missing_driver
        why = missing_driver(cause.name)
    return UserError(f"{key}: cannot open {without_password(url)!r}: {why}")


def template_path(kind: str) -> Path:
    """Where the empty `kind` store ("mlflow" or "optuna") of the installed version is kept."""
    version = __import__(kind).__version__
    return cache_dir() / f"{kind}-{version}-empty.db"


# kind -> (its config key, the tables that mark a store of that kind)
_MARKS = {"optuna": ("tracking.storage", {"studies", "version_info"}),
          "mlflow": ("tracking.uri", {"experiments", "runs"})}
_NAMES = {"optuna": "an Optuna storage", "mlflow": "an MLflow store"}


def check_kind(uri: str, kind: str, key: str | None = None) -> None:
    """A one-line error when `uri` is an existing SQLite file, or a database on a
    server (PostgreSQL, MySQL, ...), that holds the other kind of store: the library
    would add its tables beside the other's (both keep their schema's version in one
    `alembic_version` table) and then fail on it, the database changed for good."""
    from hypersweep.models.errors import UserError

    db = sqlite_file(uri)
    if db is None:
        _check_server_database(uri, kind, key)
        return
    if is_new(db):
        return
    from hypersweep.search.sqlite import reading_uri
    where = db.absolute()
    # Where SQLite can write beside the file and no one reads it by its log now, a
    # connection that may write (it reads only): closing it, the last one, removes the
    # log's files that reading a store in WAL mode makes; a read-only one left them.
    log_files = os.access(where.parent, os.W_OK) and not Path(f"{where}-shm").exists()
    look = f"{where.as_uri()}?mode=rw" if log_files else reading_uri(db)
    try:
        with contextlib.closing(sqlite3.connect(look, uri=True)) as c:
            tables = {row[0] for row in
                      c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as e:
        key = key or _MARKS[kind][0]
        check_writable(db, key)     # SQLite writes beside the file (its WAL) even to read
        raise UserError(f"{key}: {db.absolute()} is not a SQLite database ({e})") from None
    named, marks = _MARKS[kind]
    key = key or named
    if not tables or marks <= tables:
        return
    other = _other_kind(tables, kind)
    what = (_NAMES[other] if other
            else f"a database of other tables ({', '.join(sorted(tables)[:4])}, ...)")
    default = "sqlite:///optuna.db" if kind == "optuna" else "sqlite:///mlflow.db"
    raise UserError(f"{key}: {db.absolute()} is {what}, not {_NAMES[kind]}; give the {kind} "
                    f"file ({default} by default)")


def _other_kind(tables: set[str], kind: str) -> str | None:
    return next((k for k, (_, m) in _MARKS.items() if k != kind and m <= tables), None)


# Database servers SQLAlchemy reaches by URL, as MLflow and Optuna name them.
_SERVERS = ("postgresql", "mysql", "mariadb", "mssql", "oracle")
_CHECKED: set[tuple[str, str]] = set()      # (url, kind) found fine in this process
_HOLDING: set[tuple[str, str]] = set()      # (url, kind) found holding that store


def _check_server_database(url: str, kind: str, key: str | None) -> None:
    """`check_kind` for a database on a server: one connection that lists its tables.
    A database that cannot be read now (not there, refused, no driver) is left to the
    library, which reports why; one of other tables is allowed, as a server's
    database is often shared."""
    from hypersweep.models.errors import UserError

    if url.partition("://")[0].split("+")[0] not in _SERVERS or (url, kind) in _CHECKED:
        return
    tables = _server_tables(url)
    if tables is None:
        return
    named, marks = _MARKS[kind]
    other = None if marks <= tables else _other_kind(tables, kind)
    if marks <= tables:
        _HOLDING.add((url, kind))
    if other is None:
        _CHECKED.add((url, kind))
        return
    from hypersweep.search.config import without_password
    raise UserError(f"{key or named}: {without_password(url)} holds {_NAMES[other]}, not "
                    f"{_NAMES[kind]}; give the {kind} store a database of its own (the two "
                    "cannot share one)")


def holds_no_store(url: str, kind: str) -> bool:
    """Whether `url` is a `kind` store yet to be created rather than one to read: an
    empty SQLite file, or a database on a server, reachable now, without the store's
    tables. A command that only looks a study up finds none there and leaves the
    database as it was: the library would create its schema by opening it."""
    db = sqlite_file(url)
    if db is not None:
        return db.is_file() and db.stat().st_size == 0
    if url.partition("://")[0].split("+")[0] not in _SERVERS or (url, kind) in _HOLDING:
        return False
    tables = _server_tables(url)
    if tables is None:      # not reachable now: the library says why
        return False
    if _MARKS[kind][1] <= tables:
        _HOLDING.add((url, kind))
        return False
    return True


def _server_tables(url: str) -> set[str] | None:
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.pool import NullPool
    # A host that drops the connection: the drivers' own default is the system's
    # (minutes), and the library's own attempt reports it after this one.
    dialect = url.partition("://")[0].split("+")[0]
    limit = {"connect_timeout": 5} if dialect in ("postgresql", "mysql", "mariadb") else {}
    try:
        engine = create_engine(url, poolclass=NullPool, connect_args=limit)
    except Exception:  # noqa: BLE001 - a bad URL or no driver: the library says so
        return None
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    except Exception:  # noqa: BLE001 - not reachable now: the library says so
        return None
    finally:
        engine.dispose()


@contextlib.contextmanager
def new_store(uri: str, kind: str) -> Iterator[bool]:
    """Around the code that first opens the `kind` store at `uri`: a SQLite file that
    does not exist yet starts as a copy of the template (the block is told whether
    it did: then its schema is the installed version's); one the library creates
    from nothing inside the block is saved as the template after it. A file of
    another kind is refused (`check_kind`)."""
    check_kind(uri, kind)
    db = sqlite_file(uri)
    new = is_new(db)
    if db is not None:
        check_writable(db, _MARKS[kind][0])
    seeded = new and seed(db, kind)
    yield seeded
    if new and not seeded and db.is_file():
        save(db, kind)


def check_writable(db: Path, key: str) -> None:
    """A one-line error when the directory of a SQLite store is not there or cannot
    be written: SQLite creates the file, and its journal beside it, there."""
    from hypersweep.models.errors import UserError

    where = db.absolute().parent
    if not where.is_dir():
        why = "is not a directory" if where.exists() else "does not exist"
        raise UserError(f"{key}: cannot create {db.absolute()}: {where} {why}")
    if not os.access(where, os.W_OK) or is_new(db) and not _can_create_in(where):
        what = "create" if is_new(db) else "write"
        raise UserError(f"{key}: cannot {what} {db.absolute()}: its directory is not writable "
                        f"(SQLite keeps its journal beside the file); choose another path")


def _can_create_in(where: Path) -> bool:
    """Whether a file can be made in `where`, tried (and removed): root passes
    `os.access` anywhere, also where nothing can be made (/proc, a read-only mount)."""
    import tempfile
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix=".hypersweep-probe-"):
            return True
    except OSError:
        return False


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None for other stores and in-memory ones)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def unwritable(url: str) -> Path | None:
    """The SQLite file of `url` when it holds a store in a directory this process
    cannot write (a read-only mount, a colleague's folder), where opening it as
    usual fails: SQLite writes its write-ahead log's index beside the file even to
    read. Else None."""
    db = sqlite_file(url)
    if db is None or is_new(db) or os.access(db.absolute().parent, os.W_OK):
        return None
    return db


def open_read_only(url: str) -> bool:
    """For the commands that only read a store (studies, best, export): an
    `unwritable` SQLite file is opened read-only from here on (`sqlite.read_only`).
    Whether it will be."""
    from hypersweep.search import sqlite

    db = unwritable(url)
    if db is not None:
        sqlite.read_only(db)
    return db is not None


def is_new(db: Path | None) -> bool:
    """Whether the library would create this store from nothing."""
    return db is not None and (not db.exists() or db.stat().st_size == 0)


def seed(db: Path, kind: str) -> bool:
    """Put a copy of the template at `db`, which must not exist yet; whether it did."""
    template = template_path(kind)
    if not template.is_file() or not db.parent.is_dir():
        return False
    with contextlib.suppress(FileNotFoundError):
        if db.stat().st_size == 0:      # an empty file: SQLite and MLflow take it as new
            db.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{db.name}.", dir=db.parent)
    os.close(fd)
    try:
        _copy(template, Path(tmp))
        # mkstemp's 0600: the mode SQLite gives a file it creates (0666 less the
        # umask), so that who can read a new store does not depend on the cache.
        os.chmod(tmp, 0o666 & ~_umask())
        os.link(tmp, db)                # fails if another process created it meanwhile
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return True


def _umask() -> int:
    mask = os.umask(0)      # read it the only way there is, and put it back
    os.umask(mask)
    return mask


def save(db: Path, kind: str) -> None:
    """Save the store the library has just created at `db` as the template, if it
    is empty (an MLflow store without its Default experiment)."""
    template = template_path(kind)
    if template.is_file():
        return
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{kind}-", suffix=".db", dir=template.parent)
        os.close(fd)
    except OSError:
        return
    try:
        _copy(db, Path(tmp))
        count, clear = _EMPTY[kind]
        with contextlib.closing(sqlite3.connect(tmp)) as con, con:
            if con.execute(count).fetchone()[0]:
                return                  # not an empty store after all
            if clear:
                con.execute(clear)
        os.replace(tmp, template)
    except (OSError, sqlite3.Error):
        pass
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _copy(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite database (its write-ahead log included), in
    rollback-journal mode: the stores' connections switch it to WAL when they open it."""
    with contextlib.closing(sqlite3.connect(f"file:{src}?mode=ro", uri=True)) as s, \
            contextlib.closing(sqlite3.connect(dst)) as d:
        s.backup(d)
        d.execute("PRAGMA journal_mode=DELETE")
