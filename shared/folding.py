"""Folding events into daily totals: what each event adds, and what it replaces.

An event becomes a `Contribution` to one metric's local day. Most contributions
simply add up. Two kinds replace an earlier version instead: a case sent again
with the same `case_id` (reopened, corrected, closed), and a tally for the same
metric and date. Those carry a `replaces` key; whoever keeps the state (the
in-memory `Ledger` here, the scorer's database) takes the old contribution back
before adding the new one, so nothing is counted twice.
"""

from __future__ import annotations

from datetime import date
from typing import NamedTuple

from .business_time import BusinessCalendar
from .catalog import Catalog, Feed
from .contract import CaseEvent, Event, IncidentEvent, MeasurementEvent, TallyEvent
from .scoring import DayTotals, Scoreboard, score_city


class Contribution(NamedTuple):
    """What one event adds to one metric's totals for one local day.

    A named tuple rather than a frozen dataclass: the scorer makes one per event, and a
    tuple is built in C, several times faster.
    """

    metric: str
    day: date
    numerator: float = 0.0
    denominator: float = 0.0
    count: float = 0.0
    value: float | None = None  # a raw measurement kept for a median


def replace_key(event: Event) -> str | None:
    """The identity a newer event replaces, or None for events that only add."""
    if isinstance(event, CaseEvent):
        # Case ids are unique city-wide, so a case moved to another metric still replaces.
        return "case:" + event.case_id
    if isinstance(event, TallyEvent):
        return f"tally:{event.metric}:{event.date.isoformat()}"
    return None


class Folder:
    """Turns validated events into contributions for one city's catalog."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.calendar = BusinessCalendar(catalog)
        self._zone = catalog.zone

    def contribution(self, event: Event) -> Contribution | None:
        """The event's contribution, or None when it adds nothing (an open case)."""
        metric = self.catalog.by_id[event.metric]
        if isinstance(event, CaseEvent):
            if event.closed_at is None:
                return None  # open cases count when they close
            due = event.due_at or self.calendar.case_due_at(metric, event.opened_at, event.attributes)
            on_time = 1.0 if event.closed_at <= due else 0.0
            return Contribution(metric.id, event.closed_at.astimezone(self._zone).date(), on_time, 1.0)
        if isinstance(event, MeasurementEvent):
            day = event.occurred_at.astimezone(self._zone).date()
            if metric.feed is Feed.THRESHOLD:
                assert metric.threshold is not None
                return Contribution(metric.id, day, 1.0 if event.value <= metric.threshold else 0.0, 1.0)
            if metric.feed is Feed.RATING:
                return Contribution(metric.id, day, event.value, 1.0)
            return Contribution(metric.id, day, count=1.0, value=event.value)
        if isinstance(event, IncidentEvent):
            return Contribution(metric.id, event.occurred_at.astimezone(self._zone).date(), count=float(event.count))
        assert isinstance(event, TallyEvent)
        if event.count is not None:
            return Contribution(metric.id, event.date, count=event.count)
        assert event.numerator is not None and event.denominator is not None
        return Contribution(metric.id, event.date, event.numerator, event.denominator)


def add_to(totals: DayTotals, part: Contribution, sign: int = 1) -> None:
    """Add (sign 1) or take back (sign -1) a contribution from a day's totals."""
    totals.numerator += sign * part.numerator
    totals.denominator += sign * part.denominator
    totals.count += sign * part.count
    if part.value is not None:
        if sign > 0:
            totals.values.append(part.value)
        else:
            totals.values.remove(part.value)


class Ledger:
    """In-memory state of a city's scores: daily totals per metric, seen events, replaceable parts.

    The offline command and the tests fold into this; the scorer keeps the same
    state in SQL with the same `Folder` and `add_to` rules.
    """

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.folder = Folder(catalog)
        self.days: dict[str, dict[date, DayTotals]] = {m.id: {} for m in catalog.metrics}
        self.first_day: dict[str, date] = {}
        self.seen: set[str] = set()
        self.current: dict[str, Contribution | None] = {}
        self.duplicates = 0
        self.replaced = 0

    def fold(self, event: Event) -> bool:
        """Fold one validated event; False when it was a duplicate and changed nothing."""
        if event.event_id in self.seen:
            self.duplicates += 1
            return False
        self.seen.add(event.event_id)
        part = self.folder.contribution(event)
        key = replace_key(event)
        if key is not None:
            if key in self.current:
                self.replaced += 1
                old = self.current[key]
                if old is not None:
                    add_to(self.days[old.metric][old.day], old, -1)
            self.current[key] = part
        if part is not None:
            self._add(part)
        return True

    def _add(self, part: Contribution) -> None:
        days = self.days[part.metric]
        totals = days.get(part.day)
        if totals is None:
            totals = days[part.day] = DayTotals()
            first = self.first_day.get(part.metric)
            if first is None or part.day < first:
                self.first_day[part.metric] = part.day
        add_to(totals, part)

    def scoreboard(self, as_of: date) -> Scoreboard:
        return score_city(self.catalog, self.days, as_of, self.first_day)
