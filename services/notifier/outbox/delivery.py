"""The outbox's delivery: each due message goes through named stages, exactly once into Slack.

    due → claim → dedup → send → record
                            ╰──(failed)──→ retry

- **due**: pending, its next attempt time passed, not held by quiet hours, no live
  lease, and its parent post (if any) in Slack already.
- **claim**: a lease keeps other senders off it, and `maybe_delivered` is committed
  before Slack is called, so a crash after Slack took it is known afterwards.
- **dedup**: a message that may have reached Slack on an earlier attempt is first
  looked for in its channel (or thread) by the outbox key in its metadata (uploads by
  file name); found, it is not sent again.
- **send**: chat.postMessage, chat.update or a file upload through the gateway.
- **record**: Slack's channel and ts are written, and the message is sent; an edit
  whose payload changed meanwhile stays pending for the newer version.
- **retry**: definite refusals (429, Slack's `ok: false`) clear `maybe_delivered`;
  500s and timeouts keep it. Retries back off exponentially (a 429 waits at least its
  Retry-After) and never give up on a transient failure, so an outage of any length
  ends in delivery; a permanent error fails the message and what hangs on it.

The stages are small objects in the order above (after Prometheus Alertmanager's
notification pipeline); `Sender` runs them, in several processes safely.
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
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased

from shared.store.engine import utcnow

from ..slack import DeliveryError, Posted, SlackGateway
from .queue import CANCELLED, FAILED, PENDING, SENT, T

log = logging.getLogger("cityscore.notifier.outbox")

# Called with a message's kind and what became of it: sent, retry, failed (Prometheus counts them).
OnResult = Callable[[str, str], None]


@dataclass(frozen=True)
class Claimed:
    """A message this sender holds the lease of, with what delivering it needs."""

    id: int
    key: str
    kind: str  # post | update | upload
    channel: str
    payload: dict
    file_data: bytes | None
    attempts: int  # this one included
    version: int
    was_maybe_delivered: bool  # an earlier attempt may have reached Slack
    first_attempt_at: datetime
    parent_channel: str | None
    parent_ts: str | None


def backoff(attempts: int, base_s: float, max_s: float, retry_after: float | None = None,
            jitter: float = 1.0) -> float:
    """Seconds to wait before attempt `attempts + 1`: doubling from `base_s` up to `max_s`,
    times `jitter` (so senders that failed together do not retry together), and never
    less than Slack's Retry-After."""
    delay = min(max_s, base_s * 2 ** min(attempts - 1, 20)) * jitter
    return max(delay, retry_after) if retry_after else delay


class Due:
    """Which messages may be tried now."""

    def __init__(self, engine: Engine, city_now: Callable[[], datetime]) -> None:
        self.engine = engine
        # Quiet-hour holds are in the city's (controllable) time; retries and leases in real time.
        self.city_now = city_now

    def settle_orphans(self) -> None:
        """Edits and replies of a post that failed or was withdrawn follow it (they could never go out)."""
        with self.engine.begin() as conn:
            for status in (FAILED, CANCELLED):
                ended = select(T.c.key).where(T.c.status == status).scalar_subquery()
                conn.execute(update(T).where(T.c.status == PENDING, T.c.parent_key.in_(ended)).values(
                    status=status, last_error=f"its parent post was {status}"))

    def __call__(self, limit: int) -> list[tuple[int, int]]:
        """(id, attempts) of up to `limit` due messages, oldest first."""
        now = utcnow()
        parent = aliased(T)
        parent_sent = exists().where(parent.c.key == T.c.parent_key, parent.c.status == SENT)
        query = (select(T.c.id, T.c.attempts).where(
            T.c.status == PENDING, T.c.next_attempt_at <= now,
            or_(T.c.not_before.is_(None), T.c.not_before <= self.city_now().astimezone(timezone.utc)),
            or_(T.c.lease_until.is_(None), T.c.lease_until < now),
            or_(T.c.parent_key.is_(None), parent_sent)).order_by(T.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query)]


