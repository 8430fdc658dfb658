"""When a case is due: calendar and business-time SLAs (docs/scoring.md §5).

Boston's business time is Monday to Friday, 08:30 to 17:00 local time, city holidays
excluded. A case opened inside business hours is due at the same clock time N
business days later; one opened outside them starts its clock at the next opening.
All of this comes from the catalog, so another city's hours and holidays need no code.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache

import holidays

from shared.core.catalog import SLA, Catalog, Metric


class BusinessCalendar:
    """The city's business days and hours, with its public holidays."""

    def __init__(self, catalog: Catalog):
        hours = catalog.business_hours
        self.zone = catalog.zone
        self.opens: time = hours.opens
        self.closes: time = hours.closes
        self._weekdays = hours.weekday_numbers
        self._holidays = holidays.country_holidays(catalog.holidays.country, subdiv=catalog.holidays.subdivision)
        # Bound per instance: a date's answer never changes for a given city.
        self.is_business_day = lru_cache(maxsize=8192)(self._is_business_day)
        # Many cases open on the same day under the same SLA: walk the calendar once for them.
        self.business_days_after = lru_cache(maxsize=8192)(self._business_days_after)

    def _is_business_day(self, day: date) -> bool:
        return day.weekday() in self._weekdays and day not in self._holidays

    def next_business_day(self, day: date) -> date:
        day += timedelta(days=1)
        while not self.is_business_day(day):
            day += timedelta(days=1)
        return day

    def clock_start(self, moment: datetime) -> datetime:
        """When the business clock starts for a case opened at this instant (local time)."""
        local = moment.astimezone(self.zone)
        day, clock = local.date(), local.time()  # time(): the clock time alone, without a zone
        if self.is_business_day(day):
            if self.opens <= clock < self.closes:
                return local
            if clock < self.opens:
                return datetime.combine(day, self.opens, tzinfo=self.zone)
        return datetime.combine(self.next_business_day(day), self.opens, tzinfo=self.zone)

    def add_business_days(self, moment: datetime, days: int) -> datetime:
        """The instant `days` business days after `moment`, per Boston's rule."""
        start = self.clock_start(moment)
        day = self.business_days_after(start.date(), days)
        return datetime.combine(day, start.time(), tzinfo=self.zone)

    def _business_days_after(self, day: date, days: int) -> date:
        for _ in range(days):
            day = self.next_business_day(day)
        return day

    def due_at(self, sla: SLA, opened_at: datetime) -> datetime:
        """When a case opened at `opened_at` is due under `sla`."""
        if sla.hours is not None:
            # "Within 24 hours" is elapsed time, whatever the clocks do. Python adds
            # wall-clock time to zone-aware datetimes, so add in UTC.
            return opened_at.astimezone(timezone.utc) + timedelta(hours=sla.hours)
        if sla.calendar_days is not None:
            # Calendar days keep the local clock time across a DST change.
            local = opened_at.astimezone(self.zone)
            return datetime.combine(
                local.date() + timedelta(days=sla.calendar_days), local.time(), tzinfo=self.zone
            )
        assert sla.business_days is not None
        return self.add_business_days(opened_at, sla.business_days)

    def case_due_at(self, metric: Metric, opened_at: datetime, attributes: dict[str, str] | None) -> datetime:
        return self.due_at(metric.sla_for(attributes), opened_at)
