"""`cityscore rebuild`'s fast path: the whole events topic folded in memory with the offline
command's core (`folding.Ledger`), then written to the database in one transaction.

The scorer's pipeline folds a batch at a time and asks the database, for every event, whether
it already has it: right for a live stream, slow for a rebuild, which starts from nothing and
reads every event once. Here the `Ledger` answers that in memory, and the state it ends with
is written in bulk: what each event counts (processed_events), each case's and tally's part
(current_parts), each day's totals and the number of contributions behind them (day_totals),
the kept measurements (measurement_values) and each metric's first day (metric_first_days).
These are the rows the pipeline writes for the same events in the same order
(tests/integration/test_rebuild.py compares the two paths, table by table).

The forgetting and the writing are ONE transaction, so until it commits the database keeps the
state it had. Messages the contract refuses go to the dead-letter topic as in the pipeline.
Anything the fast path cannot isolate (an event the fold cannot take, data the database
refuses) makes it give up before writing: `replay` then folds the topic with the pipeline,
which dead-letters exactly those events (and the contract's refusals a second time).
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from sqlalchemy import insert, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from shared.core.catalog import Catalog
from shared.core.contract import InvalidEvent, validate_event
from shared.core.folding import Ledger
from shared.platform.kafka import kafka_security, poll
from shared.store.bulk_sql import EVENT_COLUMNS, event_dict, event_row
from shared.store.score_writer import FOLDED_TABLES, ScoreWriter
from shared.store.score_reader import kept_case_row
from shared.store.tables.scorer import (CurrentPart, DayTotal, KeptCase, MeasurementValue, MetricFirstDay,
                                        ProcessedEvent)

from .consumer import FETCH_SIZES, POLL_RECORDS
from .settings import ScorerSettings
from .steps import DeadLetters, Record, refusal, refused_data

log = logging.getLogger("cityscore.scorer")

ROOT = Path(__file__).resolve().parents[2]  # where the reader process imports the project from


class CannotFoldInBulk(Exception):
    """The fast path met something only the pipeline isolates event by event."""


@dataclass
class LedgerFold:
    """The topic folded in memory, and where each partition ended."""

    ledger: Ledger
    messages: int
    folded: int
    duplicates: int
    dead_letters: int
    ends: dict[TopicPartition, int]


def fold_topic(settings: ScorerSettings, catalog: Catalog, dead_letters: DeadLetters) -> LedgerFold:
    """Every partition of the events topic from its start to where it ends now, validated and
    folded into a `Ledger` in the order read; refused messages to the dead letters.

    The topic is read by a process of its own (`read_topic`): kafka-python decodes records in
    Python, which took as long as validating and folding them, and the two now run side by
    side on two cores."""
    reader = subprocess.Popen([sys.executable, "-c", "from services.scorer.rebuild import reader_main; reader_main()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    try:
        assert reader.stdin is not None and reader.stdout is not None
        config = {"topic": settings.events_topic, "check_crcs": settings.scorer_check_crcs,
                  "consumer": {"bootstrap_servers": settings.kafka_bootstrap_servers, **kafka_security(settings)}}
        pickle.dump(config, reader.stdin)  # on a pipe, not the command line: it may hold a password
        reader.stdin.close()
        topic = settings.events_topic
        ledger = Ledger(catalog)
        fold = ledger.fold
        messages = folded = dead_count = 0
        # A pickler or unpickler kept across chunks would remember every object it ever
        # passed (its memo): each chunk gets fresh ones, so a chunk's records are freed once folded.
        stdout = reader.stdout
        ends = None
        while True:
            try:
                chunk = pickle.load(stdout)
            except EOFError:
                break
            if isinstance(chunk, dict):  # the last word: where each partition ended
                ends = {TopicPartition(topic, partition): end for partition, end in chunk.items()}
                break
            dead = []
            for partition, offset, key, value in chunk:
                messages += 1
                try:
                    event = validate_event(value, catalog)
                except InvalidEvent as exc:
                    dead.append((Record(topic, partition, offset, key, value), [p.as_dict() for p in exc.problems]))
                    continue
                try:
                    folded += fold(event)
                except OverflowError as exc:
                    # The ledger may have taken back what the event names before failing on
                    # its own contribution; the pipeline checks first and dead-letters it.
                    raise CannotFoldInBulk(f"an event cannot be folded: {exc}") from exc
            if dead:
                dead_letters.send(dead)
                dead_count += len(dead)
        if reader.wait(timeout=60) != 0 or ends is None:
            raise RuntimeError(f"the reader of {topic} stopped (exit status {reader.returncode}) before its end")
        return LedgerFold(ledger, messages, folded, messages - folded - dead_count, dead_count, ends)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()


def reader_main() -> None:
    """The reader process: its settings come pickled on stdin, the records go pickled to stdout."""
    config = pickle.load(sys.stdin.buffer)
    read_topic(config["consumer"], config["topic"], config["check_crcs"], sys.stdout.buffer)


def read_topic(consumer_config: dict, topic: str, check_crcs: bool, out, poll_records: int = POLL_RECORDS) -> None:
    """Write every record of the topic, from each partition's start to where it ends now, to `out`
    as pickled lists of (partition, offset, key, value); then a dict of each partition's end."""
    consumer = KafkaConsumer(**consumer_config, enable_auto_commit=False, client_id="cityscore-rebuild-reader",
                             check_crcs=check_crcs, **FETCH_SIZES)  # as the scorer reads (see its consumer)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        starts = consumer.beginning_offsets(partitions)
        ends = consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, starts[tp])

        def dump(chunk) -> None:
            pickle.dump(chunk, out, protocol=pickle.HIGHEST_PROTOCOL)
        reading = {tp for tp in partitions if starts[tp] < ends[tp]}
        while reading:
            for tp, records in poll(consumer, timeout_ms=1000, max_records=poll_records).items():
                end = ends[tp]
                # Past the end: written after the rebuild began, for the scorer to fold when it starts.
                dump([(r.partition, r.offset, r.key, r.value) for r in records if r.offset < end])
                if consumer.position(tp) >= end:
                    reading.discard(tp)
        dump({tp.partition: ends[tp] for tp in partitions})
        out.flush()
    finally:
        consumer.close(autocommit=False)


