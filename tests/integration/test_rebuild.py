"""`cityscore rebuild`'s fast path (the topic folded in memory, written in bulk) leaves the same
database as the scorer's pipeline: table by table, and the same scores.

One partition, so that both paths fold the events in the same order (across partitions the
order is whatever the consumer fetched first, for either path). Sums of fractions may differ
in their last bits (the pipeline adds a batch's sum to a day's total, the ledger one event at
a time), so floats are compared to 1e-9 of their size; everything else exactly.
"""

from __future__ import annotations

import math
import random
from datetime import date

import orjson
import pytest
from sqlalchemy import text

from services.scorer.replay import replay
from shared.core.catalog import load_catalog
from shared.dev.generator import generate

from tests.helpers.ingest import fresh_database
from tests.helpers.score_parts import score_parts
from tests.helpers.scorer import Stream, clock_for

CATALOG = load_catalog()
END = date(2026, 6, 30)

TABLES = {
    "processed_events": "SELECT department, event_id, part_key, metric, day, numerator, denominator, count, value "
                        "FROM processed_events",
    "current_parts": "SELECT key, metric, day, numerator, denominator, count FROM current_parts",
    "cases": "SELECT key, department, case_id, metric, opened_at, due_at, closed_at, attributes, groups FROM cases",
    "day_totals": "SELECT metric, day, numerator, denominator, count, parts FROM day_totals",
    "measurement_values": "SELECT metric, day, value FROM measurement_values",
    "metric_first_days": "SELECT metric, first_day FROM metric_first_days",
    "current_scores": "SELECT metric, \"window\", as_of, score, numerator, denominator FROM current_scores",
}


def snapshot(engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {name: sorted((tuple(row) for row in conn.execute(text(sql))), key=_order)
                for name, sql in TABLES.items()}


def _order(row: tuple) -> tuple:
    return tuple((value is None, "" if value is None else str(value)) for value in row)


def same_rows(a: list[tuple], b: list[tuple]) -> list[str]:
    differences = []
    if len(a) != len(b):
        return [f"{len(a)} rows != {len(b)} rows"]
    for left, right in zip(a, b):
        for x, y in zip(left, right):
            if isinstance(x, float) and isinstance(y, float):
                if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9):
                    differences.append(f"{left} != {right}")
            elif x != y:
                differences.append(f"{left} != {right}")
    return differences[:10]


@pytest.fixture
def setup(kafka_bootstrap, database_url):
    engine = fresh_database(database_url)
    stream = Stream(kafka_bootstrap, database_url, partitions=1)
    yield stream, score_parts(engine, CATALOG), engine
    stream.close()
    engine.dispose()


def history(rng: random.Random) -> tuple[list[dict], list[tuple[bytes | None, bytes]]]:
    """Generated events with what a city's stream also holds: events sent again, corrections,
    withdrawals (of events folded before, of one still to come, of one in the same run), and
    messages the contract refuses."""
    events = list(generate(CATALOG, 40, 11, END))[-30000:]
    closed = [e for e in events if e["type"] == "case" and e.get("closed_at")]
    incidents = [e for e in events if e["type"] == "incident"]
    measurements = [e for e in events if e["type"] == "measurement"]
    corrections = [{**case, "event_id": case["event_id"] + "-fix", "replaces": case["event_id"],
                    "closed_at": None} for case in rng.sample(closed, 50)]
    # cases withdrawn too: they leave the kept cases (the lists and the backlog)
    withdrawn = rng.sample(incidents, 40) + rng.sample(measurements, 10) + rng.sample(closed, 5)
    withdrawals = [{"event_id": f"w-{e['event_id']}", "type": "withdrawal", "metric": e["metric"],
                    "withdraws": e["event_id"]} for e in withdrawn]
    early = incidents[-1]  # withdrawn before it comes: it will count nothing
    withdrawals.append({"event_id": "w-early", "type": "withdrawal", "metric": early["metric"],
                        "withdraws": early["event_id"]})
    stream = events[:-1] + corrections + withdrawals + rng.sample(events, 300) + [early]
    rng.shuffle(stream)
    stream.remove(early)
    stream.append(early)
    stream.insert(0, next(w for w in withdrawals if w["event_id"] == "w-early"))
    refused = [(b"shootings", b"{not json"), (b"potholes", orjson.dumps({"event_id": "x", "type": "incident"}))]
    return stream, refused


def indexes(engine) -> list[tuple[str, str, str]]:
    """Every index of the database's tables, with its definition (primary keys' included)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        return sorted(conn.execute(text("SELECT tablename, indexname, indexdef FROM pg_indexes "
                                        "WHERE schemaname = current_schema()")).all())


def test_a_rebuild_in_bulk_leaves_the_same_database_and_scores_as_the_pipeline(setup):
    stream, store, engine = setup
    events, refused = history(random.Random(5))
    stream.send(events[:20000], raw=refused)
    stream.send(events[20000:])
    settings = stream.settings()
    clock = clock_for(END)

    through_pipeline = replay(settings, store.writer, store.scores, CATALOG, clock=clock, in_bulk=False)
    expected = snapshot(engine)
    indexes_before = indexes(engine)
    in_bulk = replay(settings, store.writer, store.scores, CATALOG, clock=clock, in_bulk=True)
    found = snapshot(engine)
    # The bulk load drops the tables' keys and indexes and makes them again after the rows.
    assert indexes(engine) == indexes_before
    assert {"pk_processed_events", "pk_cases", "ix_cases_open_span"} <= {name for _, name, _ in indexes_before}

    assert expected["processed_events"] and expected["day_totals"] and expected["measurement_values"]
    assert expected["cases"]
    for name in TABLES:
        assert same_rows(expected[name], found[name]) == [], name
    assert (in_bulk.messages, in_bulk.folded, in_bulk.duplicates, in_bulk.dead_letters) == (
        through_pipeline.messages, through_pipeline.folded, through_pipeline.duplicates,
        through_pipeline.dead_letters)
    assert in_bulk.dead_letters == len(refused)
    assert in_bulk.changes == 0  # the same scores: nothing to publish
    # the group resumes after the events folded: a scorer started now folds nothing again
    from kafka import KafkaConsumer, TopicPartition

    from shared.platform.kafka import kafka_security

    probe = KafkaConsumer(bootstrap_servers=stream.bootstrap, group_id=stream.group, enable_auto_commit=False,
                          **kafka_security())
    try:
        assert probe.committed(TopicPartition(stream.events_topic, 0)) == len(events) + len(refused)
    finally:
        probe.close()


def test_a_rebuild_in_bulk_the_database_refuses_is_done_by_the_pipeline_which_isolates_the_event(setup, caplog):
    stream, store, engine = setup
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE processed_events ADD CONSTRAINT cityscore_test_refuse_check "
                          "CHECK (NOT starts_with(event_id, 'refused-check-'))"))
    good = [{"event_id": f"g{i}", "type": "incident", "metric": "shootings",
             "occurred_at": "2026-06-29T22:00:00-04:00"} for i in range(50)]
    stream.send(good[:25] + [{**good[0], "event_id": "refused-check-1"}] + good[25:])

    report = replay(stream.settings(), store.writer, store.scores, CATALOG, clock=clock_for(END))

    assert (report.folded, report.dead_letters) == (50, 1)
    assert any("rebuilding through the scorer's pipeline instead" in m for m in caplog.messages)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count FROM day_totals WHERE metric = 'shootings'")) == 50
