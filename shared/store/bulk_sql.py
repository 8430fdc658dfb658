"""Each database's bulk SQL for the score store: one small adapter per dialect.

The fold and the reads say *what* to store or fetch; these adapters say how, in the
fewest round trips each database allows. PostgreSQL takes a batch's rows as one JSON
parameter unpacked by the server; SQLite (tests, a laptop) takes plain executemany.
Both answer with the same Python values, so the fold has no dialect branch of its own.
"""

from __future__ import annotations

from datetime import date
from typing import Iterable, Sequence

import orjson
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from shared.core.folding import Identity, Record
from shared.store.tables.scorer import (CurrentPart, DayTotal, KeptCase, MeasurementValue, MetricFirstDay,
                                        ProcessedEvent)

RESCORE_LOCK = 7_343_264_001  # PostgreSQL advisory lock key: one scorer rescoring at a time
CHANGE_LOG_LOCK = 7_343_264_002  # and one fold at a time taking the change log's next version

# A processed_events row: the event's identity, then what it counts (see `event_row`).
EVENT_COLUMNS = ("department", "event_id", "part_key", "metric", "day", "numerator", "denominator", "count",
                 "value")


def event_row(identity: Identity, record: Record) -> tuple:
    """A processed_events row, the event and what it counts, in EVENT_COLUMNS' order (cut short
    when it counts nothing of its own)."""
    if record is None:
        return identity
    if isinstance(record, str):
        return (*identity, record)
    return (*identity, None, record.metric, record.day, record.numerator, record.denominator, record.count,
            record.value)


def event_dict(row: tuple) -> dict:
    return dict(zip(EVENT_COLUMNS, row + (None,) * (len(EVENT_COLUMNS) - len(row))))


_NO_VALUES = (None,) * len(EVENT_COLUMNS)


def event_columns(rows: list[tuple]) -> dict[str, str]:
    """event_row tuples as the parameters of `_EVENT_ROWS`: c0..c8, each column's values as a
    JSON array (a short row's missing values are nulls)."""
    width = len(EVENT_COLUMNS)
    full = [row if len(row) == width else row + _NO_VALUES[len(row):] for row in rows]
    columns = list(zip(*full)) if full else [()] * width
    return {f"c{at}": orjson.dumps(column).decode() for at, column in enumerate(columns)}


def chunks(items: Sequence, size: int = 500) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _json(rows: list) -> str:
    return orjson.dumps(rows).decode()


# What the reads return, the same from every adapter: a metric's days with their totals, and
# a metric's day with the measurements kept for it (in no particular order: only medians use them).
DayTotalsOf = tuple[str, Sequence[date], Sequence[float], Sequence[float], Sequence[float]]
ValuesOf = tuple[str, date, Sequence[float]]


class PortableReads:
    """The reads in SQL any database runs: one result row per stored row."""

    def day_totals(self, conn: Connection, where: ColumnElement) -> Iterable[DayTotalsOf]:
        """day_totals rows matching `where`, grouped by metric: (metric, days, numerators, denominators, counts)."""
        table = DayTotal.__table__
        grouped: dict[str, tuple[list, list, list, list]] = {}
        for row in conn.execute(select(table.c.metric, table.c.day, table.c.numerator, table.c.denominator,
                                       table.c.count).where(where)):
            lists = grouped.get(row.metric)
            if lists is None:
                lists = grouped[row.metric] = ([], [], [], [])
            lists[0].append(row.day)
            lists[1].append(row.numerator)
            lists[2].append(row.denominator)
            lists[3].append(row.count)
        return [(metric, *lists) for metric, lists in grouped.items()]

    def measurement_values(self, conn: Connection, metrics: list[str], start: date, end: date) -> Iterable[ValuesOf]:
        """The kept measurements of these metrics on days start..end, grouped by (metric, day)."""
        table = MeasurementValue.__table__
        grouped: dict[tuple[str, date], list[float]] = {}
        for row in conn.execute(select(table.c.metric, table.c.day, table.c.value).where(
                table.c.metric.in_(metrics), table.c.day.between(start, end))):
            grouped.setdefault((row.metric, row.day), []).append(row.value)
        return [(metric, day, values) for (metric, day), values in grouped.items()]


