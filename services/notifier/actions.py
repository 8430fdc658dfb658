"""The notifier's use cases for follow-up actions: recorded from an alert's modal, reminded to
their owner when due, closed with an outcome.

Like the alerts' use cases (service.py), each runs in one transaction that saves the action
and queues its Slack messages in the outbox, whose keys make each message once however
often a job runs or a form is sent: `action:ID:reminder` is the owner's one reminder.
The rules are shared/core/record.py's; the rows shared/store/record.py's. `cityscore action`
(services/cli/record.py) queues the same thread replies and edits through `queue_recorded`
and `queue_closed`: the notifier's sender delivers them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Connection

from shared.core.record import Action, Problem, Refused, close, new_action, reminder_due
from shared.store.record import Record

from .follow_ups import FollowUps
from .lifecycle import FEED
from .outbox import Queue
from .outbox.queue import FAILED, T
from .record_blocks import action_modal, close_modal, closed_message, recorded_reply, reminder_message
from .service import NotAllowed, Notifier

log = logging.getLogger("cityscore.notifier.actions")

# The due day the form proposes: a week, the time between two weekly reviews.
PROPOSED_DAYS = 7
# Slack's refusals of a DM meaning the owner is no Slack user it knows (a deleted account, an id
# mistyped): their reminder goes to the department's channel instead of being lost.
DM_REFUSED = ("user_not_found", "channel_not_found")


@dataclass(frozen=True)
class Outcome:
    """What a person's request came to: a modal to open, the problems to show in the form, an
    action recorded or closed, or a sentence when there is nothing to act on."""

    action: Action | None = None
    modal: dict | None = None
    problems: list[Problem] = field(default_factory=list)
    text: str | None = None
    new: bool = False


def queue_recorded(conn: Connection, action: Action, *, not_before: datetime | None = None) -> bool:
    """Tell the thread of the alert the action answers (if any, and still known) who recorded it,
    for whom and by when; on `conn`, in the transaction that recorded it."""
    alert = FollowUps(conn).get(action.alert_id) if action.alert_id is not None else None
    if alert is None:
        return False
    return Queue(conn).post(f"{alert.key}:action:{action.id}", alert.channel,
                            recorded_reply(action, action.created_by), parent_key=alert.post_key,
                            not_before=not_before)


def queue_closed(conn: Connection, closed: Action, metric_name: str) -> None:
    """Say the action was closed, and its outcome: its reminder is edited (its button goes) and the
    thread of its alert told; on `conn`, in the transaction that closed it."""
    queue = Queue(conn)
    for reminder in (f"action:{closed.id}:reminder", f"action:{closed.id}:reminder:channel"):
        if queue.has(reminder):  # the DM, and the channel's when Slack refused the DM
            queue.update(f"{reminder}:update", reminder, closed_message(closed, metric_name))
    alert = FollowUps(conn).get(closed.alert_id) if closed.alert_id is not None else None
    if alert is not None:
        queue.post(f"{alert.key}:action:{closed.id}:closed", alert.channel, closed_message(closed, metric_name),
                   parent_key=alert.post_key)


class FollowUpActions:
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.catalog = notifier.catalog

    def _metric_name(self, metric_id: str) -> str:
        metric = self.catalog.by_id.get(metric_id)
        return metric.name if metric else metric_id

    def _alert(self, alert_id: int, user: str, verb: str):
        """The follow-up alert `user` may act on, or the sentence saying why not (NotAllowed if routing says no)."""
        with self.notifier.engine.connect() as conn:
            alert = FollowUps(conn).get(alert_id)
        if alert is None:
            return None, "That alert does not exist."
        if alert.window == FEED or alert.metric not in self.catalog.by_id:
            return None, "A data alert takes no action: it resolves when the feed's data arrives again."
        self.notifier._allow(alert, user, verb)
        return alert, None

    # -- recording from an alert

    def action_form(self, alert_id: int, user: str) -> Outcome:
        alert, refusal = self._alert(alert_id, user, "record actions on")
        if alert is None:
            return Outcome(text=refusal)
        due = self.notifier.local_today() + timedelta(days=PROPOSED_DAYS)
        return Outcome(modal=action_modal(alert_id, self.catalog.by_id[alert.metric], user, due))

    def record_from_alert(self, alert_id: int, user: str, owner: str | None, due: date | None,
                          text: str | None) -> Outcome:
        """Record the form's action on the alert's metric and tell the alert's thread; the problems
        (each naming its field) when the form is wrong, and nothing is recorded."""
        alert, refusal = self._alert(alert_id, user, "record actions on")
        if alert is None:
            return Outcome(problems=[Problem("text", refusal)])
        metric = self.catalog.by_id[alert.metric]
        try:
            action = new_action(metric=metric.id, department=metric.department, owner=owner, text=text, due=due,
                                today=self.notifier.local_today(), created_by=user,
                                created_at=self.notifier._now(), alert_id=alert.id, owner_is_user=True)
        except Refused as refused:
            return Outcome(problems=refused.problems)
        with self.notifier.engine.begin() as conn:
            action, new = Record(conn).add_action(action)
            if new:
                queue_recorded(conn, action, not_before=self.notifier._hold())
        if new:
            self.notifier.on_enqueue()
            log.info("action recorded", extra={"action": action.id, "alert": alert.id, "metric": metric.id,
                                               "owner": action.owner, "due": action.due.isoformat()})
        return Outcome(action=action, new=new)

    # -- reminders

    def _department_channel(self, action: Action) -> str:
        """The channel of the metric's department now (as actions_for picks a department's actions)."""
        metric = self.catalog.by_id.get(action.metric)
        return self.notifier.routing.channel_of(metric.department if metric else action.department)

    def _channel(self, action: Action) -> str:
        """An owner who is a Slack user is reminded in private; a name, in the department's channel."""
        return action.owner if action.owner_is_slack_user else self._department_channel(action)

    def _reminders_refused(self, conn: Connection, local_today: date) -> int:
        """Queue in the department's channel each reminder whose DM Slack refused for good (the owner
        is no user it knows), once: under `action:ID:reminder:channel`, naming the owner as written."""
        queue, record = Queue(conn), Record(conn)
        refused = conn.execute(select(T.c.key).where(T.c.key.like("action:%:reminder"), T.c.status == FAILED,
                                                     T.c.last_error.in_(DM_REFUSED))).scalars().all()
        done = queue.states(f"{key}:channel" for key in refused)
        queued = 0
        for key in refused:
            action = record.action(int(key.split(":")[1])) if f"{key}:channel" not in done else None
            if action is None or not action.is_open:
                continue
            named = replace(action, owner_is_user=False)  # Slack knows no such user: its id as written
            message = reminder_message(named, self._metric_name(action.metric), local_today, self.catalog.zone)
            if queue.post(f"{key}:channel", self._department_channel(action), message):
                queued += 1
                log.warning("action reminded in the department's channel: Slack refused the owner's DM",
                            extra={"action": action.id, "owner": action.owner})
        return queued

    def send_reminders(self) -> int:
        """Remind the owner of each open action whose due day has come, once (its outbox key and
        its reminded_at, set in the same transaction, whichever notifier replica runs the job)."""
        local_now = self.notifier._now().astimezone(self.catalog.zone)
        remind_at = self.notifier.settings.board_time
        sent = 0
        with self.notifier.engine.begin() as conn:
            record, queue = Record(conn), Queue(conn)
            for action in record.open_not_reminded(local_now.date()):
                if not reminder_due(action, local_now, remind_at) or not record.mark_reminded(
                        action.id, self.notifier._now()):
                    continue
                message = reminder_message(action, self._metric_name(action.metric), local_now.date(),
                                           self.catalog.zone)
                if queue.post(f"action:{action.id}:reminder", self._channel(action), message):
                    sent += 1
                    log.info("action reminded", extra={"action": action.id, "owner": action.owner,
                                                       "due": action.due.isoformat()})
            sent += self._reminders_refused(conn, local_now.date())
        if sent:
            self.notifier.on_enqueue()
        return sent

    # -- closing

    def _may_close(self, action: Action, user: str) -> None:
        """The owner, or whoever may act on the metric's alerts (the routing's responders)."""
        if user == action.owner or self.notifier.routing.may_act(self.catalog, action.metric, user):
            return  # may_act lets anyone act on a metric gone from the catalog, as its alerts
        raise NotAllowed(user, "close actions on", action.department)

    def close_form(self, action_id: int, user: str) -> Outcome:
        with self.notifier.engine.connect() as conn:
            action = Record(conn).action(action_id)
        if action is None:
            return Outcome(text="That action does not exist.")
        if not action.is_open:
            return Outcome(action=action, text=f"That action was closed already by {action.closed_by}.")
        self._may_close(action, user)
        return Outcome(action=action, modal=close_modal(action, self._metric_name(action.metric)))

    def close(self, action_id: int, user: str, outcome: str | None) -> Outcome:
        """Close the action with its outcome and say so where it was reminded or recorded; the
        problems when it is closed already or the outcome is empty."""
        with self.notifier.engine.begin() as conn:
            record = Record(conn)
            action = record.action(action_id, lock=True)
            if action is None:
                return Outcome(problems=[Problem("outcome", f"action {action_id} does not exist")])
            self._may_close(action, user)
            try:
                closed = close(action, outcome, user, self.notifier._now())
            except Refused as refused:
                return Outcome(action=action, problems=refused.problems)
            if not record.save_closed(closed):
                return Outcome(action=action, problems=[Problem("status", f"action {action_id} was closed "
                                                                          "already")])
            queue_closed(conn, closed, self._metric_name(closed.metric))
        self.notifier.on_enqueue()
        log.info("action closed", extra={"action": closed.id, "by": user})
        return Outcome(action=closed, new=True)


__all__ = ["FollowUpActions", "Outcome", "queue_closed", "queue_recorded"]
