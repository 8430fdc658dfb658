"""The follow-up alert lifecycle as pure rules (after Prometheus Alertmanager).

No SQL, no Slack, no clock: callers pass the state and the time in, and get the
decision back. An alert is identified by (metric, window); it fires after the score
has been below 1 for `fire_after` consecutive evaluations and resolves after
`resolve_after` consecutive evaluations at or above 1, so a score that flaps around
1 neither fires nor resolves. An evaluation is a score change from the scorer, or a
periodic look at an unchanged score.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.core.scoring import standing


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
        if standing(score) == "below":  # as shown: 0.996 reads 1.00 and is on target
            return Streak(self.below + 1, 0)
        return Streak(0, self.at_or_above + 1)


def evaluate(streak: Streak, open_status: Status | None, score: float | None, policy: Policy) -> tuple[Streak, Transition]:
    """One evaluation of a (metric, window): the new streak and what the alert must do."""
    if score is None:
        return streak, Transition.NONE
    streak = streak.observe(score)
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
class AlertClock:
    """The times of an open alert that decide its reminders."""

    status: Status
    fired_at: datetime
    held_until: datetime | None = None
    last_reminded_at: datetime | None = None


def reminder_due(alert: AlertClock, now: datetime, policy: Policy) -> bool:
    """An unacknowledged alert reminds every repeat interval, never in quiet hours."""
    if alert.status is not Status.FIRING or policy.is_quiet(now):
        return False
    announced = max(alert.fired_at, alert.held_until or alert.fired_at)
    last = alert.last_reminded_at or announced
    return now - last >= policy.repeat_interval


def acknowledge(alert: AlertClock) -> AlertClock:
    """Acknowledging stops the reminders; a resolved alert stays resolved."""
    if alert.status is Status.RESOLVED:
        return alert
    return replace(alert, status=Status.ACKNOWLEDGED)
