"""Actions and notes on the record, stored (shared/store/tables/record.py) and read back.

`Record` works on one connection, so the notifier writes an action or a note in the same
transaction as the thread reply it queues. The read side, `actions_for` and `notes_for`,
takes an engine: the metric page, the department page and the monthly packet call them.
The rules (what may be recorded, when an owner is reminded) are shared/core/record.py's.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Iterable, Sequence

from sqlalchemy import Table, and_, or_, select, update
from sqlalchemy.engine import Connection, Engine

from shared.core.catalog import Catalog
from shared.core.record import CLOSED, OPEN, Action, Note, action_digest, note_digest
from shared.store.tables.record import FollowUpAction, MetricNote

ACTIONS: Table = FollowUpAction.__table__
NOTES: Table = MetricNote.__table__


def _insert_new(conn: Connection, table: Table, **values) -> int | None:
    """Insert unless a row with the same digest is there: the new row's id, or None."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table).values(**values).on_conflict_do_nothing(index_elements=["digest"])
    return conn.execute(stmt.returning(table.c.id)).scalar()


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite keeps timestamps as text without their offset: stored in UTC.
    return None if moment is None else moment.astimezone(timezone.utc)


def _action(row) -> Action:
    return Action(row.id, row.metric, row.department, row.owner, row.text, row.due, row.created_by, row.created_at,
                  row.alert_id, row.status, row.outcome, row.closed_at, row.closed_by, row.reminded_at,
                  row.owner_is_user)


def _note(row) -> Note:
    return Note(row.id, row.metric, row.day, row.text, row.author, row.created_at, row.public, row.alert_id)


class Record:
    """Actions and notes on one connection (the caller's transaction)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- actions

    def add_action(self, action: Action) -> tuple[Action, bool]:
        """Keep a new action; the one kept before and False when the same was recorded already."""
        digest = action_digest(action)
        new_id = _insert_new(self.conn, ACTIONS, metric=action.metric, department=action.department,
                             alert_id=action.alert_id, owner=action.owner, owner_is_user=action.owner_is_user,
                             text=action.text, due=action.due,
                             status=OPEN, created_at=_utc(action.created_at), created_by=action.created_by,
                             digest=digest)
        if new_id is not None:
            return self.action(new_id), True
        return _action(self.conn.execute(select(ACTIONS).where(ACTIONS.c.digest == digest)).one()), False

    def action(self, action_id: int, *, lock: bool = False) -> Action | None:
        query = select(ACTIONS).where(ACTIONS.c.id == action_id)
        if lock and self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = self.conn.execute(query).one_or_none()
        return None if row is None else _action(row)

    def save_closed(self, action: Action) -> bool:
        """Store the closing of an open action; False if it was closed meanwhile (nothing changed)."""
        done = self.conn.execute(update(ACTIONS).where(ACTIONS.c.id == action.id, ACTIONS.c.status == OPEN).values(
            status=CLOSED, outcome=action.outcome, closed_at=_utc(action.closed_at), closed_by=action.closed_by))
        return done.rowcount == 1

    def open_not_reminded(self, due_by: date) -> list[Action]:
        """Open actions due on or before `due_by` whose owner was never reminded, by due day."""
        rows = self.conn.execute(select(ACTIONS).where(
            ACTIONS.c.status == OPEN, ACTIONS.c.reminded_at.is_(None), ACTIONS.c.due <= due_by)
            .order_by(ACTIONS.c.due, ACTIONS.c.id))
        return [_action(row) for row in rows]

    def mark_reminded(self, action_id: int, at: datetime) -> bool:
        """Note that the owner was reminded; False if someone else did it first (so remind once)."""
        done = self.conn.execute(update(ACTIONS).where(ACTIONS.c.id == action_id, ACTIONS.c.reminded_at.is_(None))
                                 .values(reminded_at=_utc(at)))
        return done.rowcount == 1

    def actions(self, department: str | None = None, open_only: bool = False,
                metrics: Sequence[str] | None = None, catalog: Catalog | None = None) -> list[Action]:
        """Actions by due day (then as recorded): of a department (by `catalog`: see `actions_for`),
        of some metrics, open ones only."""
        query = select(ACTIONS)
        if department is not None:
            if catalog is None:
                raise TypeError("a department's actions are its metrics' in the catalog: give the catalog")
            known = [metric.id for metric in catalog.metrics]
            query = query.where(or_(
                ACTIONS.c.metric.in_([metric.id for metric in catalog.metrics_of(department)]),
                and_(ACTIONS.c.metric.notin_(known), ACTIONS.c.department == department)))
        if metrics is not None:
            query = query.where(ACTIONS.c.metric.in_(list(metrics)))
        if open_only:
            query = query.where(ACTIONS.c.status == OPEN)
        return [_action(row) for row in self.conn.execute(query.order_by(ACTIONS.c.due, ACTIONS.c.id))]

    # -- notes

    def add_note(self, note: Note) -> tuple[Note, bool]:
        """Keep a note; the one kept before and False when the same note was written already. Written
        again public, the note kept before becomes public (an internal note is published by adding it
        again with --public or the form's box ticked); written again internal, it stays as it was."""
        digest = note_digest(note)
        new_id = _insert_new(self.conn, NOTES, metric=note.metric, day=note.day, text=note.text, author=note.author,
                             public=note.public, created_at=_utc(note.created_at), alert_id=note.alert_id,
                             digest=digest)
        if new_id is None and note.public:
            self.conn.execute(update(NOTES).where(NOTES.c.digest == digest, NOTES.c.public.is_(False))
                              .values(public=True))
        row = self.conn.execute(select(NOTES).where(
            NOTES.c.id == new_id if new_id is not None else NOTES.c.digest == digest)).one()
        return _note(row), new_id is not None

    def notes(self, metric_ids: Iterable[str], start: date | None = None, end: date | None = None,
              public_only: bool = False) -> list[Note]:
        query = select(NOTES).where(NOTES.c.metric.in_(list(metric_ids)))
        if start is not None:
            query = query.where(NOTES.c.day >= start)
        if end is not None:
            query = query.where(NOTES.c.day <= end)
        if public_only:
            query = query.where(NOTES.c.public.is_(True))
        return [_note(row) for row in self.conn.execute(query.order_by(NOTES.c.day, NOTES.c.id))]


def notes_for(engine: Engine, metric_ids: Iterable[str], start: date | None = None, end: date | None = None,
              public_only: bool = False) -> list[Note]:
    """The notes on these metrics about days from `start` to `end` (inclusive, either open), by day;
    only the public ones with `public_only` (a public page)."""
    with engine.connect() as conn:
        return Record(conn).notes(metric_ids, start, end, public_only)


def actions_for(engine: Engine, department: str | None = None, open_only: bool = False,
                metrics: Sequence[str] | None = None, *, catalog: Catalog | None = None) -> list[Action]:
    """The actions of a department (every department with None), open ones only with `open_only`,
    by due day: the department page's, the weekly digest's, `cityscore action list`'s and (by its
    metrics) the monthly packet's. A department's actions are those on its metrics in `catalog` now,
    whatever department was stored when they were recorded: after a metric moves to another
    department, its open actions move with it, as its scores and alerts do. An action on a metric
    gone from the catalog stays with the department it was recorded for."""
    with engine.connect() as conn:
        return Record(conn).actions(department, open_only, metrics, catalog)


__all__ = ["Record", "actions_for", "notes_for"]
