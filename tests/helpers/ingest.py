"""Helpers for ingest tests: a fresh schema on the real database, keys, and reading a topic back."""

from __future__ import annotations

import time
import uuid

import orjson
from kafka import KafkaConsumer, TopicPartition

from shared.store.engine import make_engine, migrate, session_factory
from shared.platform.kafka import kafka_security


def empty_database(url: str):
    """An engine on `url` with every table dropped (whatever migration made it): a database never migrated."""
    from sqlalchemy import MetaData

    engine = make_engine(url)
    with engine.begin() as connection:
        existing = MetaData()
        existing.reflect(connection)
        existing.drop_all(connection)
    return engine


def fresh_database(url: str):
    """An engine on `url` with every table dropped and migrated anew."""
    engine = empty_database(url)
    migrate(engine)
    return engine


def issue_keys(engine, catalog, departments):
    """Register departments and issue one key each; returns {department: key}."""
    from services.ingest.keys import issue_department_keys

    with session_factory(engine)() as session:
        keys = issue_department_keys(session, catalog, list(departments), label="test")
        session.commit()
    return keys


def unique_topic(prefix: str = "cityscore.events.test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def read_topic(bootstrap: str, topic: str, idle_s: float = 2.0, timeout_s: float = 60.0) -> list[tuple[bytes, dict, int]]:
    """Every record on `topic` from the beginning: (key, decoded value, partition)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **kafka_security(), enable_auto_commit=False,
                             group_id=None,
                             consumer_timeout_ms=int(idle_s * 1000))
    try:
        deadline = time.monotonic() + timeout_s
        partitions = None
        while partitions is None and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                time.sleep(0.2)
        if not partitions:
            return []
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        end = consumer.end_offsets(assigned)
        records = []
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            for tp, messages in batch.items():
                records.extend((m.key, orjson.loads(m.value), tp.partition) for m in messages)
            if all(consumer.position(tp) >= end[tp] for tp in assigned):
                break
        return records
    finally:
        consumer.close()


def case_event(event_id: str, metric: str = "pothole-on-time", **extra) -> dict:
    return {"event_id": event_id, "type": "case", "metric": metric, "case_id": f"c-{event_id}",
            "opened_at": "2026-07-20T09:00:00-04:00", "closed_at": "2026-07-20T15:00:00-04:00", **extra}


def incident_event(event_id: str, metric: str = "shootings", **extra) -> dict:
    return {"event_id": event_id, "type": "incident", "metric": metric,
            "occurred_at": "2026-07-22T23:40:00-04:00", **extra}
