"""Each department's monthly review packet, posted to its channel as a PDF before its Stat meeting.

On the NOTIFIER_PACKET_WORKDAY-th working day of a month (the first by default; the catalog's business
days and public holidays decide), from NOTIFIER_PACKET_TIME, the previous month's packet of every
department with metrics goes to the department's channel (the routing file's, else the default
channel, as its alerts do). The packets stay due until the month's end, so a notifier down on the
packet day posts them when it is back (the catch-up runs every five minutes). Each is queued once,
under the outbox key `packet:DEPARTMENT:YYYY-MM`: the job may run again (a restart, the catch-up) and
posts nothing twice. Each department is built on its own: one's failure is logged with the department
and skips no other, and the next run tries it again (its key was not queued).

The packet is built and printed by the scorer's report use case (services/scorer/report.py), which
renders the pages' own templates: the one place the notifier uses another service's code, loaded only
when a packet is due.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from shared.core.business_time import BusinessCalendar
from shared.core.scoring import standing

log = logging.getLogger("cityscore.notifier.packets")


def packet_day(calendar: BusinessCalendar, year: int, month: int, workday: int = 1) -> date:
    """The `workday`-th working day of the month (weekdays of the catalog's business hours, not its holidays)."""
    day = date(year, month, 1) - timedelta(days=1)
    for _ in range(workday):
        day = calendar.next_business_day(day)
    return day


def month_before(day: date) -> str:
    """'YYYY-MM' of the month before `day`'s."""
    return f"{(day.replace(day=1) - timedelta(days=1)):%Y-%m}"


class MonthlyPackets:
    """The use case the scheduler's `monthly-packets` job runs (services/notifier/scheduler.py)."""

    def __init__(self, notifier) -> None:
        self.notifier = notifier
        self.calendar = BusinessCalendar(notifier.catalog)

    def due(self, now: datetime) -> str | None:
        """The month ('YYYY-MM') whose packets are due at `now` (the city's time), or None: the month
        before, from the packet day's time until the month's end."""
        settings = self.notifier.settings
        local = now.astimezone(self.notifier.catalog.zone)
        today = local.date()
        if not settings.packets:
            return None
        # From the packet day's time to the month's end, not only on that day: a notifier down on the
        # packet day (or a failed run) posts the packets when it is back. The outbox key posts each once.
        day = packet_day(self.calendar, today.year, today.month, settings.packet_workday)
        if today < day or (today == day and local.time() < settings.packet_time):
            return None
        return month_before(today)

    def post_due(self) -> list[str]:
        """Queue the packets due now; returns the outbox keys queued (none when not due or already queued)."""
        month = self.due(self.notifier.clock.now())
        return [] if month is None else self.post(month)

    def post(self, month: str, departments: list[str] | None = None) -> list[str]:
        """Queue `month`'s packet of each department (every one with metrics when None), each once."""
        notifier = self.notifier
        catalog = notifier.catalog
        wanted = departments or [d.id for d in catalog.departments if catalog.metrics_of(d.id)]
        queued = []
        for department in wanted:
            key = f"packet:{department}:{month}"
            if notifier._queued_before(key):
                continue
            # Each department on its own: one's failure (its build, its render, its row) is logged and
            # skips no other; its key was not queued, so the next run tries it again.
            try:
                new = self._queue(department, key, month)
            except Exception:
                log.exception("monthly packet failed", extra={"department": department, "month": month,
                                                               "key": key})
                continue
            if new:
                queued.append(key)
        if queued:
            notifier.on_enqueue()
        return queued

    def _queue(self, department: str, key: str, month: str) -> bool:
        """Build, print and queue one department's packet; True when queued now."""
        from services.scorer.report import build_packet, file_name, render_pdf, scope_of

        notifier = self.notifier
        catalog = notifier.catalog
        scope = scope_of(catalog, department=department)
        packet = build_packet(notifier.engine, catalog, month, scope, notifier._now())
        channel = notifier.routing.channel_of(department)
        title = f"{scope.name}: {packet.first:%B %Y} review"
        below = sum(1 for section in packet.sections if standing(section.scores[0].result.score) == "below")
        comment = (f"The monthly review packet of {scope.name} for {packet.first:%B %Y}: "
                   f"{len(packet.sections)} metrics, {below} below target for the month, "
                   f"{len(packet.alerts)} follow-up alerts.")
        with notifier._work() as work:
            new = work.outbox.upload(key, None, channel, file_name(packet), title, render_pdf(packet, catalog),
                                     comment)
        if new:
            log.info("monthly packet queued", extra={"key": key, "channel": channel})
        return new
