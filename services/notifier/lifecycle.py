"""The follow-up alert lifecycle as pure rules (after Prometheus Alertmanager).

No SQL, no Slack, no clock: callers pass the state and the time in, and get the
decision back. An alert is identified by (metric, window); it fires after the score
has been below 1 for `fire_after` consecutive evaluations and resolves after
`resolve_after` consecutive evaluations at or above 1, so a score that flaps around
1 neither fires nor resolves. An evaluation is a score change from the scorer, or a
periodic look at an unchanged score.

The alert itself is a plain value (`Alert`); each rule below takes one and returns the
next one, and the notifier's use cases (service.py) load it, apply a rule and save it
through the repository (follow_ups.py). People's actions are rules too: acknowledging,
taking ownership.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from shared.core.cases import projected
from shared.core.catalog import Metric
from shared.core.scoring import WindowScore, standing


class Status(str, enum.Enum):
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Transition(str, enum.Enum):
    NONE = "none"  # nothing to tell
    FIRE = "fire"  # open a new alert
    CHANGE = "change"  # the open alert's score moved: edit its message
    RESOLVE = "resolve"  # close the open alert in place


@dataclass(frozen=True)
class QuietHours:
    """A nightly span of local time in which alerts and reminders wait for the morning."""

    start: time
    end: time
    zone: ZoneInfo

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # spans midnight

    def release(self, moment: datetime) -> datetime:
        """When something held at `moment` may go out: `moment` itself outside quiet hours."""
        if not self.contains(moment):
            return moment
        local = moment.astimezone(self.zone)
        end = datetime.combine(local.date(), self.end, tzinfo=self.zone)
        if end <= local:
            end = datetime.combine(local.date() + timedelta(days=1), self.end, tzinfo=self.zone)
        return end


@dataclass(frozen=True)
class Policy:
    fire_after: int = 2
    resolve_after: int = 2
    repeat_interval: timedelta = timedelta(hours=4)
    quiet: QuietHours | None = None
    # A thread reply on a further drop of at least this much (chat.update shows every change).
    notable_drop: float = 0.05

    def release(self, moment: datetime) -> datetime:
        return self.quiet.release(moment) if self.quiet else moment

    def is_quiet(self, moment: datetime) -> bool:
        return self.quiet.contains(moment) if self.quiet else False


@dataclass(frozen=True)
class Streak:
    """Consecutive evaluations below 1 and at or above 1 (one of the two is always 0)."""

    below: int = 0
    at_or_above: int = 0

    def observe(self, score: float | None) -> "Streak":
        if score is None:
            return self  # no data says nothing either way
        return self.seen(standing(score) == "below")  # as shown: 0.996 reads 1.00 and is on target

    def seen(self, holds: bool | None) -> "Streak":
        """One more evaluation in which the alert's condition `holds` (below 1; at risk), or not;
        None says nothing either way."""
        if holds is None:
            return self
        return Streak(self.below + 1, 0) if holds else Streak(0, self.at_or_above + 1)


def evaluate(streak: Streak, open_status: Status | None, score: float | None, policy: Policy) -> tuple[Streak, Transition]:
    """One evaluation of a (metric, window): the new streak and what the alert must do."""
    return evaluate_condition(streak, open_status, None if score is None else standing(score) == "below", policy)


def evaluate_condition(streak: Streak, open_status: Status | None, holds: bool | None,
                       policy: Policy) -> tuple[Streak, Transition]:
    """`evaluate` for any alert's condition: it fires after `fire_after` evaluations in a row in
    which it holds, resolves after `resolve_after` in which it does not; None (no score) says nothing."""
    if holds is None:
        return streak, Transition.NONE
    streak = streak.seen(holds)
    if open_status is None or open_status is Status.RESOLVED:
        return streak, (Transition.FIRE if streak.below >= policy.fire_after else Transition.NONE)
    if streak.at_or_above >= policy.resolve_after:
        return streak, Transition.RESOLVE
    return streak, Transition.CHANGE


def thread_note(noted_score: float | None, score: float | None, policy: Policy) -> str | None:
    """Whether a change of an open alert's score deserves a thread reply, and which kind.

    Only a move of `notable_drop` or more from the score last told in the thread is
    told ("worse", "better", "recovering" when it is back at or above 1); smaller moves,
    such as a score wobbling around 1, only edit the message.
    """
    if score is None or noted_score is None or abs(score - noted_score) < policy.notable_drop:
        return None
    if score < noted_score:
        return "worse"
    return "recovering" if standing(score) != "below" else "better"


@dataclass(frozen=True)
class ReminderTimes:
    """The times of an open alert that decide its reminders (not a clock: `now` is given to `reminder_due`)."""

    status: Status
    fired_at: datetime
    held_until: datetime | None = None
    last_reminded_at: datetime | None = None


def reminder_due(alert: ReminderTimes, now: datetime, policy: Policy) -> bool:
    """An unacknowledged alert reminds every repeat interval, never in quiet hours."""
    if alert.status is not Status.FIRING or policy.is_quiet(now):
        return False
    announced = max(alert.fired_at, alert.held_until or alert.fired_at)
    last = alert.last_reminded_at or announced
    return now - last >= policy.repeat_interval


@dataclass(frozen=True)
class Reading:
    """A (metric, window)'s score as the scorer last gave it, with what it is made of."""

    score: float | None
    numerator: float | None = None
    denominator: float | None = None
    as_of: date | None = None


