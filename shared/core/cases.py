"""The cases behind a score, the overdue backlog and a projected score (docs/scoring.md §5a).

A score of 0.83 asks someone to follow up; this module says with what: which cases were late
in a window, which open cases are already overdue (and will drag the next scores down), which
fall due within a day, and what the alert window would score if every overdue case were closed
late now. Pure: the latest version of each case in, lists and counts out. The offline command
keeps the cases in its Ledger (shared/core/folding.py); the scorer can give it the same `Case`
tuples read from its database and get the same answers.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable, Mapping, NamedTuple, Sequence

from shared.core.business_time import BusinessCalendar
from shared.core.catalog import Catalog, Feed, Kind, Metric
from shared.core.contract import CaseEvent
from shared.core.scoring import Scoreboard, WindowScore

LATE, ON_TIME, OPEN, OVERDUE = "late", "on_time", "open", "overdue"
STATUSES = (LATE, ON_TIME, OPEN, OVERDUE)
# "Due soon": open at the end of the as-of day and due within the following 24 hours (elapsed time).
DUE_SOON = timedelta(hours=24)


class Case(NamedTuple):
    """A case's latest version as the city sees it: one small tuple per case, kept for every case.
    Times are aware (the Ledger keeps them in UTC).

    `due_at` is the event's own due time, else the one the catalog's SLA gives (`due_at_of`);
    `closed_at` is None while the case is open; `attributes` holds only the attributes the
    catalog marks public (`public_attributes`), as sorted (name, value) pairs; `groups` holds the
    values of the metric's `breakdowns` attributes, in the catalog's order (None where the case
    does not give one), public or not: a breakdown shows only groups and counts (`breakdown`).
    """

    department: str
    case_id: str
    metric: str
    opened_at: datetime
    due_at: datetime
    closed_at: datetime | None
    attributes: tuple[tuple[str, str], ...] = ()
    groups: tuple[str | None, ...] = ()


class CaseLine(NamedTuple):
    """One case in a list, with its status at the end of the as-of day and how late it is in hours
    (closed: closed_at - due_at, 0 when on time; open: end of the as-of day - due_at, 0 when not due yet)."""

    case: Case
    status: str
    hours_late: float


def due_at_of(calendar: BusinessCalendar, metric: Metric, event: CaseEvent) -> datetime:
    """When a case is due: its event's `due_at`, else the catalog's SLA (docs/scoring.md §5).

    The one place this is decided: the fold judges a closed case with it, and the case lists
    show it, so a case is never judged against one due time and listed with another.
    """
    return event.due_at or calendar.case_due_at(metric, event.opened_at, event.attributes)


def case_of(event: CaseEvent, department: str, metric: Metric, due_at: datetime) -> Case:
    """The `Case` an event describes, keeping only the attributes the metric marks public, and the
    values of its breakdown attributes."""
    public: tuple[tuple[str, str], ...] = ()
    if event.attributes and metric.public_attributes:
        public = tuple(sorted((name, value) for name, value in event.attributes.items()
                              if name in metric.public_attributes))
    groups: tuple[str | None, ...] = ()
    if metric.breakdowns:
        given = event.attributes or {}
        groups = tuple(given[name] if given.get(name, "").strip() else None for name in metric.breakdowns)
        # Shared: a year of cases repeats a few dozen neighbourhoods, and a tuple (and string) of
        # its own per case would cost about 100 bytes each; the cache is bounded, so a feed of
        # endless distinct values only stops sharing.
        groups = _SHARED_GROUPS.get(groups) or groups
        if len(_SHARED_GROUPS) < _SHARED_GROUPS_MAX:
            _SHARED_GROUPS.setdefault(groups, groups)
    # Kept in UTC: each parsed time carries its own offset object, and a year of cases keeps
    # hundreds of thousands of them; UTC shares one. Lists show them in local time.
    closed = None if event.closed_at is None else event.closed_at.astimezone(timezone.utc)
    return Case(department, event.case_id, event.metric, event.opened_at.astimezone(timezone.utc),
                due_at.astimezone(timezone.utc), closed, public, groups)


_SHARED_GROUPS: dict[tuple[str | None, ...], tuple[str | None, ...]] = {}
_SHARED_GROUPS_MAX = 10_000


def end_of_day(day: date, catalog: Catalog) -> datetime:
    """The end of local day `day`: the instant the next local day starts (an exclusive bound)."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=catalog.zone)


