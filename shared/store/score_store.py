"""Scores kept in SQL: folding batches of events into daily totals, and reading scores back.

The same `Folder` and scoring core as the offline command; this module only moves
their state in and out of the database. Every write is idempotent: an event id is
claimed once (a unique key), so a batch delivered twice changes nothing the second
time, and replaceable parts (cases, tallies) are swapped under a row lock.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Iterable, Sequence

import orjson
from sqlalchemy import and_, delete, func, or_, select, text, update
from sqlalchemy.engine import Connection, Engine

from shared.core.catalog import Catalog, Kind
from shared.core.contract import Event
from shared.store.engine import utcnow
from shared.store.tables.scorer import CurrentPart, CurrentScore, DayTotal, MeasurementValue, MetricFirstDay, ProcessedEvent, ScoreOutbox
from shared.core.folding import Contribution, Folder, Identity, Record, department_of, replace_key, taken_back
from shared.core.scoring import DayTotals, Scoreboard, WindowScore, overall, score_metric, window_dates, years_back

RESCORE_LOCK = 7_343_264_001  # PostgreSQL advisory lock key: one scorer rescoring at a time
CITY = "cityscore"  # the metric name under which the overall CityScore is kept and published


@dataclass
class FoldOutcome:
    folded: int = 0
    duplicates: int = 0
    withdrawn: int = 0  # earlier events taken back (withdrawn or corrected)
    touched: dict[str, set[date]] = field(default_factory=lambda: defaultdict(set))


class BadScoreChange(ValueError):
    """A message on the scores topic that is not a score change."""


@dataclass(frozen=True)
class ScoreChange:
    """One change of a published score: the message the scorer sends on `cityscore.scores`."""

    metric: str
    window: str
    as_of: date
    score: float | None
    numerator: float | None
    denominator: float | None
    previous_score: float | None
    changed_at: datetime | None = None
    # The change's place in the order rescores committed: its outbox row's id, set when it is
    # published (see `ScoreStore.pending_outbox`). Consumers order changes by it, not by
    # `changed_at`, which is only the clock of whichever scorer computed the change.
    # None in messages from before the sequence existed.
    seq: int | None = None

    def payload(self) -> dict:
        body = {"metric": self.metric, "window": self.window, "as_of": self.as_of.isoformat(),
                "score": self.score, "numerator": self.numerator, "denominator": self.denominator,
                "previous_score": self.previous_score}
        if self.changed_at is not None:
            body["changed_at"] = self.changed_at.isoformat()
        if self.seq is not None:
            body["seq"] = self.seq
        return body

    @classmethod
    def from_payload(cls, payload: dict) -> "ScoreChange":
        """Read a message of the scores topic back, checked (for its consumers)."""
        try:
            changed_at = datetime.fromisoformat(payload["changed_at"])
            if changed_at.tzinfo is None:
                raise BadScoreChange("changed_at has no UTC offset")
            seq = payload.get("seq")
            if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 1):
                raise BadScoreChange(f"seq: {seq!r} is not a positive integer")
            return cls(str(payload["metric"]), str(payload["window"]), date.fromisoformat(payload["as_of"]),
                       _number(payload.get("score")), _number(payload.get("numerator")),
                       _number(payload.get("denominator")), _number(payload.get("previous_score")), changed_at,
                       seq)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, BadScoreChange):
                raise
            raise BadScoreChange(f"not a score change: {exc}") from None


def _sequenced(payload: str, seq: int) -> bytes:
    body = orjson.loads(payload)
    body["seq"] = seq
    return orjson.dumps(body)


def _number(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadScoreChange(f"{value!r} is not a number")
    return float(value)


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
# Each row goes as a JSON array in _EVENT_COLUMNS' order, cut short after the last value it
# has (most have no contribution of their own): a third of the bytes of JSON objects.
_EVENT_ROWS = ("(SELECT e->>0 AS department, e->>1 AS event_id, e->>2 AS part_key, e->>3 AS metric, "
               "CAST(e->>4 AS date) AS day, CAST(e->>5 AS float8) AS numerator, CAST(e->>6 AS float8) AS denominator, "
               "CAST(e->>7 AS float8) AS count, CAST(e->>8 AS float8) AS value "
               "FROM json_array_elements(CAST(:rows AS json)) AS e) AS r")
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


# What the database fold needs of one event: its identity (department, event_id), the key
# of the part it replaces (None when it only adds), its contribution (None for an open case
# or a withdrawal) and the identity of the earlier event it withdraws or corrects (or None).
# The scorer works this out as soon as an event is validated, so a batch waiting for the
# database holds these few objects instead of the validated event (about 280 bytes an event
# instead of 1,240 by tracemalloc over 20,000 generated events, before the identity became a
# pair), which lets it fold batches twice as large.
Folding = tuple[Identity, str | None, Contribution | None, Identity | None]


_EVENT_COLUMNS = ("department", "event_id", "part_key", "metric", "day", "numerator", "denominator", "count",
                  "value")


def _event_row(identity: Identity, record: Record) -> tuple:
    """A processed_events row, the event and what it counts, in _EVENT_COLUMNS' order (cut short
    when it counts nothing of its own)."""
    if record is None:
        return identity
    if isinstance(record, str):
        return (*identity, record)
    return (*identity, None, record.metric, record.day, record.numerator, record.denominator, record.count,
            record.value)


def _event_dict(row: tuple) -> dict:
    return dict(zip(_EVENT_COLUMNS, row + (None,) * (len(_EVENT_COLUMNS) - len(row))))


def _record_of(row) -> Record:
    """What a processed_events row says its event counts."""
    if row.part_key is not None:
        return row.part_key
    if row.metric is None:
        return None
    return Contribution(row.metric, row.day, row.numerator, row.denominator, row.count, row.value)


def _json(rows: list) -> str:
    return orjson.dumps(rows).decode()


def _chunks(items: Sequence, size: int = 500) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class ScoreStore:
    def __init__(self, engine: Engine, catalog: Catalog):
        self.engine = engine
        self.catalog = catalog
        self.folder = Folder(catalog)
        self.postgres = engine.dialect.name == "postgresql"
        if self.postgres:
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        self._insert = insert
        self._least = func.least if self.postgres else func.min

    # -- the write side ------------------------------------------------------------------

    def claim(self, conn: Connection, events: list[Identity] | dict[Identity, Record]) -> set[Identity]:
        """Record these events as processed (with what each counts, when given); return those that
        already were (for their department, or from before identities were per department)."""
        if not events:
            return set()
        records = events if isinstance(events, dict) else dict.fromkeys(events)
        # Each once (twice in one INSERT, it would be a duplicate key of its own), sorted: two
        # scorers claiming overlapping batches (a rebalance) take the ids' index locks in the
        # same order and cannot deadlock.
        identities = sorted(records, key=lambda identity: (identity[1], identity[0]))
        if self.postgres:
            rows = [_event_row(identity, records[identity]) for identity in identities]
            found = conn.execute(_CLAIM, {"rows": _json(rows)}).scalar()
            return {(department, event_id) for department, event_id in found or ()}
        existing: set[Identity] = set()
        table = ProcessedEvent.__table__
        for chunk in _chunks(identities):
            for row in conn.execute(select(table.c.department, table.c.event_id).where(
                    table.c.event_id.in_({event_id for _, event_id in chunk}))):
                existing.add((row.department, row.event_id))
        seen = {identity for identity in identities if identity in existing or ("", identity[1]) in existing}
        new = [_event_dict(_event_row(identity, records[identity]))
               for identity in identities if identity not in seen]
        if new:
            conn.execute(table.insert(), new)
        return seen

    def _earlier_events(self, conn: Connection, identities: list[Identity]) -> dict[Identity, Record]:
        """What these earlier events count (locked until the transaction ends); those never seen
        are missing. A row from before identities were per department answers for its id."""
        rows: list = []
        if self.postgres:
            rows = conn.execute(_SELECT_EVENTS, {"ids": _json([{"department": d, "event_id": e}
                                                                for d, e in identities])}).all()
        else:
            table = ProcessedEvent.__table__
            for chunk in _chunks(identities):
                rows.extend(conn.execute(select(table).where(table.c.event_id.in_({e for _, e in chunk}))))
        by_identity = {(row.department, row.event_id): row for row in rows}
        found: dict[Identity, Record] = {}
        for identity in identities:
            # The department's own row, else an older department-less one for the same id.
            row = by_identity.get(identity) or by_identity.get(("", identity[1]))
            if row is not None:
                found[identity] = _record_of(row)
        return found

    def _current_parts(self, conn: Connection, keys: list[str]) -> dict[str, object]:
        found: dict[str, object] = {}
        table = CurrentPart.__table__
        if self.postgres:
            rows = conn.execute(_SELECT_PARTS, {"keys": _json(keys)}).all()  # one fetch, not one per row
        else:
            rows = (row for chunk in _chunks(keys) for row in conn.execute(select(table).where(table.c.key.in_(chunk))))
        for row in rows:
            found[row.key] = (None if row.metric is None else
                              Contribution(row.metric, row.day, row.numerator, row.denominator, row.count))
        return found

    def prepare(self, event: Event) -> Folding:
        """What folding this event needs: its identity, the key it replaces (or None), its
        contribution (or None) and the earlier event it takes back (or None)."""
        department = department_of(event, self.catalog)
        target = taken_back(event)
        return ((department, event.event_id), replace_key(event, department), self.folder.contribution(event),
                None if target is None else (department, target))

    def fold(self, conn: Connection, events: Sequence[Event]) -> FoldOutcome:
        """Fold validated events (in the order received) inside the caller's transaction."""
        prepare = self.prepare
        return self.fold_prepared(conn, [prepare(event) for event in events])

    def fold_prepared(self, conn: Connection, batch: Sequence[Folding]) -> FoldOutcome:
        """Fold prepared events (in the order received) inside the caller's transaction.

        The same rules as `folding.Ledger.fold`, one event after another: a resent event
        changes nothing; a case or tally replaces the part its key counted; a withdrawal or a
        correction first takes back what the named earlier event counts (and an event named
        before it came will count nothing when it comes).
        """
        outcome = FoldOutcome()
        unique: dict[Identity, Folding] = {}
        for item in batch:
            if item[0] in unique:
                outcome.duplicates += 1
            else:
                unique[item[0]] = item
        # Claimed with what each counts on its own; the few that a take-back in this same
        # batch changes are updated below.
        seen = self.claim(conn, {identity: (key if key is not None else part)
                                 for identity, key, part, _ in unique.values()})
        outcome.duplicates += len(seen)
        if seen:  # a redelivery, or an event sent again
            fresh = [item for identity, item in unique.items() if identity not in seen]
        else:
            fresh = list(unique.values())
        outcome.folded = len(fresh)
        if not fresh:
            return outcome

        fresh_ids = {item[0] for item in fresh}
        targets = sorted({item[3] for item in fresh if item[3] is not None})
        # What events folded before this batch count, for those this batch takes back.
        records: dict[Identity, Record] = (
            self._earlier_events(conn, [t for t in targets if t not in fresh_ids]) if targets else {})
        keys = {key for _, key, _, _ in fresh if key is not None}
        keys.update(record for record in records.values() if isinstance(record, str))
        keys = sorted(keys)  # sorted: no lock cycles
        current = self._current_parts(conn, keys) if keys else {}
        stored = set(current)
        changed_keys: set[str] = set()
        # (metric, day) -> numerator, denominator, count, parts
        deltas: dict[tuple[str, date], list[float]] = {}
        values: list[dict] = []
        gone_values: list[dict] = []  # measurements taken back
        rows_changed: dict[Identity, Record] = {}  # processed_events rows to set to their final record
        tombstones: list[Identity] = []  # ids withdrawn before they came
        named_early: set[Identity] = set()  # fresh ids a take-back earlier in this batch named

        # The loop below runs once per event, the scorer's hottest Python: sums are kept
        # inline, and the days touched are read off `deltas` once at the end.
        def take_back(old: Contribution) -> None:
            totals = deltas.get((old.metric, old.day))
            if totals is None:
                totals = deltas[(old.metric, old.day)] = [0.0, 0.0, 0.0, 0]
            totals[0] -= old.numerator
            totals[1] -= old.denominator
            totals[2] -= old.count
            totals[3] -= 1

        def withdraw(target: Identity) -> None:
            if target not in records:
                # Not seen yet: later in this batch, or still to come. Either way it will count nothing.
                records[target] = None
                if target in fresh_ids:
                    named_early.add(target)
                else:
                    tombstones.append(target)
                return
            record = records[target]
            if record is None:
                return
            if isinstance(record, str):
                old = current.get(record)
                if old is not None:
                    take_back(old)  # type: ignore[arg-type]
                    current[record] = None
                    changed_keys.add(record)
            else:
                take_back(record)
                if record.value is not None:
                    gone_values.append({"metric": record.metric, "day": record.day, "value": record.value})
            records[target] = None
            rows_changed[target] = None
            outcome.withdrawn += 1

        for identity, key, part, target in fresh:
            if identity in named_early:
                # Withdrawn before it came (earlier in this batch): a duplicate of nothing.
                rows_changed[identity] = None
                outcome.folded -= 1
                outcome.duplicates += 1
                continue
            if target is not None:
                withdraw(target)
            if key is not None:
                old = current.get(key)
                if old is not None:
                    take_back(old)  # type: ignore[arg-type]
                current[key] = part
                changed_keys.add(key)
                if targets:
                    records[identity] = key
            elif targets:
                records[identity] = part
            if part is not None:
                slot = (part.metric, part.day)
                totals = deltas.get(slot)
                if totals is None:
                    deltas[slot] = [part.numerator, part.denominator, part.count, 1]
                else:
                    totals[0] += part.numerator
                    totals[1] += part.denominator
                    totals[2] += part.count
                    totals[3] += 1
                if part.value is not None:
                    values.append({"metric": part.metric, "day": part.day, "value": part.value})

        first_days: dict[str, date] = {}
        shrunk: set[str] = set()  # metrics with a day that lost a contribution
        for (metric, day), totals in deltas.items():
            outcome.touched[metric].add(day)
            if totals[3] < 0:
                shrunk.add(metric)
            elif totals[3] > 0:
                first = first_days.get(metric)
                if first is None or day < first:
                    first_days[metric] = day

        if tombstones:
            rows_changed.update(dict.fromkeys(tombstones))
        if rows_changed:
            self._set_events(conn, rows_changed, set(tombstones))

        if changed_keys:
            rows = []
            for key in sorted(changed_keys):
                part = current[key]
                if part is None:
                    rows.append({"key": key, "metric": None, "day": None, "numerator": 0.0, "denominator": 0.0,
                                 "count": 0.0})
                else:
                    assert isinstance(part, Contribution)
                    rows.append({"key": key, "metric": part.metric, "day": part.day, "numerator": part.numerator,
                                 "denominator": part.denominator, "count": part.count})
            if self.postgres:
                updates = [row for row in rows if row["key"] in stored]
                if updates:
                    conn.execute(_UPDATE_PARTS, {"rows": _json(updates)})
                if len(updates) < len(rows):
                    conn.execute(_INSERT_PARTS, {"rows": _json([row for row in rows if row["key"] not in stored])})
            else:
                stmt = self._insert(CurrentPart.__table__)
                conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={
                    "metric": stmt.excluded.metric, "day": stmt.excluded.day, "numerator": stmt.excluded.numerator,
                    "denominator": stmt.excluded.denominator, "count": stmt.excluded.count}), rows)

        day_rows = [{"metric": metric, "day": day, "numerator": n, "denominator": d, "count": c, "parts": k}
                    for (metric, day), (n, d, c, k) in sorted(deltas.items())]  # sorted: no lock cycles
        # None when the batch counted nothing (open cases, a withdrawal of nothing): an empty
        # executemany on SQLite would insert one row of defaults.
        if day_rows and self.postgres:
            conn.execute(_ADD_DAY_TOTALS, {"rows": _json(day_rows)})
        elif day_rows:
            stmt = self._insert(DayTotal.__table__)
            table = DayTotal.__table__
            conn.execute(stmt.on_conflict_do_update(index_elements=["metric", "day"], set_={
                "numerator": table.c.numerator + stmt.excluded.numerator,
                "denominator": table.c.denominator + stmt.excluded.denominator,
                "count": table.c.count + stmt.excluded.count,
                "parts": table.c.parts + stmt.excluded.parts}), day_rows)
        if values and self.postgres:
            conn.execute(_INSERT_VALUES, {"rows": _json(values)})
        elif values:
            conn.execute(MeasurementValue.__table__.insert(), values)
        if gone_values:
            self._remove_values(conn, gone_values)
        if first_days:
            stmt = self._insert(MetricFirstDay.__table__)
            conn.execute(stmt.on_conflict_do_update(index_elements=["metric"], set_={
                "first_day": self._least(MetricFirstDay.__table__.c.first_day, stmt.excluded.first_day)}),
                [{"metric": metric, "first_day": day} for metric, day in sorted(first_days.items())])
        # A day that lost a contribution (or gained and lost one in this batch) may hold none now.
        emptied = [slot for slot, totals in deltas.items() if totals[3] <= 0]
        if emptied:
            self._drop_empty_days(conn, sorted(shrunk), emptied)
        return outcome

    def _set_events(self, conn: Connection, records: dict[Identity, Record], new: set[Identity]) -> None:
        """Store what these events count now (withdrawn: nothing); `new` ones get a row."""
        table = ProcessedEvent.__table__
        inserts = [_event_dict(_event_row(identity, records[identity])) for identity in sorted(records)
                   if identity in new]
        updates = [_event_row(identity, records[identity]) for identity in sorted(records) if identity not in new]
        if inserts:
            # A tombstone another scorer wrote meanwhile is a duplicate key: the batch runs again.
            conn.execute(table.insert(), inserts)
        if updates and self.postgres:
            conn.execute(_UPDATE_EVENTS, {"rows": _json(updates)})
        elif updates:
            for row in map(_event_dict, updates):
                conn.execute(update(table).where(table.c.event_id == row["event_id"],
                                                 table.c.department.in_((row["department"], ""))).values(
                    {k: v for k, v in row.items() if k not in ("department", "event_id")}))

    def _remove_values(self, conn: Connection, gone: list[dict]) -> None:
        """Take withdrawn measurements out of the kept values, one row each."""
        table = MeasurementValue.__table__
        for row in gone:
            one = select(table.c.id).where(table.c.metric == row["metric"], table.c.day == row["day"],
                                           table.c.value == row["value"]).limit(1).scalar_subquery()
            conn.execute(delete(table).where(table.c.id == one))

    def _drop_empty_days(self, conn: Connection, metrics: list[str], slots: list[tuple[str, date]]) -> None:
        """Days whose last contribution was taken back are no longer data; a metric whose first
        day that was starts at its next day with data (its trend baselines move with it)."""
        table = DayTotal.__table__
        for metric, day in sorted(slots):
            conn.execute(delete(table).where(table.c.metric == metric, table.c.day == day, table.c.parts <= 0))
        firsts = MetricFirstDay.__table__
        for metric in metrics:
            first = conn.scalar(select(func.min(table.c.day)).where(table.c.metric == metric))
            if first is None:
                conn.execute(delete(firsts).where(firsts.c.metric == metric))
            else:
                conn.execute(update(firsts).where(firsts.c.metric == metric).values(first_day=first))

    # -- the read side ---------------------------------------------------------------------

    def first_days(self, conn: Connection) -> dict[str, date]:
        return {row.metric: row.first_day for row in conn.execute(select(MetricFirstDay.__table__))}

    def load_days(self, conn: Connection, metric_ids: Iterable[str], start: date, end: date,
                  first_days: dict[str, date]) -> dict[str, dict[date, DayTotals]]:
        """Daily totals of these metrics for local days start..end, plus trend metrics' past years."""
        metric_ids = list(metric_ids)
        table = DayTotal.__table__
        conditions = [and_(table.c.metric.in_(metric_ids), table.c.day.between(start, end))]
        for metric_id in metric_ids:
            metric = self.catalog.by_id[metric_id]
            first = first_days.get(metric_id)
            if not metric.kind.is_trend or first is None:
                continue
            years = 1
            while years_back(end, years) >= first:
                # a day either side covers 29 February moved to 28 February
                conditions.append(and_(table.c.metric == metric_id, table.c.day.between(
                    years_back(start, years) - timedelta(days=1), years_back(end, years) + timedelta(days=1))))
                years += 1
        days: dict[str, dict[date, DayTotals]] = {metric_id: {} for metric_id in metric_ids}
        for row in conn.execute(select(table).where(or_(*conditions))):
            days[row.metric][row.day] = DayTotals(row.numerator, row.denominator, row.count, [])
        medians = [m for m in metric_ids if self.catalog.by_id[m].kind is Kind.TARGET_OVER_MEDIAN]
        if medians:
            values = MeasurementValue.__table__
            for row in conn.execute(select(values.c.metric, values.c.day, values.c.value).where(
                    values.c.metric.in_(medians), values.c.day.between(start, end))):
                totals = days[row.metric].get(row.day)
                if totals is None:
                    totals = days[row.metric][row.day] = DayTotals()
                totals.values.append(row.value)
        return days

    def score_metrics(self, conn: Connection, metric_ids: Iterable[str], as_of: date,
                      first_days: dict[str, date] | None = None) -> dict[str, dict[str, WindowScore]]:
        metric_ids = list(metric_ids)
        first_days = self.first_days(conn) if first_days is None else first_days
        longest = max(self.catalog.windows.values())
        days = self.load_days(conn, metric_ids, as_of - timedelta(days=longest - 1), as_of, first_days)
        return {metric_id: score_metric(self.catalog.by_id[metric_id], days[metric_id], as_of, self.catalog.windows,
                                        first_days.get(metric_id))
                for metric_id in metric_ids}

    def _bound_reads(self, conn: Connection, timeout_s: float | None) -> None:
        """Cancel this read transaction's statements after `timeout_s` (PostgreSQL; SET LOCAL, so
        the pooled connection, which the scorer's folds may use next, keeps no timeout)."""
        if timeout_s is not None and self.postgres:
            milliseconds = max(1, round(timeout_s * 1000))  # 0 would mean no timeout at all
            conn.execute(text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(milliseconds)})

    def scoreboard(self, as_of: date, timeout_s: float | None = None) -> Scoreboard:
        """Every metric scored from the database as of `as_of`: the same numbers as offline scoring.

        Computed on request, so bounded: past `timeout_s` it raises ReadTimedOut.
        """
        from sqlalchemy.exc import OperationalError

        with self.engine.connect() as conn:
            try:
                self._bound_reads(conn, timeout_s)
                metrics = self.score_metrics(conn, [m.id for m in self.catalog.metrics], as_of)
            except OperationalError as exc:
                if timeout_s is not None and ReadTimedOut.cancelled(exc):
                    raise ReadTimedOut(timeout_s) from exc
                raise
        return Scoreboard(as_of, overall(metrics.values(), self.catalog.windows), metrics)

    def history(self, metric_id: str, window: str, days: int, end: date,
                timeout_s: float | None = None) -> list[tuple[date, WindowScore]]:
        """A metric's score in one window for each as-of date of the `days` ending on `end`.

        Computed on request, so bounded: past `timeout_s` (the queries, then the scoring of
        each day, which is where a long trend history spends its time) it raises ReadTimedOut.
        """
        from time import monotonic

        from sqlalchemy.exc import OperationalError

        deadline = None if timeout_s is None else monotonic() + timeout_s
        metric = self.catalog.by_id[metric_id]
        longest = max(self.catalog.windows.values())
        start = end - timedelta(days=days - 1)
        with self.engine.connect() as conn:
            try:
                self._bound_reads(conn, timeout_s)
                first_days = self.first_days(conn)
                loaded = self.load_days(conn, [metric_id], start - timedelta(days=longest - 1), end, first_days)
            except OperationalError as exc:
                if timeout_s is not None and ReadTimedOut.cancelled(exc):
                    raise ReadTimedOut(timeout_s) from exc
                raise
        series = []
        for as_of in window_dates(end, days):
            if deadline is not None and monotonic() > deadline:
                raise ReadTimedOut(timeout_s)
            scores = score_metric(metric, loaded[metric_id], as_of, self.catalog.windows, first_days.get(metric_id))
            series.append((as_of, scores[window]))
        return series

    # -- published scores -----------------------------------------------------------------

    def current(self, conn: Connection) -> dict[tuple[str, str], CurrentScore]:
        return {(row.metric, row.window): row for row in conn.execute(select(CurrentScore.__table__))}

    def rescore(self, conn: Connection, as_of: date, metric_ids: Iterable[str] | None = None) -> list[ScoreChange]:
        """Recompute the scores as of `as_of` (of these metrics, or all), store and queue the changes.

        Runs in the caller's transaction; the changes go to the outbox in the same
        transaction, so a crash never loses one or publishes one that was rolled back.
        """
        if self.postgres:
            # One rescore at a time across scorers: otherwise one that read the totals before
            # another's batch committed could write its older score over the newer one (or
            # both insert a metric's first score). Held until this transaction ends.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RESCORE_LOCK})
        stored = self.current(conn)
        all_ids = [m.id for m in self.catalog.metrics]
        if metric_ids is None or any(row.as_of != as_of for row in stored.values()) or len(stored) < len(all_ids):
            metric_ids = all_ids  # a new day (or a first run): every score moves
        metric_ids = [m for m in all_ids if m in set(metric_ids)]
        if not metric_ids:
            return []
        fresh = self.score_metrics(conn, metric_ids, as_of)
        changes: list[ScoreChange] = []
        now = utcnow()
        table = CurrentScore.__table__

        def store(metric: str, window: str, result: WindowScore) -> None:
            previous = stored.get((metric, window))
            if previous is not None and previous.as_of == as_of and (previous.score, previous.numerator,
                                                                     previous.denominator) == tuple(result):
                return
            changes.append(ScoreChange(metric, window, as_of, result.score, result.numerator, result.denominator,
                                       previous.score if previous is not None else None, now))
            values = {"as_of": as_of, "score": result.score, "numerator": result.numerator,
                      "denominator": result.denominator, "updated_at": now}
            if previous is None:
                conn.execute(table.insert().values(metric=metric, window=window, **values))
            else:
                conn.execute(update(table).where(table.c.metric == metric, table.c.window == window).values(**values))

        for metric_id, scores in fresh.items():
            for window, result in scores.items():
                store(metric_id, window, result)
                stored[(metric_id, window)] = _Row(metric_id, window, as_of, *result)
        # Every metric now has a score as of `as_of` (all were rescored on a new day).
        windows = self.catalog.windows
        city = overall(({w: WindowScore(stored[(m, w)].score, None, None) for w in windows} for m in all_ids), windows)
        for window, value in city.items():
            store(CITY, window, WindowScore(value, None, None))
        if changes:
            conn.execute(ScoreOutbox.__table__.insert(), [
                {"key": change.metric, "payload": orjson.dumps(change.payload()).decode()}
                for change in changes])
        return changes

    def pending_outbox(self, conn: Connection, limit: int = 5000) -> list[tuple[int, str, bytes]]:
        """Queued score changes, oldest first, each payload with its row id as `seq`.

        The id is the change's sequence: it is assigned inside the rescore transaction, and
        rescores run one at a time (an advisory lock on PostgreSQL, the single writer on
        SQLite), so ids increase in the order rescores commit, whichever scorer ran them and
        whatever its clock said. Ids are never reused (a sequence on PostgreSQL,
        AUTOINCREMENT on SQLite), so one stays larger than every id published before it.
        """
        table = ScoreOutbox.__table__
        rows = conn.execute(select(table.c.id, table.c.key, table.c.payload).order_by(table.c.id).limit(limit))
        return [(row.id, row.key, _sequenced(row.payload, row.id)) for row in rows]

    def clear_outbox(self, conn: Connection, ids: list[int]) -> None:
        table = ScoreOutbox.__table__
        for chunk in _chunks(ids):
            conn.execute(delete(table).where(table.c.id.in_(chunk)))

    def reset(self, conn: Connection) -> None:
        """Forget everything folded (for a replay); published scores stay to compare against."""
        for model in (ProcessedEvent, CurrentPart, DayTotal, MeasurementValue, MetricFirstDay):
            conn.execute(delete(model.__table__))

    def last_updated(self, conn: Connection) -> datetime | None:
        return conn.scalar(select(func.max(CurrentScore.__table__.c.updated_at)))


@dataclass
class _Row:
    """A stand-in for a stored current_scores row within one rescore."""

    metric: str
    window: str
    as_of: date
    score: float | None
    numerator: float | None
    denominator: float | None


class ReadTimedOut(Exception):
    """Scores computed on request took longer than their time bound (SCORER_READ_TIMEOUT)."""

    def __init__(self, timeout_s: float):
        super().__init__(f"scoring on request took longer than {timeout_s:g} s")
        self.timeout_s = timeout_s

    @staticmethod
    def cancelled(exc: Exception) -> bool:
        """PostgreSQL cancelled the statement (SQLSTATE 57014: its statement_timeout passed)."""
        return getattr(getattr(exc, "orig", None), "sqlstate", None) == "57014"
