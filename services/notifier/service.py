"""The notifier's use cases: score changes in, alerts and boards out through the outbox.

Each use case runs in one database transaction: it loads what it needs through the
repository (follow_ups.py), lets the pure rules (lifecycle.py) decide, saves the result
and queues its Slack messages (outbox/queue.py) on the same connection; the outbox's
delivery sends them. So a score change redelivered by Kafka, a scheduled job run twice,
or a button clicked twice changes nothing the second time. People's actions answer with
an `ActionResult`, which the views turn into Slack's answer.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Iterable, Iterator

from sqlalchemy.engine import Engine

from shared.core.cases import OVERDUE
from shared.core.catalog import Catalog, Feed, Kind
from shared.core.score_change import CITY, BadScoreChange, ScoreChange
from shared.core.scoring import WindowScore
from shared.core.staleness import FeedStatus, feed_statuses
from shared.platform.clock import Clock
from shared.core.record import new_note
from shared.store.record import Record
from shared.store.score_reader import ScoreReader

from . import slack_requests
from .at_risk import OLDEST_SHOWN, AtRiskView, at_risk_message, at_risk_reply
from .blocks import (
    AlertView, alert_message, board_message, data_alert_message, escape, metric_scores_message, note_modal,
    recap_message, reply_message,
    span_if_known,
)
from .follow_ups import FollowUps
from .lifecycle import (
    FEED, Alert, Policy, QuietHours, Reading, Status, Track, Transition, acknowledge, at_risk_window, close, evaluate,
    evaluate_condition, feed_transition, fire, move, remind, reminder_due, reply, resolve, risk_of, take_ownership,
    watched_window,
)
from .outbox import Queue
from .routing import Routing
from .settings import WEEKDAYS, NotifierSettings

log = logging.getLogger("cityscore.notifier")


class NotAllowed(Exception):
    """Someone the routing does not let act on an alert tried to; nothing was changed."""

    def __init__(self, user: str, action: str, department: str) -> None:
        super().__init__(f"user {user} may not {action} alerts of {department}: the routing names its responders")
        self.user = user


# The scores topic's message, defined once with the contract (shared/core/score_change.py).
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


class Answer(enum.Enum):
    """What a person's action on an alert came to."""

    NO_SUCH_ALERT = "no such alert"
    ALREADY_RESOLVED = "already resolved"
    ACKNOWLEDGED = "acknowledged"
    ALREADY_ACKNOWLEDGED = "already acknowledged"
    OWNED = "owned"
    ALREADY_OWNED = "already owned"
    NOTE_FORM = "note form"  # the form to write a note in is to be opened
    NOTE_ADDED = "note added"
    NOTE_ALREADY_THERE = "note already there"
    EMPTY_NOTE = "empty note"
    DATA_ALERT = "data alert"  # a data alert takes no action: it resolves when data arrives


@dataclass(frozen=True)
class ActionResult:
    answer: Answer
    alert: Alert | None = None
    note_form: dict | None = None  # NOTE_FORM: the modal view to open

    @property
    def text(self) -> str:
        """The answer in words, as Slack shows it to the person who acted."""
        if self.answer is Answer.ALREADY_ACKNOWLEDGED:
            return f"Already acknowledged by <@{self.alert.acknowledged_by}>."
        return _ANSWERS[self.answer]


_ANSWERS = {
    Answer.NO_SUCH_ALERT: "That alert does not exist.",
    Answer.ALREADY_RESOLVED: "That alert is already resolved.",
    Answer.ACKNOWLEDGED: "Acknowledged: reminders stop.",
    Answer.OWNED: "You own this follow-up.",
    Answer.ALREADY_OWNED: "You own it already.",
    Answer.NOTE_FORM: "note form opened",
    Answer.NOTE_ADDED: "Note added to the thread.",
    Answer.NOTE_ALREADY_THERE: "That note is in the thread already.",
    Answer.EMPTY_NOTE: "The note is empty.",
    Answer.DATA_ALERT: "A data alert takes no action: it resolves when the feed's data arrives again.",
}


@dataclass(frozen=True)
class Work:
    """One use case's transaction: the alerts and the outbox on its connection."""

    alerts: FollowUps
    outbox: Queue


