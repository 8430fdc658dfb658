"""The SQL statements an engine runs: how a test tells what a read did (or that it read nothing)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import event
from sqlalchemy.engine import Engine


@contextmanager
def statements_run(engine: Engine) -> Iterator[list[str]]:
    """The statements `engine` runs inside the block, filled in as they run (a test may clear the
    list between two requests); nothing is recorded once the block ends."""
    ran: list[str] = []

    def record(conn, cursor, statement, *rest) -> None:
        ran.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield ran
    finally:
        event.remove(engine, "before_cursor_execute", record)
