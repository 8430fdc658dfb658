"""The weekly department digest: each department's week in its own channel, on Monday.

On by default (NOTIFIER_DEPARTMENT_DIGEST=false turns it off): on NOTIFIER_DEPARTMENT_DIGEST_DAY (Monday
by default) from NOTIFIER_DEPARTMENT_DIGEST_TIME, every department with metrics gets its digest in its
channel (Routing.channel_of: the routing file's, else the default channel, as its alerts): its
metrics' week scores as of the day before and how they moved since the week before, and what is at
risk (scores below target, the overdue backlog and the week's projected score, open alerts, follow-up actions due). Each is queued
once a week, under the outbox key `digest:DEPARTMENT:YYYY-Www` (the ISO week of the digest day): the
digests stay due from the digest day's time to the week's end, so a notifier down that day posts them
when it is back (with the digest day's figures), and the job, the catch-up and a restart post nothing twice.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from shared.store.open_alerts import open_alerts
from shared.store.record import actions_for

from .digest_blocks import DIGEST_WINDOW, DigestWeek, digest_message
from .settings import WEEKDAYS

log = logging.getLogger("cityscore.notifier.department_digest")

# Actions shown as at risk: overdue, or due within the coming week.
ACTIONS_AHEAD = timedelta(days=7)


def digest_key(department: str, posted_on: date) -> str:
    """The outbox key of a department's digest: one a department a week, whatever the day it is posted."""
    year, week, _ = posted_on.isocalendar()
    return f"digest:{department}:{year}-W{week:02d}"


class DepartmentDigests:
    """The use case the scheduler's `department-digests` job runs (services/notifier/scheduler.py)."""

    def __init__(self, notifier) -> None:
        self.notifier = notifier

    def due(self, now: datetime) -> date | None:
        """The digest day whose digests are due at `now`: this ISO week's, from its time until the week's
        end (a notifier down that day posts them when back, with that day's figures), or None."""
        settings = self.notifier.settings
        local = now.astimezone(self.notifier.catalog.zone)
        if not settings.department_digest:
            return None
        day = local.date() + timedelta(days=WEEKDAYS.index(settings.department_digest_day) - local.weekday())
        if local.date() < day or (local.date() == day and local.time() < settings.department_digest_time):
            return None
        return day

    def post_due(self) -> list[str]:
        """Queue the digests due now; returns the outbox keys queued (none when not due or queued before)."""
        today = self.due(self.notifier.clock.now())
        return [] if today is None else self.post(today)

    def post(self, posted_on: date, departments: list[str] | None = None) -> list[str]:
        """Queue the digest of each department (every one with metrics when None) as of the day before
        `posted_on`, each once in `posted_on`'s week."""
        notifier = self.notifier
        catalog = notifier.catalog
        wanted = departments or [d.id for d in catalog.departments if catalog.metrics_of(d.id)]
        keys = {department: digest_key(department, posted_on) for department in wanted}
        wanted = [department for department in wanted if not notifier._queued_before(keys[department])]
        if not wanted:
            return []
        as_of = posted_on - timedelta(days=1)
        store = notifier.store
        board = store.scoreboard(as_of)
        before = store.scoreboard(as_of - timedelta(days=7))
        fields = store.case_fields(board, (DIGEST_WINDOW,))  # a catalog always has a week
        base = notifier.settings.public_board_url.rstrip("/")
        queued = []
        for department_id in wanted:
            department = catalog.departments_by_id[department_id]
            metrics = catalog.metrics_of(department_id)
            ids = [metric.id for metric in metrics]
            actions = [action for action in actions_for(notifier.engine, department_id, open_only=True,
                                                        catalog=catalog)
                       if action.due <= as_of + ACTIONS_AHEAD]
            week = DigestWeek(department, metrics, board, before, {m: fields[m] for m in ids if m in fields},
                              open_alerts(notifier.engine, ids), actions, posted_on)
            message = digest_message(week, catalog, f"{base}/departments/{department_id}")
            channel = notifier.routing.channel_of(department_id)
            with notifier._work() as work:
                new = work.outbox.post(keys[department_id], channel, message)
            if new:
                queued.append(keys[department_id])
                log.info("department digest queued", extra={"key": keys[department_id], "channel": channel})
        if queued:
            notifier.on_enqueue()
        return queued
