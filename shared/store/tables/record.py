"""What a department keeps on the record beside its scores: follow-up actions and notes.

An action is what someone promised to do about a metric (often at a Stat meeting, or
from an alert), by when, and what came of it; a note says what happened on a metric's
day ("snowstorm closed the depots"). Written by the notifier (from Slack) and the
`cityscore action|note` commands, read by the pages and the monthly packet
(shared/store/record.py). Created by migration 0010 (0011: owner_is_user).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.store.engine import AutoId, UTCDateTime, utcnow
from shared.store.tables import Base


class FollowUpAction(Base):
    """One promised action on a metric: open until someone closes it with its outcome."""

    __tablename__ = "follow_up_actions"
    __table_args__ = (Index("ix_follow_up_actions_department_status", "department", "status"),
                      Index("ix_follow_up_actions_status_due", "status", "due"))

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    metric: Mapped[str] = mapped_column(String(64))
    # The metric's department when the action was recorded: kept if the catalog moves the metric.
    department: Mapped[str] = mapped_column(String(64))
    alert_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the alert it was recorded from
    owner: Mapped[str] = mapped_column(String(120))  # a Slack user id, or a name given to the command
    # Whether `owner` is a Slack user id, as it was given (the modal's user, the command's <@U…> or
    # --owner-slack) and not guessed from its letters; NULL before migration 0011 (read by the pattern).
    owner_is_user: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    text: Mapped[str] = mapped_column(Text)
    due: Mapped[date] = mapped_column(Date)  # the city's local day
    status: Mapped[str] = mapped_column(String(8), default="open")  # open | closed
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(120))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # sha256 of who recorded what for whom by when: the same modal submitted twice is one action.
    digest: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)


class MetricNote(Base):
    """A note on a metric's day; internal unless marked public."""

    __tablename__ = "metric_notes"
    __table_args__ = (Index("ix_metric_notes_metric_day", "metric", "day"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    metric: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)  # the city's local day the note is about
    text: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(120))
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    alert_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # written from this alert's "Add a note"
    # sha256 of who wrote what on which metric and day: the same note twice is kept once.
    digest: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
