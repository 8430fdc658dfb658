"""The scorer's tables: every event folded, the daily totals, and the published scores with their outbox.

Created by migration 0002 (shared/store/migrations/versions/0002_scorer_*.py), per-department
identities by 0005. Written by the scorer through shared/store/score_writer.py (folds) and
published_scores.py (scores and outbox); read through score_reader.py.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.store.engine import AutoId, UTCDateTime, utcnow
from shared.store.tables import Base


class ProcessedEvent(Base):
    """Every event folded once, and what it counts (so that it can be withdrawn or corrected).

    An event is (department, event_id): a redelivered event finds its row here and changes
    nothing. `part_key` names the replaceable part it counts under (a case, a tally); an
    incident's or a measurement's contribution is kept in the row itself (`metric` NULL:
    it counts nothing, e.g. a withdrawal, or an event withdrawn). department '' marks a
    row folded before identities were per department: it stands for every department.
    """

    __tablename__ = "processed_events"

    # event_id first: the claim looks an id up for its department and for ''.
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    department: Mapped[str] = mapped_column(String(64), primary_key=True, server_default="")
    part_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    metric: Mapped[str | None] = mapped_column(String(64), nullable=True)
    day: Mapped[date | None] = mapped_column(Date, nullable=True)
    numerator: Mapped[float | None] = mapped_column(Float, nullable=True)
    denominator: Mapped[float | None] = mapped_column(Float, nullable=True)
    count: Mapped[float | None] = mapped_column(Float, nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)


class CurrentPart(Base):
    """The contribution now counted for a replaceable identity (a case, a day's tally).

    `metric`/`day` are NULL while it counts nowhere (an open case).
    """

    __tablename__ = "current_parts"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    metric: Mapped[str | None] = mapped_column(String(64), nullable=True)
    day: Mapped[date | None] = mapped_column(Date, nullable=True)
    numerator: Mapped[float] = mapped_column(Float, default=0.0)
    denominator: Mapped[float] = mapped_column(Float, default=0.0)
    count: Mapped[float] = mapped_column(Float, default=0.0)


class KeptCase(Base):
    """The latest version of each case, as the case lists and the overdue backlog show it
    (shared/core/cases.py `Case`); migration 0008. Written in the fold's transaction with the
    case's part (same key); a withdrawn case leaves. Only the attributes the catalog marks public
    are kept (`attributes`, a JSON object), and the values of the metric's breakdown attributes
    (`groups`, a JSON array in the catalog's order).
    """

    __tablename__ = "cases"
    # A window's late and on-time lists read a metric's cases closed in a span: they walk this
    # index. The cases open at a moment (the backlog, the open and overdue lists) are found on
    # PostgreSQL by a GiST index of the span (opened_at, closed_at], migration 0009 (ScoreReader._open_at).
    __table_args__ = (Index("ix_cases_metric_closed_at", "metric", "closed_at"),)

    key: Mapped[str] = mapped_column(String(300), primary_key=True)  # case:DEPARTMENT/CASE_ID
    department: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[str] = mapped_column(String(128))
    metric: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attributes: Mapped[str | None] = mapped_column(Text, nullable=True)
    groups: Mapped[str | None] = mapped_column(Text, nullable=True)


class DayTotal(Base):
    """One metric's totals for one local day: the unit of scoring state."""

    __tablename__ = "day_totals"

    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    numerator: Mapped[float] = mapped_column(Float, default=0.0)
    denominator: Mapped[float] = mapped_column(Float, default=0.0)
    count: Mapped[float] = mapped_column(Float, default=0.0)
    # How many contributions the day holds; a day whose last one is taken back is deleted
    # (it is no longer data, nor its metric's first day). NULL: folded before this was
    # counted, so unknown and never deleted.
    parts: Mapped[int | None] = mapped_column(Integer, nullable=True, default=0)


class MeasurementValue(Base):
    """A raw measurement kept for a median (target_over_median metrics only)."""

    __tablename__ = "measurement_values"
    __table_args__ = (Index("ix_measurement_values_metric_day", "metric", "day"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    metric: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    value: Mapped[float] = mapped_column(Float)


class DayChange(Base):
    """A metric's day whose totals or kept measurements a fold changed: the fold's change log.

    Each fold that changes day totals takes the next `version` (migration 0012), in the order the
    folds commit, and lists the days it changed. A reader that keeps day totals across requests
    (ScoreReader's KeptDays) reads the versions after the last it saw and forgets those days, so a
    late event or a correction shows on the next past board. A rebuild or a replay logs one row
    for everything (`EVERYTHING`). Old versions are purged as folds go on; a reader that finds
    the versions it missed purged reads everything again.
    """

    __tablename__ = "day_changes"
    # (version, metric, day): the one row of a rebuild or replay, for everything (EVERYTHING).

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)


# The change log's row for "everything changed" (a rebuild, a replay): readers forget all they kept.
EVERYTHING = ("*", date(1, 1, 1))


class MetricFirstDay(Base):
    """The first local day a metric had data: where trend history begins."""

    __tablename__ = "metric_first_days"

    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_day: Mapped[date] = mapped_column(Date)


class CurrentScore(Base):
    """The last published score of each metric (and of the city, metric 'cityscore') per window."""

    __tablename__ = "current_scores"

    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    window: Mapped[str] = mapped_column(String(32), primary_key=True)
    as_of: Mapped[date] = mapped_column(Date)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    numerator: Mapped[float | None] = mapped_column(Float, nullable=True)
    denominator: Mapped[float | None] = mapped_column(Float, nullable=True)
    # What the score was computed over and against (migration 0007; NULL on rows published
    # before it): a reader whose catalog now says other dates or another target recomputes.
    window_start: Mapped[date | None] = mapped_column(Date, nullable=True)
    window_end: Mapped[date | None] = mapped_column(Date, nullable=True)
    target: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ScoreOutbox(Base):
    """Score changes written in the fold's transaction, published to Kafka after the commit."""

    __tablename__ = "score_outbox"
    # The id is the change's published sequence (PublishedScores.pending_outbox), so it must never
    # be reused: without AUTOINCREMENT SQLite numbers from 1 again once the outbox is emptied.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
