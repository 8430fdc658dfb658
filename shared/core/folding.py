"""Folding events into daily totals: what each event adds, and what it replaces.

An event becomes a `Contribution` to one metric's local day. Most contributions
simply add up. Two kinds replace an earlier version instead: a case sent again
with the same `case_id` (reopened, corrected, closed), and a tally for the same
metric and date. Those carry a replace key; whoever keeps the state (the
in-memory `Ledger` here, the scorer's database) takes the old contribution back
before adding the new one, so nothing is counted twice.

Identity is per department: an event is (department, event_id) and a case is
(department, case_id), so two departments may use the same ids and neither loses
or replaces anything. The department is the one that sent the event (ingest stamps
it from the API key); in a file without one, it is the metric's owner.

Any event can be taken back by the department that sent it: a withdrawal names it,
or a correction (`replaces`) names it and counts instead. So the state remembers,
for every event, what it counts: its own contribution (incidents, measurements) or
the replace key it counts under (cases, tallies). A withdrawal of an event not seen
yet marks its id as taken, so the event counts nothing when it comes.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import NamedTuple, Union

from shared.core.business_time import BusinessCalendar
from shared.core.cases import Case, case_of, due_at_of
from shared.core.catalog import Catalog, Feed, Metric
from shared.core.contract import CaseEvent, Event, IncidentEvent, MeasurementEvent, TallyEvent, WithdrawalEvent
from shared.core.scoring import DayTotals, Scoreboard, score_city


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


Identity = tuple[str, str]  # (department, event_id)
# What an event counts, remembered to take it back: the replace key it counts under (a
# case or a tally), its own contribution (an incident or a measurement), or None (nothing:
# a withdrawal, an event already taken back, or an id withdrawn before it came).
Record = Union[str, "Contribution", None]


_EVENT_CLASSES = (CaseEvent, MeasurementEvent, IncidentEvent, TallyEvent, WithdrawalEvent)
# An event's class -> the contract's event class it is (None: none of them), filled as met.
_CLASS_OF: dict[type, type | None] = {cls: cls for cls in _EVENT_CLASSES}


def event_class(event: Event) -> type | None:
    """Which of the contract's event classes an event is (None: none of them).

    The fold asks this of every event several times. `isinstance` answers a pydantic model's
    class quickly only when it is the event's own class: every "no" goes through ABCMeta's
    __instancecheck__, and a measurement was asked six questions answered "no" on its way
    through prepare. A dictionary of the classes met answers each in one lookup, the same
    answer `isinstance` gives (a subclass of an event class is looked up once, then kept).
    """
    cls = type(event)
    try:
        return _CLASS_OF[cls]
    except KeyError:
        found = next((known for known in _EVENT_CLASSES if isinstance(event, known)), None)
        _CLASS_OF[cls] = found
        return found


def department_of(event: Event, catalog: Catalog) -> str:
    """Who sent the event: its department (ingest stamps it), else the metric's owner."""
    return event.department or catalog.by_id[event.metric].department


def replace_key(event: Event, department: str) -> str | None:
    """The identity a newer event replaces, or None for events that only add."""
    kind = event_class(event)
    if kind is CaseEvent:
        # Case ids are unique within a department (Boston's are public, so another
        # department may send the same one); a case moved to another metric still replaces.
        return f"case:{department}/{event.case_id}"
    if kind is TallyEvent:
        # A metric has one owner, so its tallies are the owner's.
        return f"tally:{event.metric}:{event.date.isoformat()}"
    return None


def taken_back(event: Event) -> str | None:
    """The event_id (of the same department) that this event withdraws or corrects."""
    if event_class(event) is WithdrawalEvent:
        return event.withdraws
    return event.replaces


