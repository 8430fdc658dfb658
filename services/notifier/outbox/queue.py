"""The outbox's queue: Slack messages written inside the use case's transaction.

A message exists if and only if the change that caused it was committed, because it
is written on the same connection. Keys are unique (`board:C1:2026-07-23`,
`alert:pothole-on-time:week:3:post`), so doing the same thing twice queues nothing.
The queue also answers what the use cases and operators ask of it (was a post sent,
how many messages are in each state) and drops old charts' bytes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

import orjson
from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Connection, Engine

from shared.store.engine import utcnow
from shared.store.tables.notifier import OutboxMessage

from .. import dialect

T = OutboxMessage.__table__

# The states of a message: waiting (or retrying), in Slack, refused for good, withdrawn.
PENDING, SENT, FAILED, CANCELLED = "pending", "sent", "failed", "cancelled"
ENDED = (SENT, FAILED, CANCELLED)


def _new(key: str, kind: str, channel: str, parent_key: str | None, payload: str, now: datetime, **extra) -> dict:
    return dict(key=key, kind=kind, channel=channel, parent_key=parent_key, payload=payload, status=PENDING,
                version=1, sent_version=0, attempts=0, maybe_delivered=False, next_attempt_at=now, created_at=now,
                **extra)


class Queue:
    """The outbox on one connection: what a use case queues commits (or not) with its own change."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def post(self, key: str, channel: str, message: dict, *, parent_key: str | None = None,
             not_before: datetime | None = None) -> bool:
        """A new message (a thread reply when `parent_key` names a post); False if the key exists.

        `not_before`: held until then (quiet hours), in the city's time.
        """
        row = _new(key, "post", channel, parent_key, orjson.dumps(message).decode(), utcnow(), not_before=not_before)
        return dialect.insert_new(self.conn, T, ["key"], **row)

    def update(self, key: str, parent_key: str, message: dict) -> None:
        """Edit the parent post to `message`; a newer edit replaces an unsent older one."""
        now = utcnow()
        payload = orjson.dumps(message).decode()
        stmt = dialect.insert(self.conn, T).values(**_new(key, "update", "", parent_key, payload, now))
        self.conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={
            "payload": payload, "version": T.c.version + 1, "status": PENDING, "next_attempt_at": now},
            where=T.c.status != CANCELLED))

    def upload(self, key: str, parent_key: str | None, channel: str, filename: str, title: str, data: bytes,
               comment: str) -> bool:
        """A file (the board's chart) into the parent's thread; False if the key exists."""
        payload = orjson.dumps({"filename": filename, "title": title, "comment": comment}).decode()
        row = _new(key, "upload", channel, parent_key, payload, utcnow(), file_data=data)
        return dialect.insert_new(self.conn, T, ["key"], **row)

    def cancel_unsent(self, key: str) -> bool:
        """Withdraw a post (and what hangs on it) that has certainly not reached Slack; False otherwise."""
        now = utcnow()
        result = self.conn.execute(update(T).where(
            T.c.key == key, T.c.status == PENDING, T.c.maybe_delivered.is_(False),
            or_(T.c.lease_until.is_(None), T.c.lease_until < now)).values(status=CANCELLED).returning(T.c.id))
        if result.first() is None:
            return False
        self.conn.execute(update(T).where(T.c.parent_key == key, T.c.status == PENDING).values(status=CANCELLED))
        return True

    def has(self, key: str) -> bool:
        """Whether a message with this key was ever queued (whatever became of it)."""
        return self.conn.scalar(select(func.count()).select_from(T).where(T.c.key == key)) > 0

    def sent(self, keys: Iterable[str]) -> set[str]:
        """Those of `keys` whose message is in Slack."""
        return set(self.conn.scalars(select(T.c.key).where(T.c.key.in_(list(keys)), T.c.status == SENT)))

    def counts(self) -> dict[str, int]:
        """How many messages are in each state (every state named, 0 included)."""
        found = {status: 0 for status in (PENDING, SENT, FAILED, CANCELLED)}
        for status, count in self.conn.execute(select(T.c.status, func.count()).group_by(T.c.status)):
            found[status] = count
        return found

    def pending(self) -> list[str]:
        """The keys of the messages not delivered yet, oldest first."""
        return list(self.conn.scalars(select(T.c.key).where(T.c.status == PENDING).order_by(T.c.id)))

    def states(self, keys: Iterable[str]) -> dict[str, str]:
        """The state of each of `keys` that was queued."""
        return dict(self.conn.execute(select(T.c.key, T.c.status).where(T.c.key.in_(list(keys)))).all())

    def recent(self, limit: int = 20) -> list[dict]:
        """The newest posts (sent or not) with their text: for the scoreboard page on a laptop."""
        rows = self.conn.execute(select(T.c.key, T.c.channel, T.c.status, T.c.payload, T.c.created_at, T.c.sent_at)
                                 .where(T.c.kind == "post").order_by(T.c.id.desc()).limit(limit))
        return [{"key": row.key, "channel": row.channel, "status": row.status,
                 "text": orjson.loads(row.payload).get("text", ""), "created_at": row.created_at,
                 "sent_at": row.sent_at} for row in rows]


# Charts dropped per transaction: a board's PNG is some tens of KiB, so a chunk stays small.
FILE_DATA_CHUNK = 100


def drop_file_data(engine: Engine, ended_before: datetime, *, chunk: int = FILE_DATA_CHUNK) -> int:
    """Drop the bytes (the daily board's PNG chart) of uploads that ended before `ended_before`.

    Only uploads in a final state (sent, failed, cancelled) lose them: nothing sends or
    re-reads those bytes again (an upload's key is never queued anew). A pending upload
    keeps its chart however old, so an outage of any length still ends in delivery. The
    rows themselves stay: their unique keys are what keep a board, a recap or an alert
    reply from being queued a second time. Returns how many uploads lost their bytes.
    """
    doomed = (select(T.c.id).where(T.c.file_data.is_not(None), T.c.status.in_(ENDED),
                                   func.coalesce(T.c.sent_at, T.c.created_at) < ended_before)
              .order_by(T.c.id).limit(chunk))
    if engine.dialect.name == "postgresql":
        doomed = doomed.with_for_update(skip_locked=True)  # a second notifier takes other rows
    statement = update(T).where(T.c.id.in_(doomed)).values(file_data=None)
    dropped = 0
    while True:
        with engine.begin() as conn:  # one short transaction per chunk
            gone = conn.execute(statement).rowcount or 0
        dropped += gone
        if gone < chunk:
            return dropped
