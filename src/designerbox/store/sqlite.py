"""Small SQLite helpers shared by the stores: opening an engine, adding columns to old files in place."""

from __future__ import annotations

from sqlalchemy import Engine, inspect, text


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
