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


def insert_new(conn: Connection, table: Table, unique: list[str], **values) -> bool:
    """Insert a row unless one with the same `unique` columns is there; whether it was new."""
    stmt = insert(conn, table).values(**values).on_conflict_do_nothing(index_elements=unique)
    return conn.execute(stmt.returning(table.c[unique[0]])).first() is not None


def locks_rows(conn: Connection) -> bool:
    """Whether SELECT … FOR UPDATE means something here (SQLite locks the whole database on write)."""
    return conn.dialect.name == "postgresql"