class Notifier:
    def __init__(self, engine: Engine, catalog: Catalog, settings: NotifierSettings, routing: Routing, clock: Clock,
                 *, store: ScoreReader | None = None, on_enqueue: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.catalog = catalog
        self.settings = settings
        self.routing = routing
        self.clock = clock
        self.store = store or ScoreReader(engine, catalog)
        self.on_enqueue = on_enqueue or (lambda: None)
        quiet = settings.quiet
        self.policy = Policy(settings.fire_after, settings.resolve_after, settings.repeat_interval,
                             QuietHours(quiet[0], quiet[1], catalog.zone) if quiet else None)
        self.departments = {d.id: d.name for d in catalog.departments}

    def _now(self) -> datetime:
        # Stored in UTC: SQLite keeps timestamps as text without their offset.
        return self.clock.now().astimezone(timezone.utc)

    @contextmanager
    def _work(self) -> Iterator[Work]:
        with self.engine.begin() as conn:
            yield Work(FollowUps(conn), Queue(conn))

    @contextmanager
    def _reading(self) -> Iterator[Work]:
        with self.engine.connect() as conn:
            yield Work(FollowUps(conn), Queue(conn))

    # -- score changes -----------------------------------------------------------------------

    def handle_changes(self, payloads: Iterable[dict]) -> int:
        """Apply a batch of score changes in one transaction; returns how many counted.

        A change of a case-fed metric's score is an evaluation of its early warning too (the
        window's at-risk alert), with its overdue cases at the end of the change's day, read first."""
        changes = []
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
            changes.append(change)
        days = {change.as_of for change in changes if self._watched(change.metric, change.window)}
        overdue = {day: self.store.backlogs(day) for day in sorted(days)}
        applied = 0
        with self._work() as work:
            for change in changes:
                if self._apply(work, change):
                    applied += 1
                    if change.as_of in overdue and self._watched(change.metric, change.window):
                        self._evaluate_risk(work, change.metric, change.window,
                                            Reading(change.score, change.numerator, change.denominator, change.as_of),
                                            overdue[change.as_of][change.metric].overdue)
        if applied:
            self.on_enqueue()
        return applied

    def _apply(self, work: Work, change: ScoreChange) -> bool:
        track = work.alerts.track(change.metric, change.window)
        if not supersedes(change, track.seq, track.changed_at):
            return False  # redelivered, or older than what we applied
        self._evaluate(work, replace(track, changed_at=change.changed_at, seq=change.seq),
                       Reading(change.score, change.numerator, change.denominator, change.as_of))
        return True

    def _evaluate(self, work: Work, track: Track, reading: Reading) -> None:
        """One evaluation of a (metric, window): a score change, or a look at a steady score."""
        alert = work.alerts.open_alert(track.metric, track.window)
        streak, transition = evaluate(track.streak, alert.status if alert else None, reading.score, self.policy)
        work.alerts.save_track(replace(track, streak=streak, reading=reading, evaluated_at=self._now()))
        if transition is Transition.FIRE:
            self._fire(work, track.metric, track.window, reading, previous=track.reading.score)
        elif transition is Transition.CHANGE:
            self._change(work, alert, reading)
        elif transition is Transition.RESOLVE:
            self._resolve(work, alert, reading)

    def evaluate_steady(self) -> int:
        """Re-evaluate scores that have not changed for an evaluation interval (a steady score counts)."""
        cutoff = self._now() - timedelta(seconds=self.settings.evaluate_every_s)
        done = 0
        with self._work() as work:
            for metric, window in work.alerts.steady(self.settings.windows, cutoff):
                if metric not in self.catalog.by_id:
                    continue
                track = work.alerts.track(metric, window)
                self._evaluate(work, track, track.reading)
                done += 1
        if done:
            self.on_enqueue()
        return done

    # -- alert messages ----------------------------------------------------------------------

    def _view(self, alert: Alert, previous: float | None = None) -> AlertView:
        metric = self.catalog.by_id[alert.metric]
        reading = alert.reading
        return AlertView(alert.id, metric, alert.window, alert.status.value, reading.score, reading.numerator,
                         reading.denominator, previous if previous is not None else alert.first_score,
                         alert.first_score, self.departments.get(metric.department, metric.department),
                         self.routing.owners_of(self.catalog, alert.metric), alert.acknowledged_by, alert.owner,
                         reading.as_of, span_if_known(self.catalog, alert.window, reading.as_of))

    def _message(self, work: Work, alert: Alert, previous: float | None = None) -> dict:
        """The alert's own message: an at-risk alert's, or a follow-up's."""
        if watched_window(alert.window) is not None:
            return at_risk_message(self._risk_view(work, alert))
        return alert_message(self._view(alert, previous))

    def _reply_message(self, work: Work, alert: Alert, kind: str, **extra) -> dict:
        if watched_window(alert.window) is not None:
            return at_risk_reply(kind, self._risk_view(work, alert), **extra)
        return reply_message(kind, self._view(alert), **extra)

    def _hold(self) -> datetime | None:
        now = self._now()
        release = self.policy.release(now).astimezone(timezone.utc)
        return release if release > now else None

    def _reply(self, work: Work, alert: Alert, kind: str, **extra) -> Alert:
        """A reply in the alert's thread (held in quiet hours); returns the alert that counts it."""
        message = self._reply_message(work, alert, kind, **extra)
        alert = reply(alert)
        work.alerts.save(alert)
        work.outbox.post(f"{alert.key}:reply:{alert.replies}", alert.channel, message,
                         parent_key=alert.post_key, not_before=self._hold())
        return alert

    def _edit(self, work: Work, alert: Alert) -> None:
        work.outbox.update(f"{alert.key}:update", alert.post_key, self._message(work, alert))

    def _fire(self, work: Work, metric: str, window: str, reading: Reading, previous: float | None) -> None:
        route = self.routing.route(self.catalog, metric)
        held = self._hold()
        alert = work.alerts.add(fire(metric, window, work.alerts.next_seq(metric, window), route.channel, reading,
                                     self._now(), held))
        work.outbox.post(alert.post_key, route.channel, self._message(work, alert, previous), not_before=held)
        log.info("alert fired", extra={"metric": metric, "window": window, "seq": alert.seq, "score": reading.score,
                                       "held_until": held.isoformat() if held else None})

    def _change(self, work: Work, alert: Alert, reading: Reading) -> None:
        moved = move(alert, reading, self.policy)
        if moved is None:
            return
        work.alerts.save(moved.alert)
        self._edit(work, moved.alert)
        if moved.note:
            self._reply(work, moved.alert, moved.note)

    def _resolve(self, work: Work, alert: Alert, reading: Reading) -> None:
        alert = resolve(alert, reading, self._now())
        work.alerts.save(alert)
        if work.outbox.cancel_unsent(alert.post_key):
            log.info("alert resolved before it was sent; withdrawn", extra={"key": alert.key})
            return
        self._edit(work, alert)
        self._reply(work, alert, "resolved")
        log.info("alert resolved", extra={"key": alert.key, "score": reading.score})

    def send_reminders(self) -> int:
        """Remind about firing alerts that nobody acknowledged within the repeat interval.

        Alerts of metrics that left the catalog are closed first (`close_orphans`): they
        cannot be reminded about (the metric's name and owners are gone) and would
        otherwise stop this job every time it runs.
        """
        self.close_orphans()
        now = self._now()
        sent = 0
        with self._work() as work:
            # A data alert is told once and resolves by itself (check_feeds): no reminders.
            firing = [alert for alert in work.alerts.firing()
                      if alert.metric in self.catalog.by_id and alert.window != FEED]
            posted = work.outbox.sent(alert.post_key for alert in firing)
            for alert in firing:
                if alert.post_key not in posted:
                    continue  # the alert itself has not reached Slack yet
                if not reminder_due(alert.reminder_times, now, self.policy):
                    continue
                alert = remind(alert, now)
                work.alerts.save(alert)
                work.outbox.post(f"{alert.key}:reminder:{alert.reminders}", alert.channel,
                                 self._reply_message(work, alert, "reminder"), parent_key=alert.post_key)
                sent += 1
        if sent:
            self.on_enqueue()
        return sent

    def close_orphans(self) -> int:
        """Resolve the open alerts of metrics no longer in the catalog, recording why.

        Nothing else would resolve them: no score of such a metric is read any more. The
        alert's message loses its buttons and its thread says why; each is logged once
        (a warning), since a closed alert is not looked at again. Returns how many.
        """
        closed = 0
        with self._work() as work:
            for alert in work.alerts.open_outside(self.catalog.by_id):
                self._close(work, alert, f"{alert.metric} is no longer in the catalog")
                closed += 1
                log.warning("alert closed: its metric is no longer in the catalog",
                            extra={"key": alert.key, "metric": alert.metric, "window": alert.window})
        if closed:
            self.on_enqueue()
        return closed

    # -- data alerts (stale feeds) ----------------------------------------------------------------

    def check_feeds(self) -> int:
        """Raise a data alert for each metric whose feed went stale, resolve those flowing again.

        As of yesterday, the day the daily board shows, by the stale-feed rule of the board
        (shared/core/staleness.py, docs/scoring.md §4c). One transaction: the metric's track of
        the window "feed" is locked first, so two notifiers (or a job run twice) see each other's
        alert and raise one; the alert's post is queued with it, so a crash raises none or one.
        Returns how many alerts fired, changed or resolved.
        """
        as_of = self.local_today() - timedelta(days=1)
        statuses = feed_statuses(self.catalog.metrics, self.store.last_data(as_of), as_of)
        done = 0
        with self._work() as work:
            for metric_id, feed in statuses.items():
                track = work.alerts.track(metric_id, FEED)  # the lock
                alert = work.alerts.open_alert(metric_id, FEED)
                transition = feed_transition(feed.stale, feed.last_data, alert)
                work.alerts.save_track(replace(track, reading=Reading(None, as_of=feed.last_data),
                                               evaluated_at=self._now()))
                if transition is Transition.NONE:
                    continue
                done += 1
                reading = Reading(None, as_of=feed.last_data)
                if transition is Transition.FIRE:
                    route = self.routing.route(self.catalog, metric_id)
                    held = self._hold()
                    alert = work.alerts.add(fire(metric_id, FEED, work.alerts.next_seq(metric_id, FEED),
                                                 route.channel, reading, self._now(), held))
                    work.outbox.post(alert.post_key, route.channel, self._data_message(alert, feed, as_of),
                                     not_before=held)
                    log.info("data alert fired", extra={"metric": metric_id, "last_data": str(feed.last_data),
                                                        "expected": feed.expected})
                elif transition is Transition.CHANGE:
                    alert = replace(alert, reading=reading)
                    work.alerts.save(alert)
                    work.outbox.update(f"{alert.key}:update", alert.post_key, self._data_message(alert, feed, as_of))
                else:
                    alert = resolve(alert, reading, self._now())
                    work.alerts.save(alert)
                    if work.outbox.cancel_unsent(alert.post_key):
                        continue  # it never reached Slack: nothing to tell
                    message = self._data_message(alert, feed, as_of)
                    work.outbox.update(f"{alert.key}:update", alert.post_key, message)
                    alert = reply(alert)
                    work.alerts.save(alert)
                    work.outbox.post(f"{alert.key}:reply:{alert.replies}", alert.channel, message,
                                     parent_key=alert.post_key, not_before=self._hold())
                    log.info("data alert resolved", extra={"metric": metric_id, "last_data": str(feed.last_data)})
            # A metric whose catalog entry no longer says how often data should arrive: nothing
            # would resolve its open data alert (a metric gone from the catalog is close_orphans').
            for alert in work.alerts.open_of_window(FEED):
                if alert.metric in statuses or alert.metric not in self.catalog.by_id:
                    continue
                self._close(work, alert, f"{alert.metric} no longer expects data (its catalog entry has no "
                                         "expect_data)")
                done += 1
        if done:
            self.on_enqueue()
        return done

    def _data_message(self, alert: Alert, feed: FeedStatus, as_of: date) -> dict:
        metric = self.catalog.by_id[alert.metric]
        return data_alert_message(metric, feed, as_of, resolved=alert.status is Status.RESOLVED,
                                  department=self.departments.get(metric.department, metric.department),
                                  owners=self.routing.owners_of(self.catalog, alert.metric))

    def _close(self, work: Work, alert: Alert, reason: str) -> None:
        """Close an open alert for `reason`, edit its message and tell its thread (plain text: the
        metric's name, owners and buttons came from a catalog entry that may be gone)."""
        alert = close(alert, reason, self._now())
        work.alerts.save(alert)
        if work.outbox.cancel_unsent(alert.post_key):
            return  # it never reached Slack: nothing to tell
        if alert.window == FEED:
            text = f"Data alert closed: {reason}, so its feed is no longer watched."
        elif watched_window(alert.window) is not None:
            text = (f"At-risk alert closed: {reason}, so its {watched_window(alert.window)} backlog is no longer "
                    "watched.")
        else:
            text = f"Follow-up closed: {reason}, so its {alert.window} score is no longer followed up."
        message = {"text": text, "blocks": [{"type": "section", "text": {"type": "plain_text", "text": text}}]}
        work.outbox.update(f"{alert.key}:update", alert.post_key, message)
        alert = reply(alert)
        work.alerts.save(alert)
        work.outbox.post(f"{alert.key}:reply:{alert.replies}", alert.channel, message, parent_key=alert.post_key)

    # -- early warnings (at-risk alerts, docs/architecture.md) -----------------------------------

    def _watched(self, metric_id: str, window: str) -> bool:
        """Whether the (metric, window) has an early warning: turned on, an alert window of the catalog,
        and a metric with a projected score (a case-fed ratio)."""
        metric = self.catalog.by_id.get(metric_id)
        return (self.settings.at_risk and window in self.settings.windows and window in self.catalog.windows
                and metric is not None and metric.feed is Feed.CASES and metric.kind is Kind.RATIO)

    def _evaluate_risk(self, work: Work, metric_id: str, window: str, reading: Reading, overdue: int) -> bool:
        """One evaluation of the (metric, window)'s early warning: the window's score `reading` and the
        metric's `overdue` cases at the end of its day. Fires, edits or resolves its at-risk alert by
        the follow-up's rules (damped by the same streaks); True when it did one of these."""
        metric = self.catalog.by_id[metric_id]
        span = span_if_known(self.catalog, window, reading.as_of)
        risk = risk_of(metric, reading, overdue, span[1] if span else reading.as_of or self.local_today())
        if risk is None:
            return False
        name = at_risk_window(window)
        track = work.alerts.track(metric_id, name)  # the lock: one evaluation at a time
        alert = work.alerts.open_alert(metric_id, name)
        streak, transition = evaluate_condition(track.streak, alert.status if alert else None, risk.at_risk,
                                                self.policy)
        work.alerts.save_track(replace(track, streak=streak, reading=reading, evaluated_at=self._now()))
        if transition is Transition.FIRE:
            route = self.routing.route(self.catalog, metric_id)
            held = self._hold()
            alert = work.alerts.add(fire(metric_id, name, work.alerts.next_seq(metric_id, name), route.channel,
                                         risk.projected, self._now(), held))
            work.outbox.post(alert.post_key, route.channel, self._message(work, alert), not_before=held)
            log.info("at-risk alert fired", extra={"metric": metric_id, "window": window, "seq": alert.seq,
                                                   "score": reading.score, "projected": risk.projected.score,
                                                   "overdue": overdue})
        elif transition is Transition.CHANGE:
            moved = move(alert, risk.projected, self.policy)
            if moved is None:
                return False
            work.alerts.save(moved.alert)
            self._edit(work, moved.alert)
            if moved.note:
                self._reply(work, moved.alert, moved.note)
        elif transition is Transition.RESOLVE:
            self._resolve(work, alert, risk.projected)
        return transition is not Transition.NONE

    def _risk_view(self, work: Work, alert: Alert) -> AtRiskView:
        """An at-risk alert as its message shows it: the window's score as last evaluated (its track),
        the projected score (the alert's reading) and, while it is open, its oldest overdue cases."""
        window = watched_window(alert.window)
        metric = self.catalog.by_id[alert.metric]
        now = work.alerts.reading_of(alert.metric, alert.window)
        projected = alert.reading
        # The projected denominator is the score's grown by the overdue cases (cases.projected).
        overdue = max(round((projected.denominator or 0) - (now.denominator or 0)), 0)
        oldest = ()
        if alert.status is not Status.RESOLVED and projected.as_of is not None and overdue > 0:
            _, overdue_oldest = self.store.case_page(alert.metric, projected.as_of, OVERDUE, limit=OLDEST_SHOWN,
                                                     oldest_first=True)  # only those shown are read
            oldest = tuple(overdue_oldest)
        view = AlertView(alert.id, metric, window, alert.status.value, now.score, now.numerator, now.denominator,
                         None, now.score, self.departments.get(metric.department, metric.department),
                         self.routing.owners_of(self.catalog, alert.metric), alert.acknowledged_by, alert.owner,
                         projected.as_of, span_if_known(self.catalog, window, projected.as_of))
        return AtRiskView(view, WindowScore(projected.score, projected.numerator, projected.denominator),
                          alert.first_score, overdue, self.catalog.zone, oldest)

    def check_at_risk(self) -> int:
        """Evaluate every early warning (scheduled: a backlog grows with time alone, and cases that
        open and stay open change no score).

        As of yesterday, the day the scorer scores and the board shows (docs/scoring.md §3): each
        watched (metric, window)'s score as the board has it and the metric's overdue cases at the
        end of that day, in one transaction. Open at-risk alerts no longer watched close,
        saying why (early warnings turned off, a window no longer alerted on, a metric without a
        projected score); those of metrics gone from the catalog are close_orphans'. Returns how many
        alerts fired, moved, resolved or closed.
        """
        as_of = self.local_today() - timedelta(days=1)
        watched = sorted((metric.id, window) for metric in self.catalog.metrics for window in self.settings.windows
                         if self._watched(metric.id, window))
        board = self.store.scoreboard(as_of) if watched else None
        backlogs = self.store.backlogs(as_of) if watched else {}
        done = 0
        with self._work() as work:
            for metric_id, window in watched:
                result = board.metrics[metric_id][window]
                reading = Reading(result.score, result.numerator, result.denominator, as_of)
                if self._evaluate_risk(work, metric_id, window, reading, backlogs[metric_id].overdue):
                    done += 1
            for alert in work.alerts.open_at_risk():
                window = watched_window(alert.window)
                if (alert.metric, window) in watched or alert.metric not in self.catalog.by_id:
                    continue
                if not self.settings.at_risk:
                    reason = "early warnings are turned off (NOTIFIER_AT_RISK)"
                elif window not in self.settings.windows or window not in self.catalog.windows:
                    reason = f"the {window} window is no longer alerted on"
                else:
                    reason = f"{alert.metric} has no projected score (it is not a ratio of cases)"
                self._close(work, alert, reason)
                done += 1
        if done:
            self.on_enqueue()
        return done

    # -- requests from Slack -------------------------------------------------------------------

    def first_sight(self, timestamp: int, signature: str, now: datetime) -> bool:
        """Record a verified Slack request; False if it was seen before (a replay), by any replica."""
        with self.engine.begin() as conn:
            return slack_requests.first_sight(conn, timestamp, signature, now)

    # -- people acting on alerts ---------------------------------------------------------------

    def _allow(self, alert: Alert, user: str, action: str) -> None:
        if not self.routing.may_act(self.catalog, alert.metric, user):
            metric = self.catalog.by_id.get(alert.metric)
            refusal = NotAllowed(user, action, metric.department if metric else alert.metric)
            log.warning("slack action refused", extra={"alert": alert.id, "user": user, "action": action,
                                                       "reason": str(refusal)})
            raise refusal

    def _act(self, alert_id: int, user: str, action: str,
             act: Callable[[Work, Alert], ActionResult]) -> ActionResult:
        """`act` on the alert, locked, if `user` may `action` it (NotAllowed if not)."""
        with self._work() as work:
            alert = work.alerts.get(alert_id, lock=True)
            if alert is None:
                return ActionResult(Answer.NO_SUCH_ALERT)
            if alert.window == FEED:
                # Its message has no buttons; an action sent anyway would redraw it as a follow-up.
                return ActionResult(Answer.DATA_ALERT, alert)
            self._allow(alert, user, action)
            result = act(work, alert)
        self.on_enqueue()
        return result

    def _apply_rule(self, alert_id: int, user: str, action: str, rule: Callable[[Alert], Alert], done: Answer,
                    unchanged: Answer, reply_kind: str) -> ActionResult:
        """A person's `rule` on the alert: what it changed is saved, the message edited and the
        thread told; when it changed nothing, the answer says why (resolved, or `unchanged`)."""
        def act(work: Work, alert: Alert) -> ActionResult:
            changed = rule(alert)
            if changed == alert:
                return ActionResult(Answer.ALREADY_RESOLVED if alert.status is Status.RESOLVED else unchanged, alert)
            work.alerts.save(changed)
            self._edit(work, changed)
            return ActionResult(done, self._reply(work, changed, reply_kind, user=user))
        return self._act(alert_id, user, action, act)

    def acknowledge(self, alert_id: int, user: str) -> ActionResult:
        return self._apply_rule(alert_id, user, "acknowledge", lambda alert: acknowledge(alert, user, self._now()),
                                Answer.ACKNOWLEDGED, Answer.ALREADY_ACKNOWLEDGED, "acknowledged")

    def take_ownership(self, alert_id: int, user: str) -> ActionResult:
        return self._apply_rule(alert_id, user, "take ownership of", lambda alert: take_ownership(alert, user),
                                Answer.OWNED, Answer.ALREADY_OWNED, "owner")

    def note_form(self, alert_id: int, user: str) -> ActionResult:
        """The form in which `user` writes a note on the alert (NotAllowed if they may not)."""
        with self._reading() as work:
            alert = work.alerts.get(alert_id)
        if alert is None:
            return ActionResult(Answer.NO_SUCH_ALERT)
        if alert.window == FEED:
            return ActionResult(Answer.DATA_ALERT, alert)
        self._allow(alert, user, "add notes to")
        return ActionResult(Answer.NOTE_FORM, alert, note_modal(alert_id, self.catalog.by_id[alert.metric],
                                                                alert.reading.as_of or self.local_today()))

    def add_note(self, alert_id: int, user: str, text: str, day: date | None = None,
                 public: bool = False) -> ActionResult:
        """A note in the alert's thread that is also kept on the record of its metric's `day` (the
        alert's as-of day by default: what a manager writes explains the score the alert shows),
        internal unless `public`; the metric page, its chart and the monthly packet show it."""
        text = text.strip()
        if not text:
            return ActionResult(Answer.EMPTY_NOTE)

        # The same words from the same person on the same alert are one note, however often
        # they arrive (a resubmitted form, a retried request).
        digest = hashlib.sha256(f"{user}\n{text}".encode()).hexdigest()

        def act(work: Work, alert: Alert) -> ActionResult:
            kept = new_note(metric=alert.metric, day=day or alert.reading.as_of or self.local_today(), text=text,
                            author=user, created_at=self._now(), public=public, alert_id=alert.id)
            if not work.alerts.add_note(alert.id, user, text, digest, self._now()):
                if public:  # the same note sent again public: the one on the record is published
                    Record(work.alerts.conn).add_note(kept)
                return ActionResult(Answer.NOTE_ALREADY_THERE, alert)
            Record(work.alerts.conn).add_note(kept)
            return ActionResult(Answer.NOTE_ADDED, self._reply(work, alert, "note", user=user, note=text[:2000]))
        return self._act(alert_id, user, "add notes to", act)

    def answer_command(self, words: str) -> dict:
        """The answer to `/cityscore WORDS`, seen only by whoever asked: the board, help, or one metric."""
        words = words.strip()
        as_of = self.local_today() - timedelta(days=1)
        if words.lower() in ("", "board"):
            board = self.store.scoreboard(as_of)._replace(last_data=self.store.last_data(as_of))  # stale feeds
            previous = self.store.scoreboard(as_of - timedelta(days=1))
            message = board_message(board, previous, self.catalog, self.settings.public_board_url,
                                    self.settings.windows[0] if self.settings.windows else "week", chart=False)
            return {"response_type": "ephemeral", **message}
        if words.lower() == "help":
            return {"response_type": "ephemeral",
                    "text": "`/cityscore` the scoreboard · `/cityscore METRIC` one metric's scores "
                            "(its id, e.g. pothole-on-time, or part of its name)"}
        wanted = words.lower()
        metric = self.catalog.by_id.get(wanted) or next(
            (m for m in self.catalog.metrics if wanted in m.name.lower()), None)
        if metric is None:
            return {"response_type": "ephemeral",
                    "text": f"No metric matches “{escape(words)}”. Try `/cityscore help`."}
        scores = self.store.scoreboard(as_of).metrics[metric.id]
        return {"response_type": "ephemeral", **metric_scores_message(metric, scores, as_of, self.catalog.windows)}

    # -- boards ----------------------------------------------------------------------------------

    def local_today(self) -> date:
        return self._now().astimezone(self.catalog.zone).date()

    def _queued_before(self, key: str) -> bool:
        with self._reading() as work:
            return work.outbox.has(key)

    def post_board(self, as_of: date, channel: str | None = None, chart: bool = True,
                   wait_for_scores: bool = False) -> tuple[str, bool]:
        """Queue the daily scoreboard as of `as_of` (and its chart); False if it was queued before.

        With `wait_for_scores`, a day with no score at all is not queued either (False).
        """
        channel = channel or self.settings.mayor_channel
        key = f"board:{channel}:{as_of.isoformat()}"
        if self._queued_before(key):
            return key, False
        board = self.store.scoreboard(as_of)
        if wait_for_scores and all(result.score is None for windows in board.metrics.values()
                                   for result in windows.values()):
            # Nothing scored for that day yet (a first start, a backfill still arriving): a
            # blank board would be posted once and never again. The catch-up job retries.
            log.info("daily board waits: no scores yet", extra={"as_of": as_of.isoformat()})
            return key, False
        previous = self.store.scoreboard(as_of - timedelta(days=1))
        board = board._replace(last_data=self.store.last_data(as_of))  # to mark stale feeds
        message = board_message(board, previous, self.catalog, self.settings.public_board_url,
                                self.settings.windows[0] if self.settings.windows else "week", chart=chart)
        png = None
        if chart:
            from .chart import chart_png, city_history

            series = city_history(self.store, "day", self.settings.chart_days, as_of)
            png = chart_png(series, f"{self.catalog.city} CityScore (day), {self.settings.chart_days} days "
                                    f"to {as_of.isoformat()}")
        with self._work() as work:
            queued = work.outbox.post(key, channel, message)
            if queued and png is not None:
                work.outbox.upload(f"{key}:chart", key, channel, f"cityscore-{as_of.isoformat()}.png",
                                   f"{self.catalog.city} CityScore, last {self.settings.chart_days} days", png,
                                   f"The overall CityScore over the last {self.settings.chart_days} days.")
        if queued:
            self.on_enqueue()
            log.info("daily board queued", extra={"key": key})
        return key, queued

    def post_recap(self, as_of: date, channel: str | None = None) -> tuple[str, bool]:
        """Queue the weekly recap of the catalog's week as of `as_of` (its trailing days to it, or the last
        complete calendar week: a Monday's recap, as of Sunday, reports the week that ended then)."""
        channel = channel or self.settings.mayor_channel
        key = f"recap:{channel}:{as_of.isoformat()}"
        if self._queued_before(key):
            return key, False
        board = self.store.scoreboard(as_of)
        owners = {m.id: self.routing.owners_of(self.catalog, m.id) for m in self.catalog.metrics}
        with self._work() as work:
            queued = work.outbox.post(key, channel, recap_message(board, self.catalog, owners,
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

    def alert(self, alert_id: int) -> Alert | None:
        with self._reading() as work:
            return work.alerts.get(alert_id)

    def alerts(self, status: str | None = None) -> list[Alert]:
        """Alerts by when they fired: all, 'open' (not resolved), or of one status."""
        with self._reading() as work:
            return work.alerts.listed(status)

    def delivery_states(self, keys: Iterable[str]) -> dict[str, str]:
        """What became of these outbox messages so far (pending, sent, failed, cancelled)."""
        with self._reading() as work:
            return work.outbox.states(keys)

    def stats(self) -> dict:
        with self._reading() as work:
            return {"messages": work.outbox.counts(), "alerts_open": work.alerts.count_open()}
