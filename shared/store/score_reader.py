"""The read side of the scores: boards and histories computed from the stored day totals.

What the read API, the pages and the notifier ask of the database. Scores for a past
date are computed on request with the same scoring core as the scorer and the offline
command, so they are the same numbers; they are bounded in time (`ReadTimedOut`).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Iterable, Iterator

import orjson
from sqlalchemy import TIMESTAMP, Date, and_, bindparam, case, cast, func, literal_column, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from shared.core.cases import (DUE_SOON, LATE, ON_TIME, OVERDUE, Backlog, Case, CaseLine, Group, breakdown,
                               case_fields, cases_behind, check_case_query, end_of_day, oldest)
from shared.core.catalog import Catalog, Feed, Kind
from shared.core.percentile import DAY, percentile, reach as percentile_reach
from shared.core.scoring import DayTotals, Scoreboard, WindowScore, overall, score_metric, unscored
from shared.core.windows import days_up_to, earliest_start, years_back
from shared.store.bulk_sql import PostgresBulkSQL, SQLiteBulkSQL, bulk_sql_for
from shared.store.kept_days import KeptDays, Span
from shared.store.tables.scorer import CurrentScore, DayTotal, KeptCase, MetricFirstDay


class ReadTimedOut(Exception):
    """Scores computed on request took longer than their time bound (SCORER_READ_TIMEOUT)."""

    def __init__(self, timeout_s: float):
        super().__init__(f"scoring on request took longer than {timeout_s:g} s")
        self.timeout_s = timeout_s

    @staticmethod
    def cancelled(exc: Exception) -> bool:
        """PostgreSQL cancelled the statement (SQLSTATE 57014: its statement_timeout passed)."""
        return getattr(getattr(exc, "orig", None), "sqlstate", None) == "57014"


class ScoreReader:
    """Reads day totals and published scores; scores any as-of date on request."""

    def __init__(self, engine: Engine, catalog: Catalog, sql: PostgresBulkSQL | SQLiteBulkSQL | None = None):
        self.engine = engine
        self.catalog = catalog
        # `sql`: the database's own adapter unless given (a test reads PostgreSQL row by row too).
        self.sql = bulk_sql_for(engine) if sql is None else sql
        self._scope = threading.local()  # one_connection's connection, per thread
        self._kept = KeptDays()  # day totals read for past boards, kept while the change log allows

    @contextmanager
    def bounded_reads(self, timeout_s: float | None) -> Iterator[Connection]:
        """A connection for scores computed on request: its statements are cancelled after
        `timeout_s` (None: unbounded), and a statement cancelled so raises ReadTimedOut.

        Inside `one_connection` (this thread), the connection of that scope, whose bound holds."""
        shared = getattr(self._scope, "conn", None)
        if shared is not None:
            try:
                yield shared
            except OperationalError as exc:
                # The statement failed and took the scope's transaction with it: begin again, with
                # the scope's bound, so that a caller that goes on (a page that shows the rest
                # without one part) can still read; and say a cancelled statement as ever.
                bound = self._scope.timeout_s
                shared.rollback()
                self.sql.bound_reads(shared, bound)
                if bound is not None and ReadTimedOut.cancelled(exc):
                    raise ReadTimedOut(bound) from exc
                raise
            return
        with self.engine.connect() as conn:
            try:
                self.sql.bound_reads(conn, timeout_s)
                yield conn
            except OperationalError as exc:
                if timeout_s is not None and ReadTimedOut.cancelled(exc):
                    raise ReadTimedOut(timeout_s) from exc
                raise

    @contextmanager
    def one_connection(self, timeout_s: float | None) -> Iterator[Connection]:
        """One request's reads on one bounded connection: every read of this reader in this thread
        inside the scope (the board, the states of its nulls, the stale-feed days, the backlog)
        uses it, instead of taking a connection from the pool, checking it and setting its bound
        each time (about half a millisecond each, several times a board). A scope inside a scope
        is the outer one."""
        if getattr(self._scope, "conn", None) is not None:
            yield self._scope.conn
            return
        with self.bounded_reads(timeout_s) as conn:
            self._scope.conn, self._scope.timeout_s = conn, timeout_s
            try:
                yield conn
            finally:
                self._scope.conn = None

    def first_days(self, conn: Connection) -> dict[str, date]:
        return {row.metric: row.first_day for row in conn.execute(select(MetricFirstDay.__table__))}

    def load_days(self, conn: Connection, metric_ids: Iterable[str], start: date, end: date,
                  first_days: dict[str, date], fresh: bool = False,
                  timeout_s: float | None = None) -> dict[str, dict[date, DayTotals]]:
        """Daily totals of these metrics for local days start..end, plus trend metrics' past years.

        From the days kept across requests (`KeptDays`), once the fold's change log has said
        which of them changed; only days not kept yet are read. `fresh`: all read now and
        nothing kept, for a read inside a transaction that writes (the scorer's rescore, after
        its fold): what it reads may yet be rolled back, so no other request may be served it.
        `timeout_s`: the request's bound, which waiting for another request's read counts in."""
        spans = self.spans(metric_ids, start, end, first_days)
        medians = {m for m in spans if self.catalog.by_id[m].kind is Kind.TARGET_OVER_MEDIAN}
        kept = KeptDays() if fresh else self._kept
        # One request at a time reads and updates the kept days; a request waits for the lock
        # no longer than its reads may take.
        if not kept.lock.acquire(timeout=-1 if timeout_s is None else timeout_s):
            raise ReadTimedOut(timeout_s)
        try:
            if not fresh:
                kept.follow_changes(conn)
                kept.bound()
            kept.read_spans(conn, kept.missing(spans, widen=not fresh), self.sql.day_totals,
                            self.sql.measurement_values, medians)
            return {metric_id: kept.view(metric_id, metric_spans) for metric_id, metric_spans in spans.items()}
        finally:
            kept.lock.release()

    def spans(self, metric_ids: Iterable[str], start: date, end: date,
              first_days: dict[str, date]) -> dict[str, list[Span]]:
        """The days a board of these metrics over start..end scores from: start..end, and for a
        trend metric the same days of each past year since its first day."""
        spans: dict[str, list[Span]] = {}
        for metric_id in metric_ids:
            metric_spans = spans[metric_id] = [(start, end)]
            metric = self.catalog.by_id[metric_id]
            first = first_days.get(metric_id)
            if not metric.kind.is_trend or first is None:
                continue
            years = 1
            while years_back(end, years) >= first:
                # a day either side covers 29 February moved to 28 February
                metric_spans.append((years_back(start, years) - timedelta(days=1),
                                     years_back(end, years) + timedelta(days=1)))
                years += 1
        return spans

    def score_metrics(self, conn: Connection, metric_ids: Iterable[str], as_of: date,
                      first_days: dict[str, date] | None = None, fresh: bool = False,
                      timeout_s: float | None = None) -> dict[str, dict[str, WindowScore]]:
        metric_ids = list(metric_ids)
        first_days = self.first_days(conn) if first_days is None else first_days
        days = self.load_days(conn, metric_ids, earliest_start(self.catalog.windows, as_of), as_of, first_days,
                              fresh, timeout_s)
        return {metric_id: score_metric(self.catalog.by_id[metric_id], days[metric_id], as_of, self.catalog.windows,
                                        first_days.get(metric_id))
                for metric_id in metric_ids}

    def scoreboard(self, as_of: date, timeout_s: float | None = None) -> Scoreboard:
        """Every metric scored from the database as of `as_of`: the same numbers as offline scoring.

        Computed on request, so bounded: past `timeout_s` it raises ReadTimedOut.
        """
        with self.bounded_reads(timeout_s) as conn:
            metrics = self.score_metrics(conn, [m.id for m in self.catalog.metrics], as_of, timeout_s=timeout_s)
        return Scoreboard(as_of, overall(metrics.values(), self.catalog.windows), metrics)

    def history(self, metric_id: str, window: str, days: int, end: date,
                timeout_s: float | None = None) -> list[tuple[date, WindowScore]]:
        """A metric's score in one window for each as-of date of the `days` ending on `end`.

        Computed on request, so bounded: past `timeout_s` (the queries, then the scoring of
        each day, which is where a long trend history spends its time) it raises ReadTimedOut.
        """
        from time import monotonic

        deadline = None if timeout_s is None else monotonic() + timeout_s
        metric = self.catalog.by_id[metric_id]
        start = end - timedelta(days=days - 1)
        with self.bounded_reads(timeout_s) as conn:
            first_days = self.first_days(conn)
            loaded = self.load_days(conn, [metric_id], earliest_start(self.catalog.windows, start), end, first_days,
                                    timeout_s=timeout_s)
        series = []
        for as_of in days_up_to(end, days):
            if deadline is not None and monotonic() > deadline:
                raise ReadTimedOut(timeout_s)
            scores = score_metric(metric, loaded[metric_id], as_of, self.catalog.windows, first_days.get(metric_id))
            series.append((as_of, scores[window]))
        return series

    def scoreboards(self, start: date, end: date, timeout_s: float | None = None) -> list[Scoreboard]:
        """Every metric's board as of each date from `start` to `end` (inclusive), oldest first.

        The day totals are loaded once for the whole range and each date is scored from them
        (the same boards as `scoreboard(d)`, without a query per day); bounded like `history`.
        """
        from time import monotonic

        deadline = None if timeout_s is None else monotonic() + timeout_s
        ids = [m.id for m in self.catalog.metrics]
        with self.bounded_reads(timeout_s) as conn:
            first_days = self.first_days(conn)
            loaded = self.load_days(conn, ids, earliest_start(self.catalog.windows, start), end, first_days,
                                    timeout_s=timeout_s)
        boards = []
        for as_of in days_up_to(end, (end - start).days + 1):
            if deadline is not None and monotonic() > deadline:
                raise ReadTimedOut(timeout_s)
            metrics = {metric_id: score_metric(self.catalog.by_id[metric_id], loaded[metric_id], as_of,
                                               self.catalog.windows, first_days.get(metric_id))
                       for metric_id in ids}
            boards.append(Scoreboard(as_of, overall(metrics.values(), self.catalog.windows), metrics))
        return boards

    def percentiles(self, as_of: date, metric_ids: Iterable[str] | None = None,
                    timeout_s: float | None = None) -> dict[str, float | None]:
        """Each metric's percentile as of `as_of` (shared/core/percentile.py): the same numbers as
        `cityscore score`. One load of the year's day totals (trends: their past years too), then
        each past date scored in memory; bounded like `history`."""
        from time import monotonic

        deadline = None if timeout_s is None else monotonic() + timeout_s
        ids = [m.id for m in self.catalog.metrics] if metric_ids is None else list(metric_ids)
        if DAY not in self.catalog.windows:
            return {metric_id: None for metric_id in ids}
        with self.bounded_reads(timeout_s) as conn:
            first_days = self.first_days(conn)
            loaded = self.load_days(conn, ids, percentile_reach(self.catalog.windows, as_of), as_of, first_days,
                                    timeout_s=timeout_s)
        ranked = {}
        for metric_id in ids:
            if deadline is not None and monotonic() > deadline:
                raise ReadTimedOut(timeout_s)
            ranked[metric_id] = percentile(self.catalog.by_id[metric_id], loaded[metric_id], as_of,
                                           self.catalog.windows, first_days.get(metric_id))
        return ranked

    def with_states(self, board: Scoreboard, timeout_s: float | None = None) -> Scoreboard:
        """A published board with each null score's state: no data, or insufficient data.

        The scorer publishes scores, not states. A null is insufficient data when one of its
        window's days has data (`scoring.unscored`, the rule of every kind), so one query for
        which days of the windows have data is enough, with no scoring again.
        """
        nulls = [metric_id for metric_id, scores in board.metrics.items()
                 if any(result.score is None for result in scores.values())]
        if not nulls:
            return board
        table = DayTotal.__table__
        with_data: dict[str, set[date]] = {metric_id: set() for metric_id in nulls}
        query = select(table.c.metric, table.c.day).where(
            table.c.metric.in_(nulls), table.c.day.between(earliest_start(self.catalog.windows, board.as_of),
                                                           board.as_of))
        with self.bounded_reads(timeout_s) as conn:
            for metric_id, day in conn.execute(query):
                with_data[metric_id].add(day)
        metrics = dict(board.metrics)
        for metric_id in nulls:
            metrics[metric_id] = {
                window: (unscored(with_data[metric_id], self.catalog.windows[window].dates(board.as_of), result)
                         if result.score is None else result)
                for window, result in board.metrics[metric_id].items()}
        return board._replace(metrics=metrics)

    def last_data(self, as_of: date, timeout_s: float | None = None) -> dict[str, date | None]:
        """The last local day with data on or before `as_of` (None: none yet) of each metric with
        expect_data, for the stale-feed rule (shared/core/staleness.py); nothing, and no read, when
        no metric sets it (no feed can be stale then).

        One statement of one max(day) per metric: each is a short backward scan of day_totals'
        (metric, day) key, whatever the history's length (a max grouped by metric would read every
        row up to as_of)."""
        ids, query = self._last_data_query
        if not ids:
            return {}
        with self.bounded_reads(timeout_s) as conn:
            row = conn.execute(query, {"as_of": as_of}).one()
        return dict(zip(ids, row))

    @cached_property
    def _last_data_query(self):
        # Built once: building two dozen subqueries costs more than the database takes to answer them.
        table = DayTotal.__table__
        ids = [m.id for m in self.catalog.metrics if m.expect_data is not None]
        if not ids:
            return ids, None
        as_of = bindparam("as_of", type_=Date)
        return ids, select(*(select(func.max(table.c.day)).where(table.c.metric == metric_id, table.c.day <= as_of)
                             .scalar_subquery() for metric_id in ids))

    # -- the cases behind the scores (shared/core/cases.py decides; these only narrow the rows) --

    def cases_closed(self, metric_id: str, start: date, end: date, timeout_s: float | None = None) -> list[Case]:
        """A metric's cases closed on local days start..end (its window's late and on-time cases,
        its breakdowns)."""
        query = select(KeptCase.__table__).where(*self._closed_on(metric_id, start, end))
        with self.bounded_reads(timeout_s) as conn:
            return [kept_case(row, self.catalog) for row in conn.execute(query)]

    def cases_open_at(self, as_of: date, metric_ids: Iterable[str] | None = None,
                      timeout_s: float | None = None) -> list[Case]:
        """The cases open at the end of local day `as_of` (opened before it, not closed by then), of
        these metrics (every one when None): the backlog, its overdue and due-soon cases."""
        table = KeptCase.__table__
        query = select(table).where(self._open_at(end_of_day(as_of, self.catalog)))
        if metric_ids is not None:
            query = query.where(table.c.metric.in_(list(metric_ids)))
        with self.bounded_reads(timeout_s) as conn:
            return [kept_case(row, self.catalog) for row in conn.execute(query)]

    def case_lines(self, metric_id: str, as_of: date, status: str, window: str = "week",
                   timeout_s: float | None = None) -> list[CaseLine]:
        """`cases.cases_behind` over the stored cases: the metric's cases with `status`, newest first
        (`case_page` without a limit: one reading of a list, paged or whole)."""
        return self.case_page(metric_id, as_of, status, window, timeout_s=timeout_s)[1]

    def _closed_on(self, metric_id: str, start: date, end: date) -> list:
        """The conditions of a metric's kept case closed on local days start..end."""
        table = KeptCase.__table__
        return [table.c.metric == metric_id,
                table.c.closed_at >= end_of_day(start - timedelta(days=1), self.catalog),
                table.c.closed_at < end_of_day(end, self.catalog)]

    def case_page(self, metric_id: str, as_of: date, status: str, window: str = "week", limit: int | None = None,
                  offset: int = 0, timeout_s: float | None = None, oldest_first: bool = False,
                  ) -> tuple[int, list[CaseLine]]:
        """One page of `case_lines` and the whole list's length, with only the page read: the
        database counts the list and orders and cuts it (a quarter's on-time cases of a busy metric
        are thousands; a page is a hundred). `oldest_first`: the page from the list's other end,
        oldest first (the oldest overdue cases, in the order a manager should close them).

        The database only narrows the rows, by the core's rules (`cases.status_at`: late when
        closed after its due time, overdue when open and due before the end of the day); the core
        then makes the page's lines, as it makes the whole list's. Case ids are ordered by code
        point, as Python orders them, not by the database's collation."""
        check_case_query(self.catalog, metric_id, window, status=status)  # refused before any read
        table = KeptCase.__table__
        moment = end_of_day(as_of, self.catalog)
        postgres = self.engine.dialect.name == "postgresql"
        case_id = table.c.case_id.collate("C") if postgres else table.c.case_id
        department = table.c.department.collate("C") if postgres else table.c.department
        if status in (LATE, ON_TIME):
            start, end = self.catalog.windows[window].span(as_of)
            where = [*self._closed_on(metric_id, start, end),
                     table.c.closed_at > table.c.due_at if status == LATE else table.c.closed_at <= table.c.due_at]
            order = [table.c.closed_at, case_id, department]
        else:
            where = [table.c.metric == metric_id, self._open_at(moment),
                     table.c.due_at < moment if status == OVERDUE else table.c.due_at >= moment]
            order = [table.c.opened_at, case_id, department]
        # The list's length with the page, in the same statement: a fold committed between a count
        # and a page would make them disagree.
        query = (select(table, func.count().over().label("total")).where(*where)
                 .order_by(*(column if oldest_first else column.desc() for column in order)).offset(offset))
        if limit is not None:
            query = query.limit(limit)
        with self.bounded_reads(timeout_s) as conn:
            found = conn.execute(query).all()
            # No row: a page past the end, or no case at all; the count alone says which.
            total = found[0].total if found else conn.execute(
                select(func.count()).select_from(table).where(*where)).scalar_one()
        lines = cases_behind([kept_case(row, self.catalog) for row in found], self.catalog, metric_id, as_of,
                             status, window)  # (newest first, as every list)
        return total, oldest(lines, len(lines)) if oldest_first else lines

    def breakdown(self, metric_id: str, by: str, as_of: date, window: str = "week",
                  timeout_s: float | None = None) -> list[Group]:
        """`cases.breakdown` over the stored cases closed in the window."""
        check_case_query(self.catalog, metric_id, window, by=by)  # refused before any read
        start, end = self.catalog.windows[window].span(as_of)
        return breakdown(self.cases_closed(metric_id, start, end, timeout_s), self.catalog, metric_id, by,
                         as_of, window)

    def backlogs(self, as_of: date, timeout_s: float | None = None) -> dict[str, Backlog]:
        """`cases.backlogs` counted by the database: every case-fed metric's overdue and due-soon
        cases at the end of `as_of`, without moving the open cases into Python (the board asks this on
        every request). The same rule as the core's (tests/integration/test_kept_cases.py compares them)."""
        table = KeptCase.__table__
        moment = end_of_day(as_of, self.catalog)
        soon = moment + DUE_SOON
        found = {metric.id: Backlog() for metric in self.catalog.metrics if metric.feed is Feed.CASES}
        overdue = func.sum(case((table.c.due_at < moment, 1), else_=0))
        due_soon = func.sum(case((and_(table.c.due_at >= moment, table.c.due_at < soon), 1), else_=0))
        query = select(table.c.metric, overdue, due_soon).where(self._open_at(moment)).group_by(table.c.metric)
        with self.bounded_reads(timeout_s) as conn:
            for metric_id, late, soon_ in conn.execute(query):
                if metric_id in found:  # a metric no longer fed by cases, or gone from the catalog
                    found[metric_id] = Backlog(int(late or 0), int(soon_ or 0))
        return found

    def _open_at(self, moment: datetime):
        """The condition of a kept case open at `moment`: opened before it, not closed by then
        (closed_at NULL, or at or after it). On PostgreSQL written as the GiST index of migration 0009
        is (the span (opened_at, closed_at] contains the moment), so the database finds those cases
        alone, for any day: the plain condition reads every case (50-60 ms for 177,000 cases, where
        the index takes 2-12 ms), since neither opened_at nor closed_at alone bounds it."""
        table = KeptCase.__table__
        if self.engine.dialect.name == "postgresql":
            span = func.tstzrange(table.c.opened_at, table.c.closed_at, literal_column("'(]'"))
            return span.op("@>")(cast(moment, TIMESTAMP(timezone=True)))
        return and_(table.c.opened_at < moment, or_(table.c.closed_at.is_(None), table.c.closed_at >= moment))

    def case_fields(self, board: Scoreboard, alert_windows: Iterable[str] = ("week",),
                    timeout_s: float | None = None) -> dict[str, dict]:
        """`cases.case_fields` for a board: each case-fed metric's "open" and "projected"."""
        return case_fields(board, self.catalog, self.backlogs(board.as_of, timeout_s), alert_windows)

    # -- the scores the scorer published ----------------------------------------------------

    def current(self, conn: Connection) -> dict[tuple[str, str], CurrentScore]:
        return {(row.metric, row.window): row for row in conn.execute(select(CurrentScore.__table__))}

    def last_updated(self, conn: Connection) -> datetime | None:
        return conn.scalar(select(func.max(CurrentScore.__table__.c.updated_at)))