def load_ledger(conn: Connection, ledger: Ledger) -> None:
    """Write a ledger's state into emptied scorer tables, in the caller's transaction: the rows the
    pipeline's folds leave for the same events."""
    # processed_events: what each event counts now (a withdrawn one, or one named by a
    # withdrawal before it came, nothing).
    events = (event_row(identity, record) for identity, record in ledger.seen.items())
    parts = [(key, None, None, 0.0, 0.0, 0.0) if part is None else
             (key, part.metric, part.day, part.numerator, part.denominator, part.count)
             for key, part in ledger.current.items()]
    days, values = [], []
    for metric, by_day in ledger.days.items():
        for day, totals in by_day.items():
            days.append((metric, day, totals.numerator, totals.denominator, totals.count,
                         ledger.parts[(metric, day)]))
            values.extend((metric, day, value) for value in totals.values)
    firsts = sorted(ledger.first_day.items())
    case_columns = tuple(KeptCase.__table__.c.keys())
    cases = (tuple(kept_case_row(key, case, ledger.catalog).values()) for key, case in ledger.cases.items())
    loads = ((CurrentPart, ("key", "metric", "day", "numerator", "denominator", "count"), parts),
             (KeptCase, case_columns, cases),
             (DayTotal, ("metric", "day", "numerator", "denominator", "count", "parts"), days),
             (MeasurementValue, ("metric", "day", "value"), values),
             (MetricFirstDay, ("metric", "first_day"), firsts))
    if conn.dialect.name == "postgresql":
        indexed = [model.__table__.name for model in (ProcessedEvent, CurrentPart, KeptCase, MeasurementValue)]
        again = [statement for table in indexed for statement in _drop_indexes(conn, table)]
        _copy(conn, ProcessedEvent.__table__.name, EVENT_COLUMNS, events, pad=len(EVENT_COLUMNS))
        for table, columns, rows in loads:
            _copy(conn, table.__table__.name, columns, rows)
        # Sorted builds, with room to sort a million keys in memory (this transaction only).
        conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
        for statement in again:
            conn.exec_driver_sql(statement)
        return
    # An empty executemany on SQLite inserts a row of defaults: only tables with rows.
    rows = [event_dict(row) for row in events]
    if rows:
        conn.execute(insert(ProcessedEvent.__table__), rows)
    for table, columns, rows in loads:
        rows = list(rows)
        if rows:
            conn.execute(insert(table.__table__), [dict(zip(columns, row)) for row in rows])


