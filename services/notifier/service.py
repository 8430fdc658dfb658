"""The notifier's use cases: score changes in, alerts and boards out through the outbox.

Each use case runs in one database transaction and only enqueues Slack messages;
the outbox sender delivers them. So a score change redelivered by Kafka, a scheduled
job run twice, or a button clicked twice changes nothing the second time.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Iterable

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine

from shared.core.catalog import Catalog
from shared.store.engine import utcnow
from shared.store.score_store import CITY, BadScoreChange, ScoreChange, ScoreStore

from . import outbox
from .blocks import AlertView, alert_message, board_message, recap_message, reply_message
from .clock import Clock, aware
from .lifecycle import AlertClock, Policy, QuietHours, Status, Streak, Transition, evaluate, reminder_due, thread_note
from shared.store.tables.notifier import Alert, AlertNote, AlertTrack, OutboxMessage, SlackRequest
from .routing import Routing
from .settings import WEEKDAYS, NotifierSettings

log = logging.getLogger("cityscore.notifier")

TRACKS = AlertTrack.__table__
ALERTS = Alert.__table__
NOTES = AlertNote.__table__
OUTBOX = OutboxMessage.__table__
SLACK_REQUESTS = SlackRequest.__table__

# Slack's signature holds this long either side of its timestamp (slack_sdk's SignatureVerifier).
SIGNATURE_WINDOW = timedelta(minutes=5)


class NotAllowed(Exception):
    """Someone the routing does not let act on an alert tried to; nothing was changed."""

    def __init__(self, user: str, action: str, department: str) -> None:
        super().__init__(f"user {user} may not {action} alerts of {department}: the routing names its responders")
        self.user = user


# The scores topic's message, defined once beside the scorer that sends it.
BadChange = BadScoreChange
parse_change = ScoreChange.from_payload


def supersedes(change: ScoreChange, last_seq: int | None, last_changed_at: datetime | None) -> bool:
    """Whether `change` is newer than the change last applied to its (metric, window).

    The scorer's sequence decides when both carry one: it follows the order in which the
    rescores committed. `changed_at` is only the clock of whichever scorer computed the
    change, and two scorers' clocks may disagree. Messages from before the sequence
    existed (and the first sequenced change after one of them) are ordered by their
    clocks, as they were then.
    """
    if change.seq is not None and last_seq is not None:
        return change.seq > last_seq
    return last_changed_at is None or change.changed_at > last_changed_at


def _status(value: str | None) -> Status | None:
    return Status(value) if value else None


class Notifier:
    def __init__(self, engine: Engine, catalog: Catalog, settings: NotifierSettings, routing: Routing, clock: Clock,
                 *, store: ScoreStore | None = None, on_enqueue: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.catalog = catalog
        self.settings = settings
        self.routing = routing
        self.clock = clock
        self.store = store or ScoreStore(engine, catalog)
        self.on_enqueue = on_enqueue or (lambda: None)
        quiet = settings.quiet
        self.policy = Policy(settings.fire_after, settings.resolve_after, settings.repeat_interval,
                             QuietHours(quiet[0], quiet[1], catalog.zone) if quiet else None)
        self.departments = {d.id: d.name for d in catalog.departments}

    def _now(self) -> datetime:
        # Stored in UTC: SQLite keeps timestamps as text without their offset.
        return self.clock.now().astimezone(timezone.utc)

    # -- score changes -----------------------------------------------------------------------

    def handle_changes(self, payloads: Iterable[dict]) -> int:
        """Apply a batch of score changes in one transaction; returns how many counted."""
        applied = 0
        with self.engine.begin() as conn:
            for payload in payloads:
                try:
                    change = parse_change(payload)
                except BadChange as exc:
                    log.warning("score change ignored", extra={"reason": str(exc), "payload": str(payload)[:500]})
                    continue
                if change.metric == CITY or change.metric not in self.catalog.by_id:
                    continue  # the overall CityScore is on the board; it has no owner to follow up
                if change.window not in self.settings.windows:
                    continue
                if self._apply(conn, change):
                    applied += 1
        if applied:
            self.on_enqueue()
        return applied

    def _track(self, conn: Connection, metric: str, window: str):
        stmt = outbox.dialect_insert(conn, TRACKS).values(metric=metric, window=window, below=0, at_or_above=0)
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["metric", "window"]))
        query = select(TRACKS).where(TRACKS.c.metric == metric, TRACKS.c.window == window)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        return conn.execute(query).one()

    def _apply(self, conn: Connection, change: ScoreChange) -> bool:
        track = self._track(conn, change.metric, change.window)
        if not supersedes(change, track.seq, aware(track.changed_at)):
            return False  # redelivered, or older than what we applied
        self._evaluate(conn, track, change.score, change.numerator, change.denominator, change.as_of,
                       changed_at=change.changed_at, seq=change.seq)
        return True

    def _open_alert(self, conn: Connection, metric: str, window: str):
        query = select(ALERTS).where(ALERTS.c.metric == metric, ALERTS.c.window == window,
                                     ALERTS.c.status != Status.RESOLVED.value)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        return conn.execute(query).one_or_none()

    def _evaluate(self, conn: Connection, track, score, numerator, denominator, as_of, *, changed_at=None,
                  seq=None) -> None:
        alert = self._open_alert(conn, track.metric, track.window)
        streak, transition = evaluate(Streak(track.below, track.at_or_above),
                                      _status(alert.status) if alert else None, score, self.policy)
        values = dict(below=streak.below, at_or_above=streak.at_or_above, score=score, numerator=numerator,
                      denominator=denominator, as_of=as_of, evaluated_at=self._now())
        if changed_at is not None:  # a score change, not a look at a steady score
            values["changed_at"] = changed_at
            values["seq"] = seq
        conn.execute(update(TRACKS).where(TRACKS.c.metric == track.metric, TRACKS.c.window == track.window)
                     .values(**values))
        if transition is Transition.FIRE:
            self._fire(conn, track.metric, track.window, score, numerator, denominator, as_of, track.score)
        elif transition is Transition.CHANGE:
            self._change(conn, alert, score, numerator, denominator, as_of)
        elif transition is Transition.RESOLVE:
            self._resolve(conn, alert, score, numerator, denominator, as_of)

    def evaluate_steady(self) -> int:
        """Re-evaluate scores that have not changed for an evaluation interval (a steady score counts)."""
        now = self._now()
        cutoff = now - timedelta(seconds=self.settings.evaluate_every_s)
        done = 0
        with self.engine.begin() as conn:
            stale = conn.execute(select(TRACKS.c.metric, TRACKS.c.window).where(
                TRACKS.c.window.in_(self.settings.windows), TRACKS.c.score.is_not(None),
                TRACKS.c.evaluated_at <= cutoff).order_by(TRACKS.c.metric, TRACKS.c.window)).all()
            for metric, window in stale:
                if metric not in self.catalog.by_id:
                    continue
                track = self._track(conn, metric, window)
                self._evaluate(conn, track, track.score, track.numerator, track.denominator, track.as_of)
                done += 1
        if done:
            self.on_enqueue()
        return done

    # -- alert messages ----------------------------------------------------------------------

    def _view(self, alert, previous: float | None = None) -> AlertView:
        metric = self.catalog.by_id[alert.metric]
        return AlertView(alert.id, metric, alert.window, alert.status, alert.score, alert.numerator,
                         alert.denominator, previous if previous is not None else alert.first_score,
                         alert.first_score, self.departments.get(metric.department, metric.department),
                         self.routing.owners_of(self.catalog, alert.metric), alert.acknowledged_by, alert.owner,
                         alert.as_of)

    def _hold(self) -> datetime | None:
        now = self._now()
        release = self.policy.release(now).astimezone(timezone.utc)
        return release if release > now else None

    def _reload(self, conn: Connection, alert_id: int):
        return conn.execute(select(ALERTS).where(ALERTS.c.id == alert_id)).one()

    def _reply(self, conn: Connection, alert, kind: str, **extra) -> None:
        number = alert.replies + 1
        conn.execute(update(ALERTS).where(ALERTS.c.id == alert.id).values(replies=number))
        outbox.enqueue_post(conn, f"{alert_key(alert)}:reply:{number}", alert.channel,
                            reply_message(kind, self._view(alert), **extra), parent_key=f"{alert_key(alert)}:post",
                            not_before=self._hold())

    def _edit(self, conn: Connection, alert) -> None:
        outbox.enqueue_update(conn, f"{alert_key(alert)}:update", f"{alert_key(alert)}:post",
                              alert_message(self._view(alert)))

    def _fire(self, conn, metric, window, score, numerator, denominator, as_of, previous) -> None:
        route = self.routing.route(self.catalog, metric)
        seq = (conn.scalar(select(func.max(ALERTS.c.seq)).where(ALERTS.c.metric == metric,
                                                                 ALERTS.c.window == window)) or 0) + 1
        held = self._hold()
        alert_id = conn.execute(ALERTS.insert().values(
            metric=metric, window=window, seq=seq, status=Status.FIRING.value, channel=route.channel, as_of=as_of,
            score=score, numerator=numerator, denominator=denominator, first_score=score, noted_score=score,
            fired_at=self._now(), held_until=held, reminders=0, replies=0).returning(ALERTS.c.id)).scalar_one()
        alert = self._reload(conn, alert_id)
        outbox.enqueue_post(conn, f"{alert_key(alert)}:post", route.channel,
                            alert_message(self._view(alert, previous)), not_before=held)
        log.info("alert fired", extra={"metric": metric, "window": window, "seq": seq, "score": score,
                                       "held_until": held.isoformat() if held else None})

    def _change(self, conn, alert, score, numerator, denominator, as_of) -> None:
        if (alert.score, alert.numerator, alert.denominator, alert.as_of) == (score, numerator, denominator, as_of):
            return
        note = thread_note(alert.noted_score, score, self.policy)
        values = dict(score=score, numerator=numerator, denominator=denominator, as_of=as_of)
        if note:
            values["noted_score"] = score
        conn.execute(update(ALERTS).where(ALERTS.c.id == alert.id).values(**values))
        alert = self._reload(conn, alert.id)
        self._edit(conn, alert)
        if note:
            self._reply(conn, alert, note)

    def _resolve(self, conn, alert, score, numerator, denominator, as_of) -> None:
        conn.execute(update(ALERTS).where(ALERTS.c.id == alert.id).values(
            status=Status.RESOLVED.value, resolved_at=self._now(), score=score, numerator=numerator,
            denominator=denominator, as_of=as_of))
        alert = self._reload(conn, alert.id)
        if outbox.cancel_unsent(conn, f"{alert_key(alert)}:post"):
            log.info("alert resolved before it was sent; withdrawn", extra={"key": alert_key(alert)})
            return
        self._edit(conn, alert)
        self._reply(conn, alert, "resolved")
        log.info("alert resolved", extra={"key": alert_key(alert), "score": score})

    def send_reminders(self) -> int:
        """Remind about firing alerts that nobody acknowledged within the repeat interval.

        Alerts of metrics that left the catalog are closed first (`close_orphans`): they
        cannot be reminded about (the metric's name and owners are gone) and would
        otherwise stop this job every time it runs.
        """
        self.close_orphans()
        now = self._now()
        sent = 0
        with self.engine.begin() as conn:
            firing = [alert for alert in conn.execute(select(ALERTS).where(ALERTS.c.status == Status.FIRING.value))
                      if alert.metric in self.catalog.by_id]
            posts = [f"{alert_key(alert)}:post" for alert in firing]
            posted = set(conn.scalars(select(OUTBOX.c.key).where(OUTBOX.c.key.in_(posts), OUTBOX.c.status == "sent")))
            for alert in firing:
                if f"{alert_key(alert)}:post" not in posted:
                    continue  # the alert itself has not reached Slack yet
                clock = AlertClock(Status.FIRING, aware(alert.fired_at), aware(alert.held_until),
                                   aware(alert.last_reminded_at))
                if not reminder_due(clock, now, self.policy):
                    continue
                number = alert.reminders + 1
                conn.execute(update(ALERTS).where(ALERTS.c.id == alert.id).values(reminders=number,
                                                                                   last_reminded_at=now))
                outbox.enqueue_post(conn, f"{alert_key(alert)}:reminder:{number}", alert.channel,
                                    reply_message("reminder", self._view(alert)),
                                    parent_key=f"{alert_key(alert)}:post")
                sent += 1
        if sent:
            self.on_enqueue()
        return sent

    # -- requests from Slack -------------------------------------------------------------------

    def first_sight(self, timestamp: int, signature: str, now: datetime) -> bool:
        """Record a verified Slack request; False if it was seen before (a replay).

        Kept in the database so that every notifier replica knows it; rows go once their
        timestamp is out of the signature window (a replay of them is refused as stale).
        """
        digest = hashlib.sha256(f"{timestamp}:{signature}".encode()).hexdigest()
        requested_at = datetime.fromtimestamp(timestamp, timezone.utc)
        with self.engine.begin() as conn:
            conn.execute(SLACK_REQUESTS.delete().where(SLACK_REQUESTS.c.requested_at < now - 2 * SIGNATURE_WINDOW))
            stmt = outbox.dialect_insert(conn, SLACK_REQUESTS).values(digest=digest, requested_at=requested_at,
                                                                      received_at=now)
            inserted = conn.execute(stmt.on_conflict_do_nothing(index_elements=["digest"])
                                    .returning(SLACK_REQUESTS.c.digest)).first()
        return inserted is not None

    def close_orphans(self) -> int:
        """Resolve the open alerts of metrics no longer in the catalog, recording why.

        Nothing else would resolve them: no score of such a metric is read any more. The
        alert's message loses its buttons and its thread says why; each is logged once
        (a warning), since a closed alert is not looked at again. Returns how many.
        """
        closed = 0
        with self.engine.begin() as conn:
            query = select(ALERTS).where(ALERTS.c.status != Status.RESOLVED.value,
                                         ALERTS.c.metric.not_in(list(self.catalog.by_id)))
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            for alert in conn.execute(query).all():
                reason = f"{alert.metric} is no longer in the catalog"
                conn.execute(update(ALERTS).where(ALERTS.c.id == alert.id).values(
                    status=Status.RESOLVED.value, resolved_at=self._now(), resolved_reason=reason))
                closed += 1
                log.warning("alert closed: its metric is no longer in the catalog",
                            extra={"key": alert_key(alert), "metric": alert.metric, "window": alert.window})
                if outbox.cancel_unsent(conn, f"{alert_key(alert)}:post"):
                    continue  # it never reached Slack: nothing to tell
                # Plain text: the metric's name, owners and buttons came from the catalog entry.
                text = f"Follow-up closed: {reason}, so its {alert.window} score is no longer followed up."
                message = {"text": text, "blocks": [{"type": "section", "text": {"type": "plain_text", "text": text}}]}
                outbox.enqueue_update(conn, f"{alert_key(alert)}:update", f"{alert_key(alert)}:post", message)
                number = alert.replies + 1
                conn.execute(update(ALERTS).where(ALERTS.c.id == alert.id).values(replies=number))
                outbox.enqueue_post(conn, f"{alert_key(alert)}:reply:{number}", alert.channel, message,
                                    parent_key=f"{alert_key(alert)}:post")
        if closed:
            self.on_enqueue()
        return closed

    # -- people acting on alerts ---------------------------------------------------------------

    def _allow(self, alert, user: str, action: str) -> None:
        if not self.routing.may_act(self.catalog, alert.metric, user):
            metric = self.catalog.by_id.get(alert.metric)
            refusal = NotAllowed(user, action, metric.department if metric else alert.metric)
            log.warning("slack action refused", extra={"alert": alert.id, "user": user, "action": action,
                                                       "reason": str(refusal)})
            raise refusal

    def check_may_act(self, alert_id: int, user: str, action: str) -> None:
        """Raise NotAllowed unless `user` may act on the alert (an unknown alert is the caller's to tell)."""
        alert = self.alert(alert_id)
        if alert is not None:
            self._allow(alert, user, action)

    def _act(self, alert_id: int, user: str, action: str, act) -> str:
        with self.engine.begin() as conn:
            query = select(ALERTS).where(ALERTS.c.id == alert_id)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            alert = conn.execute(query).one_or_none()
            if alert is None:
                return "That alert does not exist."
            self._allow(alert, user, action)
            answer = act(conn, alert)
        self.on_enqueue()
        return answer

    def acknowledge(self, alert_id: int, user: str) -> str:
        def act(conn, alert) -> str:
            if alert.status == Status.RESOLVED.value:
                return "That alert is already resolved."
            if alert.status == Status.ACKNOWLEDGED.value:
                return f"Already acknowledged by <@{alert.acknowledged_by}>."
            conn.execute(update(ALERTS).where(ALERTS.c.id == alert.id).values(
                status=Status.ACKNOWLEDGED.value, acknowledged_by=user, acknowledged_at=self._now()))
            alert = self._reload(conn, alert.id)
            self._edit(conn, alert)
            self._reply(conn, alert, "acknowledged", user=user)
            return "Acknowledged: reminders stop."
        return self._act(alert_id, user, "acknowledge", act)

    def take_ownership(self, alert_id: int, user: str) -> str:
        def act(conn, alert) -> str:
            if alert.status == Status.RESOLVED.value:
                return "That alert is already resolved."
            if alert.owner == user:
                return "You own it already."
            conn.execute(update(ALERTS).where(ALERTS.c.id == alert.id).values(owner=user))
            alert = self._reload(conn, alert.id)
            self._edit(conn, alert)
            self._reply(conn, alert, "owner", user=user)
            return "You own this follow-up."
        return self._act(alert_id, user, "take ownership of", act)

    def add_note(self, alert_id: int, user: str, text: str) -> str:
        text = text.strip()
        if not text:
            return "The note is empty."

        # The same words from the same person on the same alert are one note, however often
        # they arrive (a resubmitted form, a retried request).
        digest = hashlib.sha256(f"{user}\n{text}".encode()).hexdigest()

        def act(conn, alert) -> str:
            stmt = outbox.dialect_insert(conn, NOTES).values(alert_id=alert.id, user_id=user, text=text,
                                                             created_at=utcnow(), digest=digest)
            added = conn.execute(stmt.on_conflict_do_nothing(index_elements=["alert_id", "digest"])
                                 .returning(NOTES.c.id)).first()
            if added is None:
                return "That note is in the thread already."
            self._reply(conn, alert, "note", user=user, note=text[:2000])
            return "Note added to the thread."
        return self._act(alert_id, user, "add notes to", act)

    # -- boards ----------------------------------------------------------------------------------

    def local_today(self) -> date:
        return self._now().astimezone(self.catalog.zone).date()

    def post_board(self, as_of: date, channel: str | None = None, chart: bool = True,
                   wait_for_scores: bool = False) -> tuple[str, bool]:
        """Queue the daily scoreboard as of `as_of` (and its chart); False if it was queued before.

        With `wait_for_scores`, a day with no score at all is not queued either (False).
        """
        channel = channel or self.settings.mayor_channel
        key = f"board:{channel}:{as_of.isoformat()}"
        with self.engine.connect() as conn:
            if outbox.exists_key(conn, key):
                return key, False
        board = self.store.scoreboard(as_of)
        if wait_for_scores and all(result.score is None for windows in board.metrics.values()
                                   for result in windows.values()):
            # Nothing scored for that day yet (a first start, a backfill still arriving): a
            # blank board would be posted once and never again. The catch-up job retries.
            log.info("daily board waits: no scores yet", extra={"as_of": as_of.isoformat()})
            return key, False
        previous = self.store.scoreboard(as_of - timedelta(days=1))
        message = board_message(board, previous, self.catalog, self.settings.public_board_url,
                                self.settings.windows[0] if self.settings.windows else "week", chart=chart)
        png = None
        if chart:
            from .chart import chart_png, city_history

            series = city_history(self.store, "day", self.settings.chart_days, as_of)
            png = chart_png(series, f"{self.catalog.city} CityScore (day), {self.settings.chart_days} days "
                                    f"to {as_of.isoformat()}")
        with self.engine.begin() as conn:
            queued = outbox.enqueue_post(conn, key, channel, message)
            if queued and png is not None:
                outbox.enqueue_upload(conn, f"{key}:chart", key, channel, f"cityscore-{as_of.isoformat()}.png",
                                      f"{self.catalog.city} CityScore, last {self.settings.chart_days} days", png,
                                      f"The overall CityScore over the last {self.settings.chart_days} days.")
        if queued:
            self.on_enqueue()
            log.info("daily board queued", extra={"key": key})
        return key, queued

    def post_recap(self, as_of: date, channel: str | None = None) -> tuple[str, bool]:
        """Queue the weekly recap for the week ending `as_of`."""
        channel = channel or self.settings.mayor_channel
        key = f"recap:{channel}:{as_of.isoformat()}"
        with self.engine.connect() as conn:
            if outbox.exists_key(conn, key):
                return key, False
        board = self.store.scoreboard(as_of)
        owners = {m.id: self.routing.owners_of(self.catalog, m.id) for m in self.catalog.metrics}
        with self.engine.begin() as conn:
            queued = outbox.enqueue_post(conn, key, channel, recap_message(board, self.catalog, owners,
                                                                          self.settings.public_board_url))
        if queued:
            self.on_enqueue()
            log.info("weekly recap queued", extra={"key": key})
        return key, queued

    def scheduled_board(self) -> tuple[str, bool]:
        return self.post_board(self.local_today() - timedelta(days=1), wait_for_scores=True)

    def scheduled_recap(self) -> tuple[str, bool]:
        return self.post_recap(self.local_today() - timedelta(days=1))

    def catch_up(self) -> list[str]:
        """Queue today's board and recap if their time has passed (a crash mid-job skips none)."""
        local = self._now().astimezone(self.catalog.zone)
        queued = []
        if local.time() >= self.settings.board_time:
            key, new = self.scheduled_board()
            if new:
                queued.append(key)
        if WEEKDAYS[local.weekday()] == self.settings.recap_day and local.time() >= self.settings.recap_time:
            key, new = self.scheduled_recap()
            if new:
                queued.append(key)
        return queued

    # -- reading -----------------------------------------------------------------------------------

    def alert(self, alert_id: int):
        with self.engine.connect() as conn:
            return conn.execute(select(ALERTS).where(ALERTS.c.id == alert_id)).one_or_none()

    def alerts(self, status: str | None = None) -> list:
        query = select(ALERTS).order_by(ALERTS.c.fired_at, ALERTS.c.id)
        if status == "open":
            query = query.where(ALERTS.c.status != Status.RESOLVED.value)
        elif status:
            query = query.where(ALERTS.c.status == status)
        with self.engine.connect() as conn:
            return conn.execute(query).all()

    def stats(self) -> dict:
        with self.engine.connect() as conn:
            messages = outbox.counts(conn)
            open_alerts = conn.scalar(select(func.count()).select_from(ALERTS).where(
                ALERTS.c.status != Status.RESOLVED.value))
        return {"messages": messages, "alerts_open": open_alerts}


def alert_key(alert) -> str:
    return f"alert:{alert.metric}:{alert.window}:{alert.seq}"
