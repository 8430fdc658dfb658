"""Day totals a reader keeps across requests, while the fold's change log says they still hold.

A board for a past date is scored on request from a quarter of day totals (and, for trend
metrics, the same quarter of every past year) and, for a median, some 10,000 kept measurements.
Read anew for each request, that was two thirds of the board's time (bench/bench_past_board.py).
Most of those days never change again, yet any of them may: a late event, a correction or a
withdrawal changes a day long past. So the reader keeps what it read, and before each use reads
the fold's change log (`day_changes`, written by ScoreWriter.log_changes in each fold's
transaction) for the versions after the last it saw, and forgets the days they list. What it
then serves is what the database held when it read the log, or newer: never older.

It forgets everything when the log says so (a rebuild or a replay), when the versions it
missed were purged from the log, or when the log went backwards (a database made anew).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from datetime import date, timedelta
from typing import Callable

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection

from shared.core.scoring import DayTotals
from shared.core.windows import days_up_to
from shared.store.tables.scorer import EVERYTHING, DayChange, DayTotal

Span = tuple[date, date]  # first and last local day, inclusive

# Beyond this many metric-days kept, a reader starts afresh (a city with ten years of fifty
# metrics: 180,000 days; a few tens of MB a worker with their measurements).
MAX_KEPT_DAYS = 250_000


# A run of this many days or more not read yet is read with WIDEN_DAYS either side.
WIDEN_FROM_DAYS = 7
WIDEN_DAYS = 183


def runs(days: list[date]) -> list[Span]:
    """Sorted days as runs of consecutive days."""
    found: list[Span] = []
    first = previous = days[0]
    for day in days[1:]:
        if (day - previous).days > 1:
            found.append((first, previous))
            first = day
        previous = day
    found.append((first, previous))
    return found


def merged(spans: list[Span]) -> list[Span]:
    """The spans, sorted, with those that overlap or meet made one."""
    result: list[Span] = []
    for first, last in sorted(spans):
        if result and first <= result[-1][1] + timedelta(days=1):
            result[-1] = (result[-1][0], max(result[-1][1], last))
        else:
            result.append((first, last))
    return result


# A board asks for the same few spans (its windows' days, and the same days of past years) for
# every metric; 256 of them are at most a few MB.
@lru_cache(maxsize=256)
def span_days(first: date, last: date) -> frozenset[date]:
    """Every day of first..last."""
    return frozenset(days_up_to(last, (last - first).days + 1))


class KeptDays:
    """Per metric, the days read so far (`read`) and the totals found on them (`totals`: a day
    read with no row has none). Thread-safe: one request at a time updates or reads it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: int | None = None  # the last change log version applied; None: nothing read
        self.read: dict[str, set[date]] = {}
        self.totals: dict[str, dict[date, DayTotals]] = {}

    def forget_all(self) -> None:
        self.read.clear()
        self.totals.clear()

    def follow_changes(self, conn: Connection) -> None:
        """Forget the days folds changed since the last version seen (under `lock`).

        One statement, so one snapshot: the changes after `seen` with the log's oldest and newest
        versions. Read in two, a purge committed between them could hide versions after `seen`
        from the second while the first still showed them kept."""
        table = DayChange.__table__
        oldest_version = select(func.min(table.c.version)).scalar_subquery()
        newest_version = select(func.max(table.c.version)).scalar_subquery()
        rows = conn.execute(select(table.c.version, table.c.metric, table.c.day).where(or_(
            table.c.version > (self.seen or 0), table.c.version == oldest_version,
            table.c.version == newest_version))).all()
        oldest = min((row.version for row in rows), default=None)
        newest = max((row.version for row in rows), default=0)
        if self.seen is None or newest < self.seen or (oldest is not None and oldest > self.seen + 1):
            # First read; a log emptied or gone backwards (a database made anew); or the
            # versions after `seen` purged: what is kept cannot be checked, so nothing is.
            self.forget_all()
        elif newest > self.seen:
            for version, metric, day in rows:
                if version <= self.seen:
                    continue  # the oldest version's rows, long applied
                if (metric, day) == EVERYTHING:
                    self.forget_all()
                else:
                    self.read.get(metric, set()).discard(day)
                    self.totals.get(metric, {}).pop(day, None)
        self.seen = newest

    def bound(self) -> None:
        """Start afresh past MAX_KEPT_DAYS: before a request works out what it lacks, so that it
        then reads all it needs (forgetting after its read would leave its own days out)."""
        if sum(map(len, self.read.values())) > MAX_KEPT_DAYS:
            self.forget_all()

    def missing(self, spans: dict[str, list[Span]], widen: bool = True) -> dict[str, list[Span]]:
        """The runs of days of these spans not read yet, merged where they meet or overlap (a day
        read twice would count a median's measurements twice). A run shorter than WIDEN_FROM_DAYS
        (days folds changed) is read as it is; a longer one (a date far from those read so far)
        with half a year either side, unless `widen` is False, so that the boards of the dates
        around it find their days kept."""
        wanted: dict[str, list[Span]] = {}
        for metric, metric_spans in spans.items():
            read = self.read.get(metric, frozenset())
            lacking: list[Span] = []
            for span in metric_spans:
                days = span_days(*span)
                if days <= read:
                    continue
                for first, last in runs(sorted(days - read)):
                    if widen and (last - first).days >= WIDEN_FROM_DAYS:
                        first, last = first - timedelta(days=WIDEN_DAYS), last + timedelta(days=WIDEN_DAYS)
                    lacking.append((first, last))
            if lacking:
                wanted[metric] = merged(lacking)
        return wanted

    def read_spans(self, conn: Connection, spans: dict[str, list[Span]],
                   day_totals: Callable, measurement_values: Callable, medians: set[str]) -> None:
        """Read these spans' totals (and a median metric's measurements) and keep them. Read in
        full before anything kept changes: a read cancelled halfway leaves the kept days as they were."""
        if not spans:
            return
        table = DayTotal.__table__
        where = or_(*(and_(table.c.metric == metric, table.c.day.between(first, last))
                      for metric, metric_spans in spans.items() for first, last in metric_spans))
        found: dict[str, dict[date, DayTotals]] = {metric: {} for metric in spans}
        for metric, dates, numerators, denominators, counts in day_totals(conn, where):
            into = found[metric]
            for day, numerator, denominator, count in zip(dates, numerators, denominators, counts):
                into[day] = DayTotals(numerator, denominator, count, [])
        for metric in medians.intersection(spans):
            for first, last in spans[metric]:
                for _, day, values in measurement_values(conn, [metric], first, last):
                    totals = found[metric].get(day)
                    if totals is None:
                        totals = found[metric][day] = DayTotals()
                    totals.values.extend(values)
        for metric, metric_spans in spans.items():
            read = self.read.setdefault(metric, set())
            totals = self.totals.setdefault(metric, {})
            for first, last in metric_spans:
                for day in days_up_to(last, (last - first).days + 1):
                    read.add(day)
                    totals.pop(day, None)
            totals.update(found[metric])

    def view(self, metric: str, spans: list[Span]) -> dict[date, DayTotals]:
        """The kept totals of these spans' days: a dict of the request's own (kept totals are
        replaced, never changed, so another request's update cannot reach into it)."""
        totals = self.totals.get(metric, {})
        view: dict[date, DayTotals] = {}
        for span in spans:
            for day in span_days(*span).intersection(totals):
                view[day] = totals[day]
        return view
