"""The outbox: every Slack message is written here first, then delivered exactly once.

Writing: `enqueue_*` run inside the caller's transaction, so a message exists if and
only if the change that caused it was committed. Keys are unique (`board:C1:2026-07-23`,
`alert:pothole-on-time:week:3:post`), so doing the same thing twice enqueues nothing.

Delivering: a sender claims one due message with a lease and marks it
`maybe_delivered` (committed) before calling Slack, then records Slack's channel and
ts. If the process dies between Slack accepting a post and that record, the next
attempt finds `maybe_delivered` set and first looks for the message in the channel
(or thread) by the outbox key carried in its metadata, and only posts when it is not
there. Definite refusals (429, Slack's `ok: false`) clear the flag; 500s and timeouts
keep it. Retries back off exponentially (a 429 waits at least its Retry-After) and
never give up on a transient failure, so an outage of any length ends in delivery.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

import orjson
from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import aliased

from shared.store.engine import utcnow

from .clock import aware
from shared.store.tables.notifier import OutboxMessage
from .slack import DeliveryError, Posted, SlackGateway

log = logging.getLogger("cityscore.notifier.outbox")

T = OutboxMessage.__table__


def dialect_insert(conn: Connection, table=T):
    """INSERT with ON CONFLICT for the connection's database (PostgreSQL or SQLite)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def enqueue_post(conn: Connection, key: str, channel: str, message: dict, *, parent_key: str | None = None,
                 not_before: datetime | None = None) -> bool:
    """A new message (a thread reply when `parent_key` names a post); False if the key exists."""
    now = utcnow()
    result = conn.execute(dialect_insert(conn).values(
        key=key, kind="post", channel=channel, parent_key=parent_key, payload=orjson.dumps(message).decode(),
        status="pending", version=1, sent_version=0, attempts=0, maybe_delivered=False, not_before=not_before,
        next_attempt_at=now, created_at=now).on_conflict_do_nothing(index_elements=["key"]).returning(T.c.id))
    return result.first() is not None


def enqueue_update(conn: Connection, key: str, parent_key: str, message: dict) -> None:
    """Edit the parent post to `message`; a newer edit replaces an unsent older one."""
    now = utcnow()
    payload = orjson.dumps(message).decode()
    stmt = dialect_insert(conn).values(key=key, kind="update", channel="", parent_key=parent_key, payload=payload,
                                status="pending", version=1, sent_version=0, attempts=0, maybe_delivered=False,
                                next_attempt_at=now, created_at=now)
    conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={
        "payload": payload, "version": T.c.version + 1, "status": "pending", "next_attempt_at": now},
        where=T.c.status != "cancelled"))


def enqueue_upload(conn: Connection, key: str, parent_key: str | None, channel: str, filename: str, title: str,
                   data: bytes, comment: str) -> bool:
    now = utcnow()
    payload = orjson.dumps({"filename": filename, "title": title, "comment": comment}).decode()
    result = conn.execute(dialect_insert(conn).values(
        key=key, kind="upload", channel=channel, parent_key=parent_key, payload=payload, file_data=data,
        status="pending", version=1, sent_version=0, attempts=0, maybe_delivered=False, next_attempt_at=now,
        created_at=now).on_conflict_do_nothing(index_elements=["key"]).returning(T.c.id))
    return result.first() is not None


def cancel_unsent(conn: Connection, key: str) -> bool:
    """Withdraw a post (and what hangs on it) that has certainly not reached Slack; False otherwise."""
    now = utcnow()
    result = conn.execute(update(T).where(
        T.c.key == key, T.c.status == "pending", T.c.maybe_delivered.is_(False),
        or_(T.c.lease_until.is_(None), T.c.lease_until < now)).values(status="cancelled").returning(T.c.id))
    if result.first() is None:
        return False
    conn.execute(update(T).where(T.c.parent_key == key, T.c.status == "pending").values(status="cancelled"))
    return True


def exists_key(conn: Connection, key: str) -> bool:
    return conn.scalar(select(func.count()).select_from(T).where(T.c.key == key)) > 0


def counts(conn: Connection) -> dict[str, int]:
    found = {status: 0 for status in ("pending", "sent", "failed", "cancelled")}
    for status, count in conn.execute(select(T.c.status, func.count()).group_by(T.c.status)):
        found[status] = count
    return found


@dataclass
class Claimed:
    id: int
    key: str
    kind: str
    channel: str
    payload: dict
    file_data: bytes | None
    attempts: int
    version: int
    was_maybe_delivered: bool
    first_attempt_at: datetime
    parent_channel: str | None
    parent_ts: str | None


