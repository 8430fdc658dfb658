"""INSERT … ON CONFLICT for whichever database the notifier runs on (PostgreSQL, or SQLite on a laptop)."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.engine import Connection


def insert(conn: Connection, table: Table):
    """An INSERT of `table` that takes `.on_conflict_do_nothing()` / `.on_conflict_do_update()`."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table)


def locks_rows(conn: Connection) -> bool:
    """Whether SELECT … FOR UPDATE means something here (SQLite locks the whole database on write)."""
    return conn.dialect.name == "postgresql"