def _hours(later: datetime, earlier: datetime) -> float:
    return round(max((later - earlier).total_seconds(), 0.0) / 3600, 2)


def status_at(case: Case, moment: datetime) -> str | None:
    """A case's status at `moment` (the end of an as-of day): late or on_time once closed before it,
    overdue or open while open at it (open: not due yet), None when it was not opened yet.

    A case closed exactly at its due time is on time (closed_at <= due_at); an open case is overdue
    once its due time is before the moment, since closing it at the moment would be late.
    """
    if case.opened_at >= moment:
        return None
    if case.closed_at is not None and case.closed_at < moment:
        return LATE if case.closed_at > case.due_at else ON_TIME
    return OVERDUE if case.due_at < moment else OPEN


def status_refusal(status: str | None) -> str | None:
    """Why `status` names no case list (None: it names one). The one wording the core, the CLI and
    the read API give, each under its own field name."""
    if status in STATUSES:
        return None
    return f"{status!r} is not one of {', '.join(STATUSES)}"


def window_refusal(catalog: Catalog, window: str | None) -> str | None:
    """Why `window` is none of the catalog's windows (None: it is one)."""
    if window in catalog.windows:
        return None
    return f"{window!r} is not one of the catalog's windows ({', '.join(catalog.windows)})"


def breakdown_refusal(metric: Metric, by: str | None) -> str | None:
    """Why a metric's on-time share cannot be broken down by `by` (None: it can): not asked, or not
    one of the metric's `breakdowns` in the catalog."""
    if by is not None and by in metric.breakdowns:
        return None
    named = ", ".join(metric.breakdowns) or "none: the catalog names no breakdowns for it"
    if by is None:
        return f"required: one of {metric.id}'s breakdowns in the catalog ({named})"
    return f"{by!r} is not one of {metric.id}'s breakdowns in the catalog ({named})"


_LIST = object()  # check_case_query's `by` for a case list, which names no attribute


def check_case_query(catalog: Catalog, metric_id: str, window: str, *, status: str | None = None,
                     by: str | None | object = _LIST) -> None:
    """Refuse a question about a metric's cases that the catalog cannot answer, naming the field:
    the metric, its window, and the status asked for (a case list) or the attribute (a breakdown:
    `by` given, None too). Raises ValueError("field: reason"); asks the cases nothing."""
    metric = catalog.by_id.get(metric_id)
    if metric is None:
        raise ValueError(f"metric: no metric {metric_id!r} in the catalog")
    if status is not None and (reason := status_refusal(status)) is not None:
        raise ValueError(f"status: {reason}")
    if by is not _LIST and (reason := breakdown_refusal(metric, by)) is not None:  # type: ignore[arg-type]
        raise ValueError(f"by: {reason}")
    if (reason := window_refusal(catalog, window)) is not None:
        raise ValueError(f"window: {reason}")


def cases_behind(cases: Iterable[Case], catalog: Catalog, metric_id: str, as_of: date, status: str,
                 window: str = "week") -> list[CaseLine]:
    """The cases of one metric with `status`, newest first.

    late / on_time: the cases closed in the window (each counts in the window of the local day it
    closed, as scoring does), newest closing first. open / overdue: the cases open at the end of
    the as-of day, whatever the window (a backlog is a moment, not a span), newest opened first.
    """
    check_case_query(catalog, metric_id, window, status=status)
    moment = end_of_day(as_of, catalog)
    zone = catalog.zone
    lines: list[CaseLine] = []
    if status in (LATE, ON_TIME):
        start, end = catalog.windows[window].span(as_of)
        for case in cases:
            if case.metric != metric_id or case.closed_at is None:
                continue
            if not start <= case.closed_at.astimezone(zone).date() <= end:
                continue
            late = case.closed_at > case.due_at
            if (status == LATE) == late:
                lines.append(CaseLine(case, status, _hours(case.closed_at, case.due_at)))
        lines.sort(key=lambda line: (line.case.closed_at, line.case.case_id, line.case.department), reverse=True)
        return lines
    for case in cases:
        if case.metric == metric_id and status_at(case, moment) == status:
            lines.append(CaseLine(case, status, _hours(moment, case.due_at)))
    lines.sort(key=lambda line: (line.case.opened_at, line.case.case_id, line.case.department), reverse=True)
    return lines