def bulk_sql_for(engine: Engine) -> "PostgresBulkSQL | SQLiteBulkSQL":
    """The adapter for this engine's database."""
    return PostgresBulkSQL() if engine.dialect.name == "postgresql" else SQLiteBulkSQL()


# On PostgreSQL a batch's rows go as one JSON parameter unpacked by the server:
# executemany would send (and plan) one INSERT per row, and psycopg's array
# adaptation quotes each string in Python; both cost more than the rest of the fold.
#
# The claim inserts the ids not yet there with a plain INSERT, not INSERT ... ON CONFLICT DO
# NOTHING RETURNING: on a 10,000-id batch into a million-row table, psql timed it at 20-40 ms
# against 45-75 ms, and it is the largest statement of a batch. The ids already there come
# back in the same round trip (usually none; a redelivery or a resent event). An id inserted
# meanwhile by another scorer's transaction (two scorers overlapping in a rebalance) makes
# it fail with a unique violation once that transaction commits; the scorer then runs the
# batch's transaction again, and this time the id is found.
#
# An event is (department, event_id); a row of department '' (folded before identities were
# per department) stands for every department. Each row keeps what the event counts.
# The rows go column by column (`event_columns`): one JSON array per column, read with
# json_array_elements_text side by side (ROWS FROM). Sent as one array of rows, each `e->>N`
# on a json element parsed the element's text again, nine times a row, which made the claim
# about a quarter slower (a batch of 5,000 ids timed from Python, alternately: 102-131 ms
# against 79-105 ms). jsonb would parse once too, but keeps no negative zero; text keeps
# each number as written, so the float8 casts read the same values as before.
_EVENT_ROWS = ("(SELECT department, event_id, part_key, metric, CAST(day AS date) AS day, "
               "CAST(numerator AS float8) AS numerator, CAST(denominator AS float8) AS denominator, "
               "CAST(count AS float8) AS count, CAST(value AS float8) AS value FROM ROWS FROM ("
               + ", ".join(f"json_array_elements_text(CAST(:c{column} AS json))" for column in range(len(EVENT_COLUMNS)))
               + f") AS e({', '.join(EVENT_COLUMNS)})) AS r")
_CLAIM = text(
    f"WITH ids AS MATERIALIZED (SELECT r.*, EXISTS (SELECT 1 FROM processed_events p "
    f"WHERE p.event_id = r.event_id AND p.department IN (r.department, '')) AS seen FROM {_EVENT_ROWS}), "
    "claimed AS (INSERT INTO processed_events (department, event_id, part_key, metric, day, numerator, "
    "denominator, count, value) SELECT department, event_id, part_key, metric, day, numerator, denominator, "
    "count, value FROM ids WHERE NOT seen) "
    "SELECT json_agg(json_build_array(department, event_id)) FILTER (WHERE seen) FROM ids")
# The earlier events a batch withdraws or corrects, locked (another scorer may be taking
# the same one back in a rebalance).
_SELECT_EVENTS = text(
    "SELECT p.department, p.event_id, p.part_key, p.metric, p.day, p.numerator, p.denominator, p.count, p.value "
    "FROM processed_events p JOIN json_to_recordset(CAST(:ids AS json)) AS r(department varchar, event_id varchar) "
    "ON p.event_id = r.event_id AND p.department IN (r.department, '') "
    "ORDER BY p.event_id, p.department FOR UPDATE OF p")
_UPDATE_EVENTS = text(
    f"UPDATE processed_events AS p SET part_key = r.part_key, metric = r.metric, day = r.day, "
    f"numerator = r.numerator, denominator = r.denominator, count = r.count, value = r.value "
    f"FROM {_EVENT_ROWS} WHERE p.event_id = r.event_id AND p.department = r.department")