def kept_case(row, catalog: Catalog) -> Case:
    """A `cases` row as the core's `Case` (shared/store/tables/scorer.py, KeptCase), under the
    catalog as it is now: only the attributes its metric marks public now (one made private since
    the case was folded is not shown again), and the breakdown values in its metric's breakdowns'
    order now (kept by name, so a catalog that adds or reorders breakdowns reads them right)."""
    metric = catalog.by_id.get(row.metric)
    attributes: tuple[tuple[str, str], ...] = ()
    groups: tuple[str | None, ...] = ()
    if metric is not None and row.attributes and metric.public_attributes:
        attributes = tuple(sorted((name, value) for name, value in orjson.loads(row.attributes).items()
                                  if name in metric.public_attributes))
    if metric is not None and metric.breakdowns:
        named = orjson.loads(row.groups) if row.groups else {}
        groups = tuple(named.get(name) for name in metric.breakdowns)
    return Case(row.department, row.case_id, row.metric, row.opened_at, row.due_at, row.closed_at,
                attributes, groups)


def kept_case_row(key: str, case: Case, catalog: Catalog) -> dict:
    """The `cases` row of a case kept under its replace key (the fold and the rebuild write these):
    its public attributes and its breakdown values, each by name."""
    metric = catalog.by_id.get(case.metric)
    named = ({name: value for name, value in zip(metric.breakdowns, case.groups) if value is not None}
             if metric is not None and case.groups else None)
    return {"key": key, "department": case.department, "case_id": case.case_id, "metric": case.metric,
            "opened_at": case.opened_at, "due_at": case.due_at, "closed_at": case.closed_at,
            "attributes": orjson.dumps(dict(case.attributes)).decode() if case.attributes else None,
            "groups": orjson.dumps(named).decode() if named else None}