def oldest(lines: Sequence[CaseLine], count: int) -> list[CaseLine]:
    """The `count` oldest cases of a list (lists are newest first), oldest first: the overdue cases
    a manager should close first, as the metric page, Slack and the review packet show them."""
    return list(lines[::-1][:count])


class Backlog(NamedTuple):
    """A metric's open cases at the end of an as-of day: how many are overdue, how many due soon."""

    overdue: int = 0
    due_soon: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"overdue": self.overdue, "due_soon": self.due_soon}


def backlogs(cases: Iterable[Case], catalog: Catalog, as_of: date) -> dict[str, Backlog]:
    """Every case-fed metric's backlog at the end of `as_of`, in one pass over the cases."""
    moment = end_of_day(as_of, catalog)
    soon = moment + DUE_SOON
    counts = {metric.id: [0, 0] for metric in catalog.metrics if metric.feed is Feed.CASES}
    for case in cases:
        counted = counts.get(case.metric)
        if counted is None or case.opened_at >= moment:
            continue
        if case.closed_at is not None and case.closed_at < moment:
            continue
        if case.due_at < moment:
            counted[0] += 1
        elif case.due_at < soon:
            counted[1] += 1
    return {metric_id: Backlog(*counted) for metric_id, counted in counts.items()}


def projected(metric: Metric, score: WindowScore, overdue: int, last_day: date) -> WindowScore | None:
    """The window's score if every overdue case were closed late now: its numerator unchanged, its
    denominator grown by `overdue`, scored with the target in force on the window's last day and the
    metric's min_denominator, as scoring does. None for a metric that is not a pooled ratio (a mean
    of daily ratios or a median has no denominator to grow)."""
    if metric.kind is not Kind.RATIO or metric.feed is not Feed.CASES:
        return None
    numerator = score.numerator or 0.0
    denominator = (score.denominator or 0.0) + overdue
    if denominator == 0:
        return score  # nothing closed, nothing overdue: as it is
    if metric.min_denominator is not None and denominator < metric.min_denominator:
        return WindowScore(None, numerator, denominator, True)
    target = metric.target_on(last_day)
    assert target is not None
    return WindowScore(numerator / denominator / target, numerator, denominator)


def case_fields(board: Scoreboard, catalog: Catalog, cases: Iterable[Case] | Mapping[str, Backlog],
                alert_windows: Iterable[str] = ("week",)) -> dict[str, dict]:
    """What each case-fed metric shows beside its scores (docs/contract.md, "Scores"):
    {"open": {"overdue", "due_soon"}, "projected": {window: {"score", "numerator", "denominator"}}}.

    `cases`: the cases (counted here), or their backlogs already counted (the database counts them).
    `alert_windows` are the windows the notifier alerts on (NOTIFIER_ALERT_WINDOWS, "week" by default).
    """
    found = cases if isinstance(cases, Mapping) else backlogs(cases, catalog, board.as_of)
    fields: dict[str, dict] = {}
    for metric_id, backlog in found.items():
        metric = catalog.by_id[metric_id]
        shown: dict[str, dict] = {"open": backlog.as_dict()}
        ahead = {}
        for window in alert_windows:
            last_day = catalog.windows[window].span(board.as_of)[1]
            result = projected(metric, board.metrics[metric_id][window], backlog.overdue, last_day)
            if result is not None:
                ahead[window] = {"score": result.score, "numerator": result.numerator,
                                 "denominator": result.denominator}
        if ahead:
            shown["projected"] = ahead
        fields[metric_id] = shown
    return fields


def with_case_fields(board_json: dict, fields: Mapping[str, dict]) -> dict:
    """`Scoreboard.as_dict`'s JSON with each case-fed metric's "open" and "projected" added."""
    for metric_id, shown in fields.items():
        board_json["metrics"][metric_id].update(shown)
    return board_json


def case_columns(metric: Metric) -> tuple[str, ...]:
    """A case list's columns: ids, times, status and lateness, then the metric's public attributes."""
    return ("case_id", "opened_at", "due_at", "closed_at", "status", "hours_late", *metric.public_attributes)