# Parts the fold found (and locked) are updated and the others inserted, rather than one
# INSERT ... ON CONFLICT DO UPDATE (about a third slower in psql); a part another scorer
# inserts meanwhile is a duplicate key, and the batch is run again, as for the claim.
_PART_ROWS = ("json_to_recordset(CAST(:rows AS json)) "
              "AS r(key varchar, metric varchar, day date, numerator float8, denominator float8, count float8)")
_INSERT_PARTS = text(
    f"INSERT INTO current_parts (key, metric, day, numerator, denominator, count) SELECT * FROM {_PART_ROWS}")
_UPDATE_PARTS = text(
    f"UPDATE current_parts AS p SET metric = r.metric, day = r.day, numerator = r.numerator, "
    f"denominator = r.denominator, count = r.count FROM {_PART_ROWS} WHERE p.key = r.key")
# A case's latest version replaces the one kept (one statement either way: most of a batch's
# cases are new, and a closing replaces an open version).
_KEEP_CASES = text(
    "INSERT INTO cases (key, department, case_id, metric, opened_at, due_at, closed_at, attributes, groups) "
    "SELECT * FROM json_to_recordset(CAST(:rows AS json)) AS r(key varchar, department varchar, case_id varchar, "
    "metric varchar, opened_at timestamptz, due_at timestamptz, closed_at timestamptz, attributes text, "
    "groups text) ON CONFLICT (key) DO UPDATE SET department = EXCLUDED.department, case_id = EXCLUDED.case_id, "
    "metric = EXCLUDED.metric, opened_at = EXCLUDED.opened_at, due_at = EXCLUDED.due_at, "
    "closed_at = EXCLUDED.closed_at, attributes = EXCLUDED.attributes, groups = EXCLUDED.groups")
_FORGET_CASES = text("DELETE FROM cases WHERE key IN (SELECT value FROM json_array_elements_text(CAST(:keys AS json)))")
_ADD_DAY_TOTALS = text(
    "INSERT INTO day_totals (metric, day, numerator, denominator, count, parts) "
    "SELECT * FROM json_to_recordset(CAST(:rows AS json)) "
    "AS r(metric varchar, day date, numerator float8, denominator float8, count float8, parts int) "
    "ON CONFLICT (metric, day) DO UPDATE SET numerator = day_totals.numerator + EXCLUDED.numerator, "
    "denominator = day_totals.denominator + EXCLUDED.denominator, count = day_totals.count + EXCLUDED.count, "
    "parts = day_totals.parts + EXCLUDED.parts")
_INSERT_VALUES = text(
    "INSERT INTO measurement_values (metric, day, value) "
    "SELECT * FROM json_to_recordset(CAST(:rows AS json)) AS r(metric varchar, day date, value float8)")
_SELECT_PARTS = text(
    # FOR UPDATE: another scorer may hold the same case in the middle of a rebalance.
    "SELECT key, metric, day, numerator, denominator, count FROM current_parts "
    "WHERE key IN (SELECT value FROM json_array_elements_text(CAST(:keys AS json))) ORDER BY key FOR UPDATE")


