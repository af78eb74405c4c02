"""Small database helpers shared by the stores: opening an engine (a SQLite file, or any SQLAlchemy URL:
PostgreSQL for a cluster), adding columns to old files in place."""

from __future__ import annotations

from pathlib import Path

import time

from sqlalchemy import Engine, MetaData, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError


def open_engine(target: str | Path, wal: bool = False) -> Engine:
    """An engine for a SQLite file (a Path, or a str without "://") or a SQLAlchemy URL.

    SQLite waits up to 30 s for another process's write (several processes share the files); wal: the
    file in WAL mode (readers do not wait for writers). PostgreSQL sessions run in UTC, as the stores keep
    naive UTC datetimes."""
    if isinstance(target, Path) or "://" not in str(target):
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        target = f"sqlite:///{path}"
    try:
        url = make_url(str(target))
    except Exception as err:  # noqa: BLE001 - SQLAlchemy raises ArgumentError or ValueError here
        raise ValueError(f"not a database URL: {target!r} ({err}); use sqlite:///PATH or "
                         "postgresql+psycopg://USER:PASSWORD@HOST/DB") from None
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30})
        if wal:
            event.listen(engine, "connect", _sqlite_wal)
        return engine
    if url.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, connect_args={"options": "-c timezone=utc"})
    return create_engine(url, pool_pre_ping=True)


def _sqlite_wal(dbapi_connection, _record, tries: int = 100) -> None:
    """WAL mode (kept in the file, so only its first opener switches it) and synchronous=NORMAL. Switching
    needs the file to itself, and SQLite answers "database is locked" at once, without its busy wait,
    while another process holds a lock: processes opening one new file together (two `serve` processes)
    retry for up to 10 s."""
    import sqlite3

    cur = dbapi_connection.cursor()
    for attempt in range(tries):
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == tries - 1:
                raise
            time.sleep(0.1)
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
    cur.close()


def add_missing_columns(engine: Engine, table: str, columns: dict[str, str], index: bool = False) -> list[str]:
    """Add each column of `columns` (name -> SQL type and default, e.g. "VARCHAR(64) NOT NULL DEFAULT 'local'")
    that an older database file's `table` lacks; returns the names added. SQLite fills the default into
    every existing row, so old rows keep working without a rewrite. index: also an index on each added
    column, named as SQLAlchemy names `index=True` columns (ix_TABLE_COLUMN)."""
    have = {c["name"] for c in inspect(engine).get_columns(table)}
    added = []
    with engine.begin() as conn:
        for name, ddl in columns.items():
            if name not in have:
                conn.execute(text(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {ddl}'))
                if index:
                    conn.execute(text(f'CREATE INDEX IF NOT EXISTS "ix_{table}_{name}" ON "{table}" ("{name}")'))
                added.append(name)
    return added


def create_tables(metadata: MetaData, engine: Engine, tries: int = 5) -> None:
    """metadata.create_all, safe when several processes open a new database at once (a cluster's API and
    workers starting together): create_all checks, then creates, so a twin may create a table in between;
    its "already exists" error means the table is there, and the check is simply run again."""
    for attempt in range(tries):
        try:
            metadata.create_all(engine)
            return
        except (OperationalError, ProgrammingError) as err:
            if "already exists" not in str(err) or attempt == tries - 1:
                raise
            time.sleep(0.05)