@dataclass(frozen=True)
class Track:
    """What the notifier last saw of one (metric, window): its streaks and its last reading."""

    metric: str
    window: str
    streak: Streak = Streak()
    reading: Reading = Reading(None)
    # The newest score change applied (the scorer's clock and sequence); older ones are ignored.
    changed_at: datetime | None = None
    seq: int | None = None
    evaluated_at: datetime | None = None


@dataclass(frozen=True)
class Alert:
    """One follow-up alert of a (metric, window), as the rules see it."""

    id: int | None
    metric: str
    window: str
    seq: int  # the how-manieth alert of this (metric, window)
    status: Status
    channel: str
    fired_at: datetime
    reading: Reading
    first_score: float | None = None
    noted_score: float | None = None  # the score last told in the thread
    held_until: datetime | None = None  # quiet hours
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    owner: str | None = None
    last_reminded_at: datetime | None = None
    reminders: int = 0
    replies: int = 0  # numbers the thread replies' outbox keys
    resolved_at: datetime | None = None
    resolved_reason: str | None = None  # why, when its score did not recover

    @property
    def key(self) -> str:
        return f"alert:{self.metric}:{self.window}:{self.seq}"

    @property
    def post_key(self) -> str:
        """The outbox key of the alert's own message; edits and thread replies hang on it."""
        return f"{self.key}:post"

    @property
    def reminder_times(self) -> ReminderTimes:
        return ReminderTimes(self.status, self.fired_at, self.held_until, self.last_reminded_at)


def fire(metric: str, window: str, seq: int, channel: str, reading: Reading, now: datetime,
         held_until: datetime | None) -> Alert:
    """A new firing alert (not saved yet: no id)."""
    return Alert(None, metric, window, seq, Status.FIRING, channel, now, reading, first_score=reading.score,
                 noted_score=reading.score, held_until=held_until)


@dataclass(frozen=True)
class Moved:
    """An open alert after its score moved, and the thread reply the move deserves (if any)."""

    alert: Alert
    note: str | None


def move(alert: Alert, reading: Reading, policy: Policy) -> Moved | None:
    """The open alert with its new reading; None when the reading is the one it has."""
    if alert.reading == reading:
        return None
    note = thread_note(alert.noted_score, reading.score, policy)
    return Moved(replace(alert, reading=reading, noted_score=reading.score if note else alert.noted_score), note)


def resolve(alert: Alert, reading: Reading, now: datetime) -> Alert:
    """Closed in place: its score is back at or above 1."""
    return replace(alert, status=Status.RESOLVED, resolved_at=now, reading=reading)


def close(alert: Alert, reason: str, now: datetime) -> Alert:
    """Closed for `reason` while its score did not recover (e.g. its metric left the catalog)."""
    return replace(alert, status=Status.RESOLVED, resolved_at=now, resolved_reason=reason)


def remind(alert: Alert, now: datetime) -> Alert:
    return replace(alert, reminders=alert.reminders + 1, last_reminded_at=now)


def reply(alert: Alert) -> Alert:
    """The alert with one more thread reply; its `replies` numbers the new one."""
    return replace(alert, replies=alert.replies + 1)


Acknowledgeable = TypeVar("Acknowledgeable", Alert, ReminderTimes)