class PostgresBulkSQL(PortableReads):
    """PostgreSQL: each bulk step is one statement with the batch as one JSON parameter, and
    reads come back as a few rows of arrays."""

    # A past board reads about 4,000 day_totals rows and 10,000 measurements (a 1M-event
    # history): made into Python one row at a time, that was most of the board's time. Arrays,
    # one row per metric (per metric and day for the measurements), carry the same values
    # (the same text conversion of each float) at a fraction of the cost per value.
    def day_totals(self, conn: Connection, where: ColumnElement) -> Iterable[DayTotalsOf]:
        from sqlalchemy.dialects.postgresql import aggregate_order_by

        table = DayTotal.__table__

        def by_day(column):
            return func.array_agg(aggregate_order_by(column, table.c.day))

        return conn.execute(select(table.c.metric, by_day(table.c.day), by_day(table.c.numerator),
                                   by_day(table.c.denominator), by_day(table.c.count))
                            .where(where).group_by(table.c.metric)).all()

    def measurement_values(self, conn: Connection, metrics: list[str], start: date, end: date) -> Iterable[ValuesOf]:
        table = MeasurementValue.__table__
        return conn.execute(select(table.c.metric, table.c.day, func.array_agg(table.c.value)).where(
            table.c.metric.in_(metrics), table.c.day.between(start, end)).group_by(table.c.metric, table.c.day)).all()

    def claim(self, conn: Connection, identities: list[Identity], records: dict[Identity, Record]) -> set[Identity]:
        rows = [event_row(identity, records[identity]) for identity in identities]
        found = conn.execute(_CLAIM, event_columns(rows)).scalar()
        return {(department, event_id) for department, event_id in found or ()}

    def event_rows(self, conn: Connection, identities: list[Identity]) -> list:
        """processed_events rows with these ids (any department), locked until the transaction ends."""
        return conn.execute(_SELECT_EVENTS, {"ids": _json([{"department": d, "event_id": e}
                                                           for d, e in identities])}).all()

    def part_rows(self, conn: Connection, keys: list[str]) -> list:
        """current_parts rows of these keys, locked."""
        return conn.execute(_SELECT_PARTS, {"keys": _json(keys)}).all()  # one fetch, not one per row

    def update_events(self, conn: Connection, rows: list[tuple]) -> None:
        """Set what these events (event_row tuples) count now."""
        conn.execute(_UPDATE_EVENTS, event_columns(rows))

    def write_parts(self, conn: Connection, rows: list[dict], stored: set[str]) -> None:
        """Update the parts whose key is `stored` (found and locked by `part_rows`), insert the others."""
        updates = [row for row in rows if row["key"] in stored]
        if updates:
            conn.execute(_UPDATE_PARTS, {"rows": _json(updates)})
        if len(updates) < len(rows):
            conn.execute(_INSERT_PARTS, {"rows": _json([row for row in rows if row["key"] not in stored])})

    def write_cases(self, conn: Connection, keep: list[dict], forget: list[str]) -> None:
        """Keep these cases' latest versions (kept_case_row dicts); forget the withdrawn ones' keys."""
        if keep:
            conn.execute(_KEEP_CASES, {"rows": _json(keep)})
        if forget:
            conn.execute(_FORGET_CASES, {"keys": _json(forget)})

    def add_day_totals(self, conn: Connection, rows: list[dict]) -> None:
        conn.execute(_ADD_DAY_TOTALS, {"rows": _json(rows)})

    def insert_values(self, conn: Connection, rows: list[dict]) -> None:
        conn.execute(_INSERT_VALUES, {"rows": _json(rows)})

    def lower_first_days(self, conn: Connection, first_days: dict[str, date]) -> None:
        """Each metric's first day with data becomes the earlier of the stored one and this one."""
        from sqlalchemy.dialects.postgresql import insert

        _lower_first_days(conn, insert, func.least, first_days)

    def lock_rescore(self, conn: Connection) -> None:
        # One rescore at a time across scorers: otherwise one that read the totals before
        # another's batch committed could write its older score over the newer one (or
        # both insert a metric's first score). Held until this transaction ends.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RESCORE_LOCK})

    def order_changes(self, conn: Connection) -> None:
        # Two scorers' folds (a rebalance, several partitions) take the change log's versions
        # one after the other, each holding this lock from reading the last version to its
        # commit: versions follow the commit order, so a reader that sees N has seen all below.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHANGE_LOG_LOCK})

    def bound_reads(self, conn: Connection, timeout_s: float | None) -> None:
        """Cancel this read transaction's statements after `timeout_s` (SET LOCAL, so the pooled
        connection, which the scorer's folds may use next, keeps no timeout)."""
        if timeout_s is not None:
            milliseconds = max(1, round(timeout_s * 1000))  # 0 would mean no timeout at all
            conn.execute(text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(milliseconds)})


