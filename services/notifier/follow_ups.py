"""The follow-up alerts in the database: each (metric, window)'s track, its alerts, their notes.

The repository of the notifier's use cases (service.py): they load a `Track` or an
`Alert` (lifecycle.py's plain values) through it, apply the pure rules, and save the
result through it, all on the connection of the use case's transaction. Nothing here
decides anything; every SQL statement about alerts is here and nowhere else.

On PostgreSQL the rows a use case will change are read `FOR UPDATE`, so two notifier
replicas (or a button clicked twice) apply one after the other. `save` writes only the
columns that differ from the alert as it was read, like the statements it replaces: the
reminder job, which reads firing alerts without a lock, writes its reminder count and
nothing that a click meanwhile may have changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Row

from shared.store.tables.notifier import Alert as AlertRow
from shared.store.tables.notifier import AlertNote, AlertTrack

from . import dialect
from .lifecycle import AT_RISK, Alert, Reading, Status, Streak, Track

TRACKS = AlertTrack.__table__
ALERTS = AlertRow.__table__
NOTES = AlertNote.__table__


def _track(row: Row) -> Track:
    return Track(row.metric, row.window, Streak(row.below, row.at_or_above),
                 Reading(row.score, row.numerator, row.denominator, row.as_of), row.changed_at, row.seq,
                 row.evaluated_at)


def _alert(row: Row) -> Alert:
    return Alert(row.id, row.metric, row.window, row.seq, Status(row.status), row.channel, row.fired_at,
                 Reading(row.score, row.numerator, row.denominator, row.as_of), first_score=row.first_score,
                 noted_score=row.noted_score, held_until=row.held_until, acknowledged_at=row.acknowledged_at,
                 acknowledged_by=row.acknowledged_by, owner=row.owner, last_reminded_at=row.last_reminded_at,
                 reminders=row.reminders, replies=row.replies, resolved_at=row.resolved_at,
                 resolved_reason=row.resolved_reason)


def _columns(alert: Alert) -> dict:
    """Every column of the alert but its id."""
    reading = alert.reading
    return dict(metric=alert.metric, window=alert.window, seq=alert.seq, status=alert.status.value,
                channel=alert.channel, as_of=reading.as_of, score=reading.score, numerator=reading.numerator,
                denominator=reading.denominator, first_score=alert.first_score, noted_score=alert.noted_score,
                fired_at=alert.fired_at, held_until=alert.held_until, acknowledged_at=alert.acknowledged_at,
                acknowledged_by=alert.acknowledged_by, owner=alert.owner, last_reminded_at=alert.last_reminded_at,
                reminders=alert.reminders, replies=alert.replies, resolved_at=alert.resolved_at,
                resolved_reason=alert.resolved_reason)


class FollowUps:
    """Tracks, alerts and notes, read and written on one connection (one transaction)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._read: dict[int, dict] = {}  # each alert's columns as last read or written

    def _seen(self, row: Row) -> Alert:
        alert = _alert(row)
        self._read[alert.id] = _columns(alert)
        return alert

    def _locked(self, query):
        return query.with_for_update() if dialect.locks_rows(self.conn) else query

    # -- tracks ------------------------------------------------------------------------------

    def track(self, metric: str, window: str) -> Track:
        """The (metric, window)'s track, made empty the first time; locked until the transaction ends."""
        stmt = dialect.insert(self.conn, TRACKS).values(metric=metric, window=window, below=0, at_or_above=0)
        self.conn.execute(stmt.on_conflict_do_nothing(index_elements=["metric", "window"]))
        return _track(self.conn.execute(self._locked(
            select(TRACKS).where(TRACKS.c.metric == metric, TRACKS.c.window == window))).one())

    def save_track(self, track: Track) -> None:
        reading = track.reading
        self.conn.execute(update(TRACKS).where(TRACKS.c.metric == track.metric, TRACKS.c.window == track.window)
                          .values(below=track.streak.below, at_or_above=track.streak.at_or_above,
                                  score=reading.score, numerator=reading.numerator,
                                  denominator=reading.denominator, as_of=reading.as_of,
                                  changed_at=track.changed_at, seq=track.seq, evaluated_at=track.evaluated_at))

    def steady(self, windows: Iterable[str], evaluated_before: datetime) -> list[tuple[str, str]]:
        """(metric, window) pairs with a score that nobody looked at since `evaluated_before`."""
        return [tuple(row) for row in self.conn.execute(
            select(TRACKS.c.metric, TRACKS.c.window).where(
                TRACKS.c.window.in_(list(windows)), TRACKS.c.score.is_not(None),
                TRACKS.c.evaluated_at <= evaluated_before).order_by(TRACKS.c.metric, TRACKS.c.window))]

    # -- alerts ------------------------------------------------------------------------------

    def get(self, alert_id: int, *, lock: bool = False) -> Alert | None:
        """The alert, or None; `lock` holds it for a change until the transaction ends."""
        query = select(ALERTS).where(ALERTS.c.id == alert_id)
        row = self.conn.execute(self._locked(query) if lock else query).one_or_none()
        return None if row is None else self._seen(row)

    def open_alert(self, metric: str, window: str) -> Alert | None:
        """The (metric, window)'s alert that is not resolved (at most one), locked."""
        row = self.conn.execute(self._locked(select(ALERTS).where(
            ALERTS.c.metric == metric, ALERTS.c.window == window,
            ALERTS.c.status != Status.RESOLVED.value))).one_or_none()
        return None if row is None else self._seen(row)

    def next_seq(self, metric: str, window: str) -> int:
        """The number of the (metric, window)'s next alert: 1, then one more than the last."""
        last = self.conn.scalar(select(func.max(ALERTS.c.seq)).where(ALERTS.c.metric == metric,
                                                                      ALERTS.c.window == window))
        return (last or 0) + 1

    def add(self, alert: Alert) -> Alert:
        """Save a new alert; returns it with its id."""
        alert_id = self.conn.execute(ALERTS.insert().values(**_columns(alert)).returning(ALERTS.c.id)).scalar_one()
        return self.get(alert_id)

    def save(self, alert: Alert) -> None:
        """Write what changed since the alert was read (nothing when nothing did)."""
        columns = _columns(alert)
        before = self._read.get(alert.id)
        changed = columns if before is None else {k: v for k, v in columns.items() if before[k] != v}
        if changed:
            self.conn.execute(update(ALERTS).where(ALERTS.c.id == alert.id).values(**changed))
        self._read[alert.id] = columns

    def firing(self) -> list[Alert]:
        """The alerts nobody acknowledged yet (not locked: see `save`)."""
        return [self._seen(row) for row in self.conn.execute(
            select(ALERTS).where(ALERTS.c.status == Status.FIRING.value).order_by(ALERTS.c.id))]

    def open_outside(self, metrics: Iterable[str]) -> list[Alert]:
        """Open alerts of metrics not among `metrics` (they left the catalog), locked."""
        return [self._seen(row) for row in self.conn.execute(self._locked(select(ALERTS).where(
            ALERTS.c.status != Status.RESOLVED.value, ALERTS.c.metric.not_in(list(metrics)))
            .order_by(ALERTS.c.id))).all()]

    def open_of_window(self, window: str) -> list[Alert]:
        """Open alerts of one window (the data alerts: "feed"), locked."""
        return [self._seen(row) for row in self.conn.execute(self._locked(select(ALERTS).where(
            ALERTS.c.status != Status.RESOLVED.value, ALERTS.c.window == window).order_by(ALERTS.c.id))).all()]

    def open_at_risk(self) -> list[Alert]:
        """Open at-risk alerts (windows "at-risk:…"), locked."""
        return [self._seen(row) for row in self.conn.execute(self._locked(select(ALERTS).where(
            ALERTS.c.status != Status.RESOLVED.value, ALERTS.c.window.startswith(AT_RISK, autoescape=True))
            .order_by(ALERTS.c.id))).all()]

    def reading_of(self, metric: str, window: str) -> Reading:
        """The reading the (metric, window)'s track last saved (not locked; none yet: no score)."""
        row = self.conn.execute(select(TRACKS).where(TRACKS.c.metric == metric,
                                                     TRACKS.c.window == window)).one_or_none()
        return Reading(None) if row is None else _track(row).reading

    def listed(self, status: str | None = None) -> list[Alert]:
        """Alerts by when they fired; `status` one of firing, acknowledged, resolved, or 'open' (not resolved)."""
        query = select(ALERTS).order_by(ALERTS.c.fired_at, ALERTS.c.id)
        if status == "open":
            query = query.where(ALERTS.c.status != Status.RESOLVED.value)
        elif status:
            query = query.where(ALERTS.c.status == status)
        return [self._seen(row) for row in self.conn.execute(query)]

    def count_open(self) -> int:
        return self.conn.scalar(select(func.count()).select_from(ALERTS).where(
            ALERTS.c.status != Status.RESOLVED.value))

    # -- notes -------------------------------------------------------------------------------

    def add_note(self, alert_id: int, user: str, text: str, digest: str, at: datetime) -> bool:
        """Keep a note; False when the alert has this note (the same `digest`) already."""
        return dialect.insert_new(self.conn, NOTES, ["alert_id", "digest"], alert_id=alert_id, user_id=user,
                                  text=text, created_at=at, digest=digest)