class Sender:
    """Delivers due outbox messages through a Slack gateway; safe to run in several processes."""

    def __init__(self, engine: Engine, gateway: SlackGateway, *, city_now: Callable[[], datetime],
                 retry_base_s: float = 2.0, retry_max_s: float = 300.0, lease_s: float = 300.0,
                 on_result: Callable[[str, str], None] | None = None) -> None:
        self.engine = engine
        self.gateway = gateway
        # Quiet-hour holds are in the city's (controllable) time; retries and leases in real time.
        self.city_now = city_now
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.lease = timedelta(seconds=lease_s)
        self.on_result = on_result or (lambda kind, outcome: None)
        self._wake = threading.Event()

    # -- claiming --------------------------------------------------------------------------

    def _due(self, conn: Connection, limit: int):
        now = utcnow()
        parent = aliased(T)
        parent_sent = exists().where(parent.c.key == T.c.parent_key, parent.c.status == "sent")
        query = (select(T.c.id, T.c.attempts).where(
            T.c.status == "pending", T.c.next_attempt_at <= now,
            or_(T.c.not_before.is_(None), T.c.not_before <= self.city_now().astimezone(timezone.utc)),
            or_(T.c.lease_until.is_(None), T.c.lease_until < now),
            or_(T.c.parent_key.is_(None), parent_sent)).order_by(T.c.id).limit(limit))
        return conn.execute(query).all()

    def _claim(self, row_id: int, attempts: int) -> Claimed | None:
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(select(T).where(T.c.id == row_id)).one()
            if row.status != "pending" or row.attempts != attempts:
                return None
            creates = row.kind in ("post", "upload")
            claimed = conn.execute(update(T).where(
                T.c.id == row_id, T.c.attempts == attempts, T.c.status == "pending",
                or_(T.c.lease_until.is_(None), T.c.lease_until < now)).values(
                attempts=attempts + 1, lease_until=now + self.lease,
                maybe_delivered=True if creates else row.maybe_delivered,
                # wall-clock time: where to start looking in the channel's history
                first_attempt_at=func.coalesce(T.c.first_attempt_at, now)).returning(T.c.id))
            if claimed.first() is None:
                return None
            parent_channel = parent_ts = None
            if row.parent_key:
                parent = conn.execute(select(T.c.slack_channel, T.c.slack_ts).where(T.c.key == row.parent_key)).one()
                parent_channel, parent_ts = parent.slack_channel, parent.slack_ts
            return Claimed(row.id, row.key, row.kind, row.channel, orjson.loads(row.payload), row.file_data,
                           attempts + 1, row.version, row.maybe_delivered, aware(row.first_attempt_at) or now,
                           parent_channel, parent_ts)

    # -- delivering ------------------------------------------------------------------------

    def _settle_orphans(self) -> None:
        """Edits and replies of a post that failed or was withdrawn follow it (they could never go out)."""
        with self.engine.begin() as conn:
            for status in ("failed", "cancelled"):
                ended = select(T.c.key).where(T.c.status == status).scalar_subquery()
                conn.execute(update(T).where(T.c.status == "pending", T.c.parent_key.in_(ended)).values(
                    status=status, last_error=f"its parent post was {status}"))

    def deliver_due(self, limit: int = 100) -> int:
        """Deliver what is due now; returns how many messages went out."""
        delivered = 0
        self._settle_orphans()
        with self.engine.connect() as conn:
            due = self._due(conn, limit)
        for row_id, attempts in due:
            self._beat()  # each message is progress, even one Slack refuses or times out on
            claimed = self._claim(row_id, attempts)
            if claimed is not None and self._deliver(claimed):
                delivered += 1
        return delivered

    def _deliver(self, message: Claimed) -> bool:
        try:
            posted = self._send(message)
        except DeliveryError as error:
            self._failed(message, error)
            return False
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the sender; keep the message
            log.exception("sending failed unexpectedly", extra={"key": message.key})
            self._failed(message, DeliveryError(repr(exc), maybe_delivered=True))
            return False
        self._sent(message, posted)
        return True

    def _send(self, m: Claimed) -> Posted:
        if m.kind == "update":
            self.gateway.update(m.parent_channel, m.parent_ts, m.payload)
            return Posted(m.parent_channel, m.parent_ts)
        channel = m.parent_channel or m.channel
        if m.kind == "upload":
            if m.was_maybe_delivered:
                found = self.gateway.find_upload(channel, m.parent_ts, m.payload["filename"], since=m.first_attempt_at)
                if found is not None:
                    log.info("found an upload from an earlier attempt", extra={"key": m.key})
                    return found
            return self.gateway.upload(channel, m.parent_ts, m.payload["filename"], m.payload["title"],
                                       m.file_data or b"", m.payload.get("comment", ""))
        if m.was_maybe_delivered:
            found = self.gateway.find_post(channel, m.key, thread_ts=m.parent_ts, since=m.first_attempt_at)
            if found is not None:
                log.info("found a message from an earlier attempt; not posting again", extra={"key": m.key})
                return found
        return self.gateway.post(channel, m.payload, key=m.key, thread_ts=m.parent_ts)

    def _sent(self, m: Claimed, posted: Posted) -> None:
        with self.engine.begin() as conn:
            values = dict(lease_until=None, last_error=None, sent_at=utcnow(), maybe_delivered=False,
                          sent_version=m.version)
            if m.kind != "update":
                values.update(slack_channel=posted.channel, slack_ts=posted.ts)
            # An update whose payload changed meanwhile stays pending for the newer version.
            conn.execute(update(T).where(T.c.id == m.id, T.c.version == m.version).values(status="sent", **values))
            conn.execute(update(T).where(T.c.id == m.id, T.c.version != m.version).values(
                lease_until=None, next_attempt_at=utcnow()))
        self.on_result(m.kind, "sent")
        log.info("delivered", extra={"key": m.key, "channel": posted.channel, "ts": posted.ts, "attempts": m.attempts})

    def _failed(self, m: Claimed, error: DeliveryError) -> None:
        now = utcnow()
        with self.engine.begin() as conn:
            if error.permanent:
                conn.execute(update(T).where(T.c.id == m.id).values(
                    status="failed", last_error=error.error, lease_until=None, maybe_delivered=False))
                conn.execute(update(T).where(T.c.parent_key == m.key, T.c.status == "pending").values(
                    status="failed", last_error=f"parent {m.key} failed: {error.error}"))
            else:
                delay = min(self.retry_max_s, self.retry_base_s * 2 ** min(m.attempts - 1, 20))
                delay *= random.uniform(0.8, 1.2)
                if error.retry_after:
                    delay = max(delay, error.retry_after)
                values = dict(last_error=error.error, lease_until=None, next_attempt_at=now + timedelta(seconds=delay))
                if not error.maybe_delivered and m.kind != "update":
                    values["maybe_delivered"] = False
                conn.execute(update(T).where(T.c.id == m.id).values(**values))
        self.on_result(m.kind, "failed" if error.permanent else "retry")
        (log.error if error.permanent else log.warning)(
            "delivery failed", extra={"key": m.key, "error": error.error, "attempts": m.attempts,
                                      "permanent": error.permanent, "maybe_delivered": error.maybe_delivered})

    # -- the loop ------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    _beat: Callable[[], None] = staticmethod(lambda: None)

    def run(self, stop: threading.Event, poll_s: float = 1.0, beat: Callable[[], None] | None = None) -> None:
        """Deliver until `stop` is set, waking on `wake()` or every `poll_s`.

        `beat` is called each time round and for each message: the notifier's liveness.
        """
        if beat is not None:
            self._beat = beat
        while not stop.is_set():
            self._beat()
            try:
                while self.deliver_due() and not stop.is_set():
                    pass
            except Exception:  # noqa: BLE001 - e.g. the database is briefly away: try again
                log.exception("outbox sender pass failed")
            self._wake.wait(poll_s)
            self._wake.clear()


def recent(conn: Connection, limit: int = 20) -> list[dict]:
    """The newest posts (sent or not) with their text: for the scoreboard page on a laptop."""
    rows = conn.execute(select(T.c.key, T.c.channel, T.c.status, T.c.payload, T.c.created_at, T.c.sent_at)
                        .where(T.c.kind == "post").order_by(T.c.id.desc()).limit(limit))
    return [{"key": row.key, "channel": row.channel, "status": row.status,
             "text": orjson.loads(row.payload).get("text", ""), "created_at": aware(row.created_at),
             "sent_at": aware(row.sent_at)} for row in rows]


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
    ended = or_(T.c.status == "sent", T.c.status == "failed", T.c.status == "cancelled")
    doomed = (select(T.c.id).where(T.c.file_data.is_not(None), ended,
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


def pending_keys(conn: Connection) -> list[str]:
    return list(conn.scalars(select(T.c.key).where(T.c.status == "pending").order_by(T.c.id)))


