"""The scorer's write side: folding batches of events into daily totals in SQL.

The same `Folder` and rules as the offline command; this module only moves their state
in and out of the database. Every write is idempotent: an event id is claimed once (a
unique key), so a batch delivered twice changes nothing the second time, and replaceable
parts (cases, tallies) are swapped under a row lock. How each database takes the rows in
bulk is `bulk_sql`'s business.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple, Sequence

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from shared.core.catalog import Catalog
from shared.core.cases import Case
from shared.core.contract import CaseEvent, Event
from shared.core.folding import (Contribution, Folder, Identity, Record, department_of, event_class, replace_key,
                                 taken_back)
from shared.store.bulk_sql import bulk_sql_for, event_dict, event_row
from shared.store.score_reader import kept_case_row
from shared.store.tables.scorer import (EVERYTHING, CurrentPart, DayChange, DayTotal, KeptCase, MeasurementValue,
                                        MetricFirstDay, ProcessedEvent)


@dataclass
class FoldOutcome:
    folded: int = 0
    duplicates: int = 0
    withdrawn: int = 0  # earlier events taken back (withdrawn or corrected)
    touched: dict[str, set[date]] = field(default_factory=lambda: defaultdict(set))


class Folding(NamedTuple):
    """What the database fold needs of one event.

    The scorer works this out as soon as an event is validated, so a batch waiting for the
    database holds these few objects instead of the validated event (about 280 bytes an event
    instead of 1,240 by tracemalloc over 20,000 generated events, before the identity became a
    pair), which lets it fold batches twice as large. A case event also carries the case kept
    for the case lists (about 320 bytes more a case: 353 bytes an event over the same 20,000,
    of which 3,720 are cases). A NamedTuple: a tuple to build and unpack in the fold's hot loop,
    with names for everyone else.
    """

    identity: Identity  # (department, event_id)
    part_key: str | None  # the key of the case or tally it replaces; None when it only adds
    contribution: Contribution | None  # None for an open case or a withdrawal
    takes_back: Identity | None  # the earlier event it withdraws or corrects
    case: Case | None = None  # a case event's case, kept for the case lists (KeptCase)


def _record_of(row) -> Record:
    """What a processed_events row says its event counts."""
    if row.part_key is not None:
        return row.part_key
    if row.metric is None:
        return None
    return Contribution(row.metric, row.day, row.numerator, row.denominator, row.count, row.value)


# The tables a fold writes: what a rebuild forgets and writes anew (published scores stay).
FOLDED_TABLES = (ProcessedEvent, CurrentPart, KeptCase, DayTotal, MeasurementValue, MetricFirstDay)

# How many fold versions the change log keeps, purged every PURGE_EVERY versions. At one fold a
# second, a reader that read nothing for about three hours finds its versions purged and reads
# everything again (the cost of a cold start, once). The log holds these versions times the days
# each fold touched: a live fold touches today's day of each metric it counts (tens of rows), so
# some 10^5 rows at most; a rebuild leaves one.
CHANGES_KEPT = 10_000
PURGE_EVERY = 100


class ScoreWriter:
    """Folds validated events into day totals, parts and kept values, in the caller's transaction."""

    def __init__(self, engine: Engine, catalog: Catalog):
        self.engine = engine
        self.catalog = catalog
        self.folder = Folder(catalog)
        self.sql = bulk_sql_for(engine)

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
        return self.sql.claim(conn, identities, records)

    def _earlier_events(self, conn: Connection, identities: list[Identity]) -> dict[Identity, Record]:
        """What these earlier events count (locked until the transaction ends); those never seen
        are missing. A row from before identities were per department answers for its id."""
        by_identity = {(row.department, row.event_id): row for row in self.sql.event_rows(conn, identities)}
        found: dict[Identity, Record] = {}
        for identity in identities:
            # The department's own row, else an older department-less one for the same id.
            row = by_identity.get(identity) or by_identity.get(("", identity[1]))
            if row is not None:
                found[identity] = _record_of(row)
        return found

    def _current_parts(self, conn: Connection, keys: list[str]) -> dict[str, object]:
        found: dict[str, object] = {}
        for row in self.sql.part_rows(conn, keys):
            found[row.key] = (None if row.metric is None else
                              Contribution(row.metric, row.day, row.numerator, row.denominator, row.count))
        return found

    def prepare(self, event: Event) -> Folding:
        """What folding this event needs: its identity, the key it replaces (or None), its
        contribution (or None) and the earlier event it takes back (or None)."""
        department = department_of(event, self.catalog)
        target = taken_back(event)
        takes_back = None if target is None else (department, target)
        if event_class(event) is CaseEvent:
            case, part = self.folder.case(event, department)
            return Folding((department, event.event_id), replace_key(event, department), part, takes_back, case)
        return Folding((department, event.event_id), replace_key(event, department), self.folder.contribution(event),
                       takes_back)

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
        # Indexed and unpacked as plain tuples below: this is the scorer's hottest Python.
        for item in batch:
            if item[0] in unique:
                outcome.duplicates += 1
            else:
                unique[item[0]] = item
        # Claimed with what each counts on its own; the few that a take-back in this same
        # batch changes are updated below.
        seen = self.claim(conn, {identity: (key if key is not None else part)
                                 for identity, key, part, _, _ in unique.values()})
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
        keys = {key for _, key, _, _, _ in fresh if key is not None}
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
        kept: dict[str, Case | None] = {}  # cases to keep (their latest version) or forget (None)

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
                if record.startswith("case:"):
                    kept[record] = None  # a withdrawn case leaves the lists, open or closed
            else:
                take_back(record)
                if record.value is not None:
                    gone_values.append({"metric": record.metric, "day": record.day, "value": record.value})
            records[target] = None
            rows_changed[target] = None
            outcome.withdrawn += 1

        for identity, key, part, target, case in fresh:
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
                if case is not None:
                    kept[key] = case
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
            self.sql.write_parts(conn, rows, stored)

        if kept:
            keep = [kept_case_row(key, case, self.catalog) for key, case in sorted(kept.items()) if case is not None]
            forget = sorted(key for key, case in kept.items() if case is None)
            self.sql.write_cases(conn, keep, forget)

        day_rows = [{"metric": metric, "day": day, "numerator": n, "denominator": d, "count": c, "parts": k}
                    for (metric, day), (n, d, c, k) in sorted(deltas.items())]  # sorted: no lock cycles
        # None when the batch counted nothing (open cases, a withdrawal of nothing): an empty
        # executemany on SQLite would insert one row of defaults.
        if day_rows:
            self.sql.add_day_totals(conn, day_rows)
        if values:
            self.sql.insert_values(conn, values)
        if gone_values:
            self._remove_values(conn, gone_values)
        if first_days:
            self.sql.lower_first_days(conn, first_days)
        # A day that lost a contribution (or gained and lost one in this batch) may hold none now.
        emptied = [slot for slot, totals in deltas.items() if totals[3] <= 0]
        if emptied:
            self._drop_empty_days(conn, sorted(shrunk), emptied)
        if deltas:
            self.log_changes(conn, sorted(deltas))
        return outcome

    def log_changes(self, conn: Connection, days: list[tuple[str, date]]) -> int:
        """List these (metric, day)s in the change log under the next fold version; return it.

        Last in the fold, so that the log's lock (PostgreSQL) is held from here to the commit
        (through the rescore that may follow in the same transaction), not through the fold:
        versions then follow the order in which folds commit, and a reader that has seen
        version N has seen every fold up to N.
        """
        version = self._next_version(conn)
        table = DayChange.__table__
        conn.execute(insert(table), [{"version": version, "metric": metric, "day": day} for metric, day in days])
        if version % PURGE_EVERY == 0:
            conn.execute(delete(table).where(table.c.version <= version - CHANGES_KEPT))
        return version

    def log_everything(self, conn: Connection) -> None:
        """Empty the change log but for one row under the next version: everything changed."""
        version = self._next_version(conn)
        table = DayChange.__table__
        conn.execute(delete(table))
        conn.execute(insert(table), [{"version": version, "metric": EVERYTHING[0], "day": EVERYTHING[1]}])

    def _next_version(self, conn: Connection) -> int:
        """The change log's next version, its lock held (PostgreSQL) until this transaction ends."""
        self.sql.order_changes(conn)
        return (conn.scalar(select(func.max(DayChange.__table__.c.version))) or 0) + 1

    def _set_events(self, conn: Connection, records: dict[Identity, Record], new: set[Identity]) -> None:
        """Store what these events count now (withdrawn: nothing); `new` ones get a row."""
        inserts = [event_dict(event_row(identity, records[identity])) for identity in sorted(records)
                   if identity in new]
        updates = [event_row(identity, records[identity]) for identity in sorted(records) if identity not in new]
        if inserts:
            # A tombstone another scorer wrote meanwhile is a duplicate key: the batch runs again.
            conn.execute(ProcessedEvent.__table__.insert(), inserts)
        if updates:
            self.sql.update_events(conn, updates)

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

    def reset(self, conn: Connection) -> None:
        """Forget everything folded (for a replay); published scores stay to compare against."""
        for model in FOLDED_TABLES:
            conn.execute(delete(model.__table__))
        self.log_everything(conn)