def forget(conn: Connection, writer: ScoreWriter) -> None:
    """The writer's reset (every folded row goes; published scores stay), in the caller's transaction.

    On PostgreSQL by TRUNCATE: a DELETE leaves every row's index entry behind until vacuum, and
    the COPY that follows checks each new event id against the dead entry of the same id (a
    million heap visits); TRUNCATE starts the tables empty. It holds their lock until the
    transaction ends, so the read API's boards computed on request wait for the rebuild's
    write (seconds) instead of reading the old state meanwhile; the published board does not
    wait (current_scores is not emptied)."""
    if conn.dialect.name != "postgresql":
        writer.reset(conn)
        return
    conn.exec_driver_sql(f"TRUNCATE {', '.join(model.__table__.name for model in FOLDED_TABLES)}")
    writer.log_everything(conn)  # readers that kept day totals read them anew


def _drop_indexes(conn: Connection, table: str) -> list[str]:
    """Drop an emptied table's indexes (and the constraints they back: its primary key, any unique
    or exclusion constraint); return the statements that make them again.

    The rows then go in without an index entry each: a million processed_events, COPYed with
    their primary key, took 5.9 s; without it 1.7 s, and the key built after them 1.4 s (the
    cases' GiST index likewise). As they were, by their definitions in the catalog; in the
    rebuild's transaction, so a rebuild that fails leaves them as they were too."""
    again = []
    owner = {"table": table}
    where = "c.relname = :table AND n.nspname = current_schema()"
    constraints = conn.execute(text(
        "SELECT con.conname, pg_get_constraintdef(con.oid) FROM pg_constraint con "
        "JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE {where} AND con.contype IN ('p', 'u', 'x')"), owner).all()
    for name, definition in constraints:
        conn.exec_driver_sql(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
        again.append(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    indexes = conn.execute(text(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE {where}"), owner).all()
    for name, definition in indexes:
        conn.exec_driver_sql(f'DROP INDEX "{name}"')
        again.append(definition)
    return again


def _copy(conn: Connection, table: str, columns, rows, pad: int = 0) -> None:
    """COPY rows into a PostgreSQL table (psycopg adapts each value in C; INSERTs would plan and
    bind row by row)."""
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    driver = conn.connection.driver_connection
    try:
        with driver.cursor() as cursor:
            with cursor.copy(statement) as copy:
                write = copy.write_row
                if pad:
                    for row in rows:
                        write(row if len(row) == pad else row + (None,) * (pad - len(row)))
                else:
                    for row in rows:
                        write(row)
    except conn.dialect.loaded_dbapi.Error as exc:
        # As SQLAlchemy raises the driver's errors everywhere else (DataError, IntegrityError...).
        raise DBAPIError.instance(statement, None, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect) from exc


def rebuild_in_bulk(settings: ScorerSettings, writer: ScoreWriter, catalog: Catalog,
                    dead_letters: DeadLetters) -> LedgerFold:
    """Fold the topic in memory, then forget the folded state and write the ledger's in one
    transaction; the scorer group's offsets move to where the fold ended. Raises
    CannotFoldInBulk (having changed nothing) when the pipeline must do it instead."""
    result = fold_topic(settings, catalog, dead_letters)
    try:
        with writer.engine.begin() as conn:
            forget(conn, writer)
            load_ledger(conn, result.ledger)
    except DBAPIError as exc:
        if not refused_data(exc):
            raise
        raise CannotFoldInBulk(refusal(exc)) from exc
    commit_group(settings, result.ends)
    return result


def commit_group(settings: ScorerSettings, offsets: dict[TopicPartition, int]) -> None:
    """Commit the scorer group's offsets: the events before them are in the database."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=settings.scorer_group,
                             enable_auto_commit=False, **kafka_security(settings))
    try:
        if offsets:
            consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()})
    finally:
        consumer.close(autocommit=False)