def acknowledge(alert: Acknowledgeable, by: str | None = None, at: datetime | None = None) -> Acknowledgeable:
    """Acknowledging stops the reminders; a resolved alert stays resolved.

    Only a firing alert changes: an acknowledged one keeps who acknowledged it first, so
    a second click changes nothing. `by` and `at` are recorded on an `Alert`.
    """
    if alert.status is not Status.FIRING:
        return alert
    if isinstance(alert, Alert):
        return replace(alert, status=Status.ACKNOWLEDGED, acknowledged_by=by, acknowledged_at=at)
    return replace(alert, status=Status.ACKNOWLEDGED)


def take_ownership(alert: Alert, user: str) -> Alert:
    """`user` owns the follow-up; a resolved alert, or one `user` owns already, stays as it is."""
    if alert.status is Status.RESOLVED or alert.owner == user:
        return alert
    return replace(alert, owner=user)


# -- data alerts (stale feeds, docs/scoring.md §4c) ------------------------------------------

# A data alert is an alert of the window "feed": the alerts table's one-open-alert-per-(metric,
# window) index keeps one per metric, apart from its follow-ups. Its reading has no score; its
# `as_of` is the metric's last day with data (None: none ever came).
FEED = "feed"


def feed_transition(stale: bool, last_data: date | None, alert: Alert | None) -> Transition:
    """What a metric's open data alert (or its absence) must do given its feed now.

    A stale feed with no open alert fires one; a fresh feed resolves the open one; a stale
    feed whose last day with data moved (some data came, not enough) edits it. The stale-feed
    rule itself (shared/core/staleness.py) already waits out the expected quiet, so no
    streak damps it further. A feed that never sent anything (`last_data` None) fires
    nothing: it has not gone quiet, it has not started (a new deployment, a metric just
    added), and the board says "no data yet" beside it."""
    if alert is None or alert.status is Status.RESOLVED:
        return Transition.FIRE if stale and last_data is not None else Transition.NONE
    if not stale:
        return Transition.RESOLVE
    return Transition.CHANGE if alert.reading.as_of != last_data else Transition.NONE


# -- at-risk alerts (early warnings, docs/architecture.md) --------------------------------------

# An at-risk alert of a metric's window W is an alert of the window "at-risk:W": the alerts
# table's one-open-alert-per-(metric, window) index keeps one per metric and window, beside the
# window's follow-up, and its track keeps its own streaks. Its reading is the projected score
# (the window's score if every overdue case were closed late now); the track's reading is the
# window's score as it was evaluated.
AT_RISK = "at-risk:"


def at_risk_window(window: str) -> str:
    """The alert window of `window`'s at-risk alerts."""
    return AT_RISK + window


def watched_window(alert_window: str) -> str | None:
    """The score window an at-risk alert watches; None for any other alert's window."""
    return alert_window[len(AT_RISK):] if alert_window.startswith(AT_RISK) else None


def at_risk(score: float | None, projected_score: float | None) -> bool | None:
    """Whether a window is at risk: its score is still at or above 1, as shown, or it has no score
    (nothing closed in it yet), while its projected score is below 1 (docs/architecture.md, "At-risk
    alerts"). A department that closed nothing all week with cases overdue is the worst backlog of
    all, and no follow-up fires on a null score. None when neither has a score: that says nothing
    either way. A score below 1 is not at risk: the follow-up is about it already."""
    if score is None:
        return True if projected_score is not None and standing(projected_score) == "below" else None
    if standing(score) == "below":
        return False
    return projected_score is not None and standing(projected_score) == "below"


@dataclass(frozen=True)
class Risk:
    """One window of a case-fed metric as an early warning sees it."""

    reading: Reading  # the window's score now
    projected: Reading  # its score if every overdue case were closed late now
    overdue: int

    @property
    def at_risk(self) -> bool | None:
        return at_risk(self.reading.score, self.projected.score)


def risk_of(metric: Metric, reading: Reading, overdue: int, last_day: date) -> Risk | None:
    """The window's risk given its score and the metric's overdue cases, with the target in force on
    the window's `last_day`; None for a metric with no projected score (not a case-fed ratio)."""
    result = projected(metric, WindowScore(reading.score, reading.numerator, reading.denominator), overdue,
                       last_day)
    if result is None:
        return None
    return Risk(reading, Reading(result.score, result.numerator, result.denominator, reading.as_of), overdue)
