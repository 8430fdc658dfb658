"""The follow-up alerts of a period, read from the notifier's tables (shared/store/tables/notifier.py).

For the monthly review packet: what fired, who acknowledged and owned each alert, the notes
added to it and when and why it was resolved. The notifier writes these tables; this module only
reads them, so the scorer's side (the packet) needs nothing of the notifier's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from sqlalchemy import or_, select
from sqlalchemy.engine import Engine

from shared.store.tables.notifier import Alert, AlertNote


@dataclass(frozen=True)
class NoteOnAlert:
    user_id: str
    text: str
    created_at: datetime


@dataclass(frozen=True)
class AlertRecord:
    """One alert as it stands in the database, with its notes oldest first."""

    id: int
    metric: str
    window: str
    status: str  # firing | acknowledged | resolved
    channel: str
    score: float | None
    first_score: float | None
    fired_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    owner: str | None
    resolved_at: datetime | None
    resolved_reason: str | None
    notes: tuple[NoteOnAlert, ...]


def alerts_between(engine: Engine, metric_ids: Iterable[str], start: datetime, end: datetime) -> list[AlertRecord]:
    """The alerts of these metrics open at some moment in [start, end): fired before `end` and not
    resolved before `start` (an alert that fired last month and is still open belongs to this month's
    review too). By when they fired, then by id."""
    metric_ids = list(metric_ids)
    if not metric_ids:
        return []
    alerts = Alert.__table__
    notes = AlertNote.__table__
    query = (select(alerts)
             .where(alerts.c.metric.in_(metric_ids), alerts.c.fired_at < end,
                    or_(alerts.c.resolved_at.is_(None), alerts.c.resolved_at >= start))
             .order_by(alerts.c.fired_at, alerts.c.id))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        by_alert: dict[int, list[NoteOnAlert]] = {row.id: [] for row in rows}
        if by_alert:
            for note in conn.execute(select(notes).where(notes.c.alert_id.in_(list(by_alert)))
                                     .order_by(notes.c.created_at, notes.c.id)):
                by_alert[note.alert_id].append(NoteOnAlert(note.user_id, note.text, note.created_at))
    return [AlertRecord(row.id, row.metric, row.window, row.status, row.channel, row.score, row.first_score,
                        row.fired_at, row.acknowledged_at, row.acknowledged_by, row.owner, row.resolved_at,
                        row.resolved_reason, tuple(by_alert[row.id]))
            for row in rows]