class Folder:
    """Turns validated events into contributions for one city's catalog."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.calendar = BusinessCalendar(catalog)
        self._zone = catalog.zone
        self._by_id = catalog.by_id

    def case_contribution(self, metric: Metric, closed_at: datetime | None, due: datetime) -> Contribution | None:
        """A case's contribution, judged against its due time; None while it is open."""
        if closed_at is None:
            return None  # open cases count when they close
        on_time = 1.0 if closed_at <= due else 0.0
        return Contribution(metric.id, closed_at.astimezone(self._zone).date(), on_time, 1.0)

    def case(self, event: CaseEvent, department: str) -> tuple[Case, Contribution | None]:
        """The case an event describes (kept for the case lists and the backlog) and its
        contribution; the due time is worked out once, for both.

        The contribution is read off the case, whose times are already in UTC: the same
        instants as the event's, so the same local day and the same on-time comparison, without
        asking each parsed time's offset (pydantic's TzInfo, slow to ask) a second time.
        """
        metric = self._by_id[event.metric]
        case = case_of(event, department, metric, due_at_of(self.calendar, metric, event))
        closed = case.closed_at
        if closed is None:
            return case, None  # open cases count when they close
        return case, Contribution(metric.id, closed.astimezone(self._zone).date(),
                                  1.0 if closed <= case.due_at else 0.0, 1.0)

    def contribution(self, event: Event) -> Contribution | None:
        """The event's contribution, or None when it adds nothing (an open case, a withdrawal)."""
        kind = event_class(event)
        if kind is WithdrawalEvent:
            return None
        metric = self._by_id[event.metric]
        if kind is CaseEvent:
            if event.closed_at is None:
                return None  # open: no due time to work out (business time is not free) until it closes
            return self.case_contribution(metric, event.closed_at, due_at_of(self.calendar, metric, event))
        if kind is MeasurementEvent:
            day = event.occurred_at.astimezone(self._zone).date()
            if metric.feed is Feed.THRESHOLD:
                assert metric.threshold is not None
                return Contribution(metric.id, day, 1.0 if event.value <= metric.threshold else 0.0, 1.0)
            if metric.feed is Feed.RATING:
                return Contribution(metric.id, day, event.value, 1.0)
            return Contribution(metric.id, day, count=1.0, value=event.value)
        if kind is IncidentEvent:
            return Contribution(metric.id, event.occurred_at.astimezone(self._zone).date(), count=float(event.count))
        assert kind is TallyEvent
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
    """In-memory state of a city's scores: daily totals per metric, what each event counts, replaceable parts.

    The offline command and the tests fold into this; the scorer keeps the same
    state in SQL with the same `Folder` and rules (score_writer.ScoreWriter.fold_prepared).
    """

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.folder = Folder(catalog)
        self.days: dict[str, dict[date, DayTotals]] = {m.id: {} for m in catalog.metrics}
        # How many contributions each day holds: a day whose last one is taken back is no
        # longer data (and no longer its metric's first day).
        self.parts: dict[tuple[str, date], int] = {}
        self.first_day: dict[str, date] = {}
        self.seen: dict[Identity, Record] = {}
        self.current: dict[str, Contribution | None] = {}
        # The latest version of each case, by its replace key, for the case lists and the overdue
        # backlog (shared/core/cases.py); a withdrawn case leaves it.
        self.cases: dict[str, Case] = {}
        self.duplicates = 0
        self.replaced = 0
        self.withdrawn = 0

    def fold(self, event: Event) -> bool:
        """Fold one validated event; False when it was a duplicate and changed nothing."""
        department = department_of(event, self.catalog)
        identity = (department, event.event_id)
        if identity in self.seen:
            self.duplicates += 1
            return False
        target = taken_back(event)
        if target is not None:
            self._take_back((department, target))
        case = None
        if event_class(event) is CaseEvent:
            case, part = self.folder.case(event, department)
        else:
            part = self.folder.contribution(event)
        key = replace_key(event, department)
        if key is not None:
            if key in self.current:
                self.replaced += 1
                old = self.current[key]
                if old is not None:
                    self._remove(old)
            self.current[key] = part
            self.seen[identity] = key
            if case is not None:
                self.cases[key] = case
        else:
            self.seen[identity] = part
        if part is not None:
            self._add(part)
        return True

    def _take_back(self, identity: Identity) -> None:
        """Withdraw what an earlier event counts; an id not seen yet will count nothing."""
        if identity not in self.seen:
            self.seen[identity] = None
            return
        record = self.seen[identity]
        if isinstance(record, str):
            old = self.current.get(record)
            if old is not None:
                self._remove(old)
            self.current[record] = None
            self.cases.pop(record, None)
        elif record is not None:
            self._remove(record)
        if record is not None:
            self.withdrawn += 1
        self.seen[identity] = None

    def _add(self, part: Contribution) -> None:
        days = self.days[part.metric]
        totals = days.get(part.day)
        if totals is None:
            totals = days[part.day] = DayTotals()
            first = self.first_day.get(part.metric)
            if first is None or part.day < first:
                self.first_day[part.metric] = part.day
        slot = (part.metric, part.day)
        self.parts[slot] = self.parts.get(slot, 0) + 1
        add_to(totals, part)

    def _remove(self, part: Contribution) -> None:
        days = self.days[part.metric]
        add_to(days[part.day], part, -1)
        slot = (part.metric, part.day)
        self.parts[slot] -= 1
        if self.parts[slot] == 0:
            del self.parts[slot], days[part.day]
            if self.first_day.get(part.metric) == part.day:
                if days:
                    self.first_day[part.metric] = min(days)
                else:
                    del self.first_day[part.metric]

    def scoreboard(self, as_of: date) -> Scoreboard:
        return score_city(self.catalog, self.days, as_of, self.first_day)
