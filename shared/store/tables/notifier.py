"""The notifier's tables: alert tracks and alerts, the outbox of Slack messages, notes.

Created by migration 0003 (shared/store/migrations/versions/0003_notifier_*.py); the
Slack requests seen and the notes' digests by 0006. The
APScheduler job table (`notifier_jobs`) belongs to APScheduler's SQLAlchemyJobStore.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Float, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from shared.store.engine import AutoId, UTCDateTime, utcnow
from shared.store.tables import Base

JOBS_TABLE = "notifier_jobs"


class AlertTrack(Base):
    """What the notifier last saw of one (metric, window): the streaks that damp flapping."""

    __tablename__ = "notifier_alert_tracks"

    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    window: Mapped[str] = mapped_column(String(32), primary_key=True)
    below: Mapped[int] = mapped_column(Integer, default=0)
    at_or_above: Mapped[int] = mapped_column(Integer, default=0)
    as_of: Mapped[date | None] = mapped_column(Date, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    numerator: Mapped[float | None] = mapped_column(Float, nullable=True)
    denominator: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The newest score change applied; a redelivered or older one is ignored.
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The scorer's sequence number of that change (None for one sent before there was one).
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Alert(Base):
    """One follow-up alert of a (metric, window); at most one is open (not resolved) at a time."""

    __tablename__ = "notifier_alerts"
    __table_args__ = (
        UniqueConstraint("metric", "window", "seq", name="uq_notifier_alerts_metric_window_seq"),
        Index("ix_notifier_alerts_one_open", "metric", "window", unique=True,
              postgresql_where=text("status <> 'resolved'"), sqlite_where=text("status <> 'resolved'")),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    metric: Mapped[str] = mapped_column(String(64))
    window: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # firing | acknowledged | resolved
    channel: Mapped[str] = mapped_column(String(64))
    as_of: Mapped[date | None] = mapped_column(Date, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    numerator: Mapped[float | None] = mapped_column(Float, nullable=True)
    denominator: Mapped[float | None] = mapped_column(Float, nullable=True)
    first_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    noted_score: Mapped[float | None] = mapped_column(Float, nullable=True)  # the score last told in the thread
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)  # quiet hours
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)  # who took ownership
    last_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reminders: Mapped[int] = mapped_column(Integer, default=0)
    replies: Mapped[int] = mapped_column(Integer, default=0)  # numbers the thread replies' outbox keys
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Why it was resolved when its score did not recover (its metric left the catalog).
    resolved_reason: Mapped[str | None] = mapped_column(String(300), nullable=True)

    @property
    def key(self) -> str:
        return f"alert:{self.metric}:{self.window}:{self.seq}"


class AlertNote(Base):
    """A note someone added to an alert (also replied in its thread)."""

    __tablename__ = "notifier_alert_notes"
    __table_args__ = (Index("uq_notifier_alert_notes_alert_id_digest", "alert_id", "digest", unique=True),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(Integer, index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # sha256 of who wrote it and what: the same note sent twice is kept (and posted) once.
    # Null on notes older than migration 0006.
    digest: Mapped[str | None] = mapped_column(String(64), nullable=True)


class SlackRequest(Base):
    """A signed request from Slack already acted on, kept while its signature is still accepted.

    Slack's signature holds for five minutes on either side of its timestamp, so a
    request captured on the way could be sent again in that time; each is identified by
    a hash of its timestamp and signature and acted on once, whichever notifier replica
    receives it.
    """

    __tablename__ = "notifier_slack_requests"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Slack's X-Slack-Request-Timestamp: the row may go once no clock accepts it any more.
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OutboxMessage(Base):
    """A Slack message to deliver exactly once, written before it is sent.

    `kind`: post (chat.postMessage, also thread replies), update (chat.update of the
    parent; the latest payload wins), upload (files_upload_v2 into the parent's thread).
    A message with a `parent_key` waits until its parent has a Slack channel and ts.
    """

    __tablename__ = "notifier_outbox"
    __table_args__ = (Index("ix_notifier_outbox_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(64))
    parent_key: Mapped[str | None] = mapped_column(String(300), nullable=True, index=True)
    payload: Mapped[str] = mapped_column(Text)
    file_data: Mapped[bytes | None] = mapped_column(nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | failed | cancelled
    version: Mapped[int] = mapped_column(Integer, default=1)  # updates: bumped on each new payload
    sent_version: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Set before each send, cleared on a definite refusal: after a crash the message may be in Slack.
    maybe_delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    slack_channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    slack_ts: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