def case_line_dict(line: CaseLine, catalog: Catalog) -> dict:
    """One case as a list shows it (JSON and CSV rows alike): times in the city's local time with
    their offset, as a manager reads them; only the public attributes."""
    zone = catalog.zone
    case = line.case
    return {
        "case_id": case.case_id,
        "opened_at": case.opened_at.astimezone(zone).isoformat(),
        "due_at": case.due_at.astimezone(zone).isoformat(),
        # An open or overdue case was open at the end of the as-of day: a later closing is not shown.
        "closed_at": (case.closed_at.astimezone(zone).isoformat()
                      if line.status in (LATE, ON_TIME) and case.closed_at is not None else None),
        "status": line.status,
        "hours_late": line.hours_late,
        # Filtered again: a case kept before the catalog made one of them private is not shown with it.
        "attributes": {name: value for name, value in case.attributes
                       if name in catalog.by_id[case.metric].public_attributes},
    }


def case_list_document(catalog: Catalog, metric_id: str, as_of: date, status: str, window: str,
                       lines: Iterable[CaseLine]) -> dict:
    """A case list as JSON, the one document `cityscore cases --format json` prints and the read API
    answers (docs/contract.md): {"metric", "as_of", "status", ["window", "start", "end",] "cases"}.
    `window`, `start` and `end` only for late and on_time, which list the window's closed cases;
    open and overdue are the cases open at the end of the as-of day, whatever the window."""
    shown: dict = {"metric": metric_id, "as_of": as_of.isoformat(), "status": status}
    if status in (LATE, ON_TIME):
        start, end = catalog.windows[window].span(as_of)
        shown.update(window=window, start=start.isoformat(), end=end.isoformat())
    shown["cases"] = [case_line_dict(line, catalog) for line in lines]
    return shown


def case_cells(metric: Metric, rows: Iterable[dict]) -> list[list]:
    """Case list rows (`case_line_dict`) as the cells of `case_columns(metric)`, for CSV and tables:
    each public attribute a column (empty when the case does not give it), None as empty."""
    columns = case_columns(metric)
    return [[row["attributes"].get(column, "") if column not in row else
             ("" if row[column] is None else row[column]) for column in columns] for row in rows]


# The group of the cases that do not give the attribute (or give it blank).
NOT_GIVEN = "(not given)"


class Group(NamedTuple):
    """One group of a breakdown: its cases closed on time in the window, all its cases closed in
    the window, and their share (on_time / closed; not divided by the target)."""

    name: str
    on_time: int
    closed: int

    @property
    def share(self) -> float:
        return self.on_time / self.closed

    def as_dict(self) -> dict:
        return {"group": self.name, "numerator": self.on_time, "denominator": self.closed,
                "share": round(self.share, 4)}


def breakdown(cases: Iterable[Case], catalog: Catalog, metric_id: str, by: str, as_of: date,
              window: str = "week") -> list[Group]:
    """A case-fed metric's on-time share in a window, by one of its `breakdowns` attributes, worst
    first (lowest share, ties by name): who waits longer.

    A case counts as the score does: in the window of the local day it closed, on time when closed
    at or before its due time, once (its latest version: a reopened case is open, and not counted
    until it closes again). The groups' numerators and denominators add up to the window's.
    """
    check_case_query(catalog, metric_id, window, by=by)
    metric = catalog.by_id[metric_id]
    at = metric.breakdowns.index(by)
    start, end = catalog.windows[window].span(as_of)
    zone = catalog.zone
    counts: dict[str, list[int]] = {}
    for case in cases:
        if case.metric != metric_id or case.closed_at is None:
            continue
        if not start <= case.closed_at.astimezone(zone).date() <= end:
            continue
        name = (case.groups[at] if at < len(case.groups) else None) or NOT_GIVEN
        counted = counts.setdefault(name, [0, 0])
        counted[1] += 1
        if case.closed_at <= case.due_at:
            counted[0] += 1
    groups = [Group(name, on_time, closed) for name, (on_time, closed) in counts.items()]
    groups.sort(key=lambda group: (group.share, group.name))
    return groups


BREAKDOWN_COLUMNS = ("group", "numerator", "denominator", "share")


def breakdown_document(catalog: Catalog, metric_id: str, by: str, as_of: date, window: str,
                       groups: Iterable[Group]) -> dict:
    """A breakdown as JSON, the one document `cityscore breakdown --format json` prints and the read
    API answers (docs/contract.md): the window's days, the target in force on its last day, and
    each group's counts, in the order given (worst first)."""
    start, end = catalog.windows[window].span(as_of)
    return {"metric": metric_id, "by": by, "as_of": as_of.isoformat(), "window": window,
            "start": start.isoformat(), "end": end.isoformat(),
            "target": catalog.by_id[metric_id].target_on(end), "groups": [group.as_dict() for group in groups]}