class SQLiteBulkSQL(PortableReads):
    """SQLite: executemany and IN lists of at most 500 (its bound-parameter limit)."""

    def claim(self, conn: Connection, identities: list[Identity], records: dict[Identity, Record]) -> set[Identity]:
        existing: set[Identity] = set()
        table = ProcessedEvent.__table__
        for chunk in chunks(identities):
            for row in conn.execute(select(table.c.department, table.c.event_id).where(
                    table.c.event_id.in_({event_id for _, event_id in chunk}))):
                existing.add((row.department, row.event_id))
        seen = {identity for identity in identities if identity in existing or ("", identity[1]) in existing}
        new = [event_dict(event_row(identity, records[identity])) for identity in identities if identity not in seen]
        if new:
            conn.execute(table.insert(), new)
        return seen

    def event_rows(self, conn: Connection, identities: list[Identity]) -> list:
        # No row locks to take: SQLite has a single writer.
        table = ProcessedEvent.__table__
        rows: list = []
        for chunk in chunks(identities):
            rows.extend(conn.execute(select(table).where(table.c.event_id.in_({e for _, e in chunk}))))
        return rows

    def part_rows(self, conn: Connection, keys: list[str]) -> list:
        table = CurrentPart.__table__
        return [row for chunk in chunks(keys) for row in conn.execute(select(table).where(table.c.key.in_(chunk)))]

    def update_events(self, conn: Connection, rows: list[tuple]) -> None:
        table = ProcessedEvent.__table__
        for row in map(event_dict, rows):
            conn.execute(update(table).where(table.c.event_id == row["event_id"],
                                             table.c.department.in_((row["department"], ""))).values(
                {k: v for k, v in row.items() if k not in ("department", "event_id")}))

    def write_parts(self, conn: Connection, rows: list[dict], stored: set[str]) -> None:
        from sqlalchemy.dialects.sqlite import insert

        stmt = insert(CurrentPart.__table__)
        conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={
            "metric": stmt.excluded.metric, "day": stmt.excluded.day, "numerator": stmt.excluded.numerator,
            "denominator": stmt.excluded.denominator, "count": stmt.excluded.count}), rows)

    def write_cases(self, conn: Connection, keep: list[dict], forget: list[str]) -> None:
        from sqlalchemy.dialects.sqlite import insert

        table = KeptCase.__table__
        if keep:
            stmt = insert(table)
            conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={
                name: stmt.excluded[name] for name in table.c.keys() if name != "key"}), keep)
        for chunk in chunks(forget):
            conn.execute(table.delete().where(table.c.key.in_(chunk)))

    def add_day_totals(self, conn: Connection, rows: list[dict]) -> None:
        from sqlalchemy.dialects.sqlite import insert

        stmt = insert(DayTotal.__table__)
        table = DayTotal.__table__
        conn.execute(stmt.on_conflict_do_update(index_elements=["metric", "day"], set_={
            "numerator": table.c.numerator + stmt.excluded.numerator,
            "denominator": table.c.denominator + stmt.excluded.denominator,
            "count": table.c.count + stmt.excluded.count,
            "parts": table.c.parts + stmt.excluded.parts}), rows)

    def insert_values(self, conn: Connection, rows: list[dict]) -> None:
        conn.execute(MeasurementValue.__table__.insert(), rows)

    def lower_first_days(self, conn: Connection, first_days: dict[str, date]) -> None:
        from sqlalchemy.dialects.sqlite import insert

        _lower_first_days(conn, insert, func.min, first_days)

    def lock_rescore(self, conn: Connection) -> None:
        """Nothing to take: SQLite's single writer already runs one rescore at a time."""

    def order_changes(self, conn: Connection) -> None:
        """Nothing to take: a SQLite transaction that has written holds the database's only write
        lock until it commits, so change log versions already follow the commit order."""

    def bound_reads(self, conn: Connection, timeout_s: float | None) -> None:
        """Nothing to set: SQLite has no statement timeout (it serves tests and a laptop)."""


def _lower_first_days(conn: Connection, insert, least, first_days: dict[str, date]) -> None:
    table = MetricFirstDay.__table__
    stmt = insert(table)
    conn.execute(stmt.on_conflict_do_update(index_elements=["metric"], set_={
        "first_day": least(table.c.first_day, stmt.excluded.first_day)}),
        [{"metric": metric, "first_day": day} for metric, day in sorted(first_days.items())])