class Claim:
    """Take a due message's lease; None when another sender took it first."""

    def __init__(self, engine: Engine, lease: timedelta) -> None:
        self.engine = engine
        self.lease = lease

    def __call__(self, row_id: int, attempts: int) -> Claimed | None:
        now = utcnow()
        with self.engine.begin() as conn:
            row = conn.execute(select(T).where(T.c.id == row_id)).one()
            if row.status != PENDING or row.attempts != attempts:
                return None
            creates = row.kind in ("post", "upload")
            claimed = conn.execute(update(T).where(
                T.c.id == row_id, T.c.attempts == attempts, T.c.status == PENDING,
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
                           attempts + 1, row.version, row.maybe_delivered, row.first_attempt_at or now,
                           parent_channel, parent_ts)


class Dedup:
    """The message as Slack already has it from an earlier attempt, or None (send it)."""

    def __init__(self, gateway: SlackGateway) -> None:
        self.gateway = gateway

    def __call__(self, m: Claimed) -> Posted | None:
        if not m.was_maybe_delivered or m.kind == "update":  # an edit repeated is harmless
            return None
        channel = m.parent_channel or m.channel
        if m.kind == "upload":
            found = self.gateway.find_upload(channel, m.parent_ts, m.payload["filename"], since=m.first_attempt_at)
            if found is not None:
                log.info("found an upload from an earlier attempt", extra={"key": m.key})
            return found
        found = self.gateway.find_post(channel, m.key, thread_ts=m.parent_ts, since=m.first_attempt_at)
        if found is not None:
            log.info("found a message from an earlier attempt; not posting again", extra={"key": m.key})
        return found


class Send:
    """Hand the message to Slack; raises DeliveryError when it did not go through."""

    def __init__(self, gateway: SlackGateway) -> None:
        self.gateway = gateway

    def __call__(self, m: Claimed) -> Posted:
        if m.kind == "update":
            self.gateway.update(m.parent_channel, m.parent_ts, m.payload)
            return Posted(m.parent_channel, m.parent_ts)
        channel = m.parent_channel or m.channel
        if m.kind == "upload":
            return self.gateway.upload(channel, m.parent_ts, m.payload["filename"], m.payload["title"],
                                       m.file_data or b"", m.payload.get("comment", ""))
        return self.gateway.post(channel, m.payload, key=m.key, thread_ts=m.parent_ts)


class Record:
    """Write down that Slack has the message, and where."""

    def __init__(self, engine: Engine, on_result: OnResult) -> None:
        self.engine = engine
        self.on_result = on_result

    def __call__(self, m: Claimed, posted: Posted) -> None:
        with self.engine.begin() as conn:
            values = dict(lease_until=None, last_error=None, sent_at=utcnow(), maybe_delivered=False,
                          sent_version=m.version)
            if m.kind != "update":
                values.update(slack_channel=posted.channel, slack_ts=posted.ts)
            # An update whose payload changed meanwhile stays pending for the newer version.
            conn.execute(update(T).where(T.c.id == m.id, T.c.version == m.version).values(status=SENT, **values))
            conn.execute(update(T).where(T.c.id == m.id, T.c.version != m.version).values(
                lease_until=None, next_attempt_at=utcnow()))
        self.on_result(m.kind, "sent")
        log.info("delivered", extra={"key": m.key, "channel": posted.channel, "ts": posted.ts, "attempts": m.attempts})


class Retry:
    """After a failed send: try again later, backing off, or fail the message for good."""

    def __init__(self, engine: Engine, base_s: float, max_s: float, on_result: OnResult,
                 jitter: Callable[[], float] = lambda: random.uniform(0.8, 1.2)) -> None:
        self.engine = engine
        self.base_s = base_s
        self.max_s = max_s
        self.on_result = on_result
        self.jitter = jitter

    def __call__(self, m: Claimed, error: DeliveryError) -> None:
        now = utcnow()
        with self.engine.begin() as conn:
            if error.permanent:
                conn.execute(update(T).where(T.c.id == m.id).values(
                    status=FAILED, last_error=error.error, lease_until=None, maybe_delivered=False))
                conn.execute(update(T).where(T.c.parent_key == m.key, T.c.status == PENDING).values(
                    status=FAILED, last_error=f"parent {m.key} failed: {error.error}"))
            else:
                delay = backoff(m.attempts, self.base_s, self.max_s, error.retry_after, self.jitter())
                values = dict(last_error=error.error, lease_until=None, next_attempt_at=now + timedelta(seconds=delay))
                if not error.maybe_delivered and m.kind != "update":
                    values["maybe_delivered"] = False
                conn.execute(update(T).where(T.c.id == m.id).values(**values))
        self.on_result(m.kind, "failed" if error.permanent else "retry")
        (log.error if error.permanent else log.warning)(
            "delivery failed", extra={"key": m.key, "error": error.error, "attempts": m.attempts,
                                      "permanent": error.permanent, "maybe_delivered": error.maybe_delivered})


class Sender:
    """Delivers due outbox messages through a Slack gateway; safe to run in several processes."""

    def __init__(self, engine: Engine, gateway: SlackGateway, *, city_now: Callable[[], datetime],
                 retry_base_s: float = 2.0, retry_max_s: float = 300.0, lease_s: float = 300.0,
                 on_result: OnResult | None = None) -> None:
        on_result = on_result or (lambda kind, outcome: None)
        self.due = Due(engine, city_now)
        self.claim = Claim(engine, timedelta(seconds=lease_s))
        self.dedup = Dedup(gateway)
        self.send = Send(gateway)
        self.record = Record(engine, on_result)
        self.retry = Retry(engine, retry_base_s, retry_max_s, on_result)
        self._wake = threading.Event()

    def deliver_due(self, limit: int = 100) -> int:
        """Deliver what is due now; returns how many messages went out."""
        delivered = 0
        self.due.settle_orphans()
        for row_id, attempts in self.due(limit):
            self._beat()  # each message is progress, even one Slack refuses or times out on
            claimed = self.claim(row_id, attempts)
            if claimed is not None and self.deliver(claimed):
                delivered += 1
        return delivered

    def deliver(self, message: Claimed) -> bool:
        """dedup → send → record, or retry; True when the message is in Slack."""
        try:
            posted = self.dedup(message) or self.send(message)
        except DeliveryError as error:
            self.retry(message, error)
            return False
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the sender; keep the message
            log.exception("sending failed unexpectedly", extra={"key": message.key})
            self.retry(message, DeliveryError(repr(exc), maybe_delivered=True))
            return False
        self.record(message, posted)
        return True

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
