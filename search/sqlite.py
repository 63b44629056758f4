"""SQLite stores in write-ahead-log mode.

Both stores (Optuna's RDB storage and MLflow's SQLAlchemy store) are SQLite files
by default, written by the study driver while `hypersweep ui`, `hypersweep studies`
or a second study read them. In WAL mode readers never block the writer and a
commit costs an append instead of a rewrite of the journal; `synchronous=NORMAL`
is SQLite's recommended pairing (a power cut may lose the last commits, never
corrupt the file). Importing this module turns it on for every SQLite connection
SQLAlchemy opens in this process.
"""
from __future__ import annotations

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine


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
