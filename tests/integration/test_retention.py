"""The events topic against retention, on the real broker and PostgreSQL.

The events topic is the city's record: it is created to keep every event, a rebuild
refuses to run from a topic that lost some (unless told to), and a scorer whose next
event was deleted before it was folded stops and says so instead of skipping ahead.
Events are "lost" here with the admin client's delete_records, which moves a partition's
log start exactly as retention does.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from datetime import date, datetime, timedelta

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from sqlalchemy import func, select

from services.ingest.app import create_app as create_ingest_app
from services.scorer.consumer import EventsLost, Scorer
from services.scorer.replay import PartialHistory, replay
from shared.core.catalog import load_catalog
from shared.store.tables.scorer import ProcessedEvent
from shared.platform.kafka import kafka_security
from services.ingest.settings import IngestSettings
from services.scorer.settings import ScorerSettings

from tests.helpers.score_parts import ScoreParts, score_parts
from tests.helpers.scorer import ROOT, Stream, clock_for

CATALOG = load_catalog()
END = date(2026, 6, 30)


@pytest.fixture
def admin(kafka_bootstrap):
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="test-retention", **kafka_security())
    yield client
    client.close()


def shootings(tag: str, count: int) -> list[dict]:
    return [{"event_id": f"retention-{tag}-{i}", "type": "incident", "metric": "shootings",
             "occurred_at": (datetime(2026, 6, 29, 22, 0) - timedelta(hours=i)).isoformat() + "-04:00"}
            for i in range(count)]


def send_to(stream: Stream, partition: int, events: list[dict]) -> None:
    """Write events to one partition of the stream's events topic and wait for the acks."""
    futures = [stream.producer.send(stream.events_topic, key=e["metric"].encode(), value=orjson.dumps(e),
                                    partition=partition) for e in events]
    stream.producer.flush(timeout=60)
    for future in futures:
        future.get(timeout=60)


def folded(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(ProcessedEvent))


def fold_all(stream: Stream, store: ScoreParts, settings: ScorerSettings | None = None) -> None:
    """One scorer reads the topic to its end, folds it and commits its offsets."""
    scorer = Scorer(settings or stream.settings(), store.writer, store.scores, CATALOG, clock=clock_for(END))
    try:
        scorer.run(until_idle=True)
    finally:
        scorer.close()


def topic_configs(admin, topic: str) -> dict[str, str]:
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": None, "retention.bytes": None})],
        config_filter="all")
    return {key: entry["value"] for key, entry in described["topic"][topic].items()}


def committed(stream: Stream, partition: int) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=stream.bootstrap, group_id=stream.group, enable_auto_commit=False,
                             **kafka_security())
    try:
        return consumer.committed(TopicPartition(stream.events_topic, partition))
    finally:
        consumer.close(autocommit=False)


def fresh_settings(kafka_bootstrap, database_url, kind=ScorerSettings, **overrides):
    tag = uuid.uuid4().hex[:10]
    return kind(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, DATABASE_URL=database_url,
                CITYSCORE_EVENTS_TOPIC=f"cityscore.events.r-{tag}",
                CITYSCORE_SCORES_TOPIC=f"cityscore.scores.r-{tag}",
                CITYSCORE_DLQ_TOPIC=f"cityscore.events.dlq.r-{tag}", SCORER_GROUP=f"scorer-r-{tag}", **overrides)


# -- the events topic keeps every event ------------------------------------------------------


def test_the_scorer_creates_the_events_topic_keeping_every_event(kafka_bootstrap, database_url, engine, admin):
    settings = fresh_settings(kafka_bootstrap, database_url)
    store = score_parts(engine, CATALOG)
    scorer = Scorer(settings, store.writer, store.scores, CATALOG)
    try:
        scorer.connect()
    finally:
        scorer.close()
    assert topic_configs(admin, settings.events_topic) == {"retention.ms": "-1", "retention.bytes": "-1"}


def test_ingest_creates_the_events_topic_keeping_every_event(kafka_bootstrap, database_url, engine, admin):
    settings = fresh_settings(kafka_bootstrap, database_url, IngestSettings)
    app = create_ingest_app(settings, engine=engine, catalog=CATALOG)
    assert app.extensions["cityscore"]["publisher"].ready()
    assert topic_configs(admin, settings.events_topic) == {"retention.ms": "-1", "retention.bytes": "-1"}


def test_the_events_topic_retention_is_a_setting(kafka_bootstrap, database_url, engine, admin):
    settings = fresh_settings(kafka_bootstrap, database_url, CITYSCORE_EVENTS_RETENTION_MS=str(400 * 86_400_000),
                              CITYSCORE_EVENTS_RETENTION_BYTES=str(2**40))
    store = score_parts(engine, CATALOG)
    scorer = Scorer(settings, store.writer, store.scores, CATALOG)
    try:
        scorer.connect()
    finally:
        scorer.close()
    assert topic_configs(admin, settings.events_topic) == {"retention.ms": str(400 * 86_400_000),
                                                           "retention.bytes": str(2**40)}


def test_an_existing_events_topic_keeps_its_retention_and_the_scorer_warns(kafka_bootstrap, database_url, engine,
                                                                           admin, caplog):
    settings = fresh_settings(kafka_bootstrap, database_url)
    admin.create_topics([NewTopic(settings.events_topic, 2, -1, topic_configs={"retention.ms": "604800000"})])
    store = score_parts(engine, CATALOG)
    scorer = Scorer(settings, store.writer, store.scores, CATALOG)
    with caplog.at_level(logging.WARNING):
        try:
            scorer.connect()
        finally:
            scorer.close()
    # Not changed behind the operator's back...
    assert topic_configs(admin, settings.events_topic)["retention.ms"] == "604800000"
    # ...but said, with the topic, the setting and the value.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(settings.events_topic in w and "retention.ms=604800000" in w and "-1" in w for w in warnings), warnings


# -- rebuild ----------------------------------------------------------------------------------


def test_rebuild_refuses_when_the_topic_lost_events_and_runs_when_told_to(stream, engine, admin):
    store = score_parts(engine, CATALOG)
    send_to(stream, 0, shootings("a", 20))
    send_to(stream, 1, shootings("b", 20))
    fold_all(stream, store)
    assert folded(engine) == 40
    admin.delete_records({TopicPartition(stream.events_topic, 1): 12})  # as retention would

    with pytest.raises(PartialHistory) as refused:
        replay(stream.settings(), store.writer, store.scores, CATALOG, clock=clock_for(END))

    reason = str(refused.value)
    assert f"partition 1 of {stream.events_topic}" in reason and "starts at offset 12" in reason, reason
    assert "--allow-partial-history" in reason
    assert folded(engine) == 40  # refused before anything was forgotten
    assert committed(stream, 1) == 20  # and before the offsets were moved

    report = replay(stream.settings(), store.writer, store.scores, CATALOG, clock=clock_for(END),
                    allow_partial_history=True)
    assert (report.messages, report.folded) == (28, 28)
    assert folded(engine) == 28


def test_rebuild_refuses_when_the_topic_holds_fewer_events_than_were_folded(stream, engine):
    store = score_parts(engine, CATALOG)
    send_to(stream, 0, shootings("a", 20))
    fold_all(stream, store)
    # The same database pointed at a topic that was deleted and made again: its log starts
    # at 0, yet it holds fewer events than the database folded.
    recreated = Stream(stream.bootstrap, stream.database_url, partitions=2)
    try:
        send_to(recreated, 0, shootings("new", 5))
        with pytest.raises(PartialHistory) as refused:
            replay(recreated.settings(), store.writer, store.scores, CATALOG, clock=clock_for(END))
    finally:
        recreated.close()
    assert "the database folded 20 events" in str(refused.value) and "holds 5" in str(refused.value)
    assert folded(engine) == 20


def run_rebuild(stream: Stream, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **stream.env(), "CITYSCORE_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "services.cli", "rebuild", "--yes", *flags], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_rebuild_command_says_why_it_refuses(stream, engine, admin):
    store = score_parts(engine, CATALOG)
    send_to(stream, 1, shootings("b", 10))
    fold_all(stream, store)
    admin.delete_records({TopicPartition(stream.events_topic, 1): 4})

    refused = run_rebuild(stream)
    assert refused.returncode != 0
    assert f"partition 1 of {stream.events_topic} starts at offset 4" in refused.stderr, refused.stderr
    assert folded(engine) == 10

    allowed = run_rebuild(stream, "--allow-partial-history")
    assert allowed.returncode == 0, allowed.stderr
    assert "replayed 6 messages" in allowed.stdout
    assert folded(engine) == 6


# -- a scorer that fell behind the log start ------------------------------------------------------


def run_until_events_lost(settings: ScorerSettings, store: ScoreParts, caplog) -> tuple[EventsLost, list[str]]:
    """Run a scorer, which must stop with EventsLost; the error and the errors it logged."""
    scorer = Scorer(settings, store.writer, store.scores, CATALOG, clock=clock_for(END))
    with caplog.at_level(logging.ERROR, logger="cityscore.scorer"):
        try:
            with pytest.raises(EventsLost) as stopped:
                scorer.run(until_idle=True)
        finally:
            scorer.close()
    return stopped.value, [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]


def test_a_scorer_whose_next_event_was_deleted_stops_and_says_so(stream, engine, admin, caplog):
    store = score_parts(engine, CATALOG)
    send_to(stream, 0, shootings("a", 20))
    send_to(stream, 1, shootings("b", 20))
    fold_all(stream, store)
    assert committed(stream, 1) == 20
    # The scorers are away for longer than the retention: partition 1 gets 20 more events
    # and the first 30 of its 40 are deleted, 10 of them never folded.
    send_to(stream, 1, shootings("c", 20))
    admin.delete_records({TopicPartition(stream.events_topic, 1): 30})

    stopped, errors = run_until_events_lost(stream.settings(), store, caplog)
    said = f"partition 1 of {stream.events_topic}: the scorers' next event is at offset 20 but the log starts at 30"
    assert any(said in e for e in errors), errors
    assert said in str(stopped)
    assert committed(stream, 1) == 20  # nothing committed past the gap: a restart stops again
    assert folded(engine) == 40


def test_a_new_scorer_group_starts_at_the_beginning_unless_events_are_gone(stream, engine, admin, caplog):
    store = score_parts(engine, CATALOG)
    send_to(stream, 0, shootings("a", 15))
    fold_all(stream, store)  # a group without committed offsets starts at the topic's beginning
    assert folded(engine) == 15 and committed(stream, 0) == 15

    send_to(stream, 1, shootings("b", 10))
    admin.delete_records({TopicPartition(stream.events_topic, 1): 3})
    stopped, errors = run_until_events_lost(stream.settings(SCORER_GROUP=stream.group + "-new"), store, caplog)
    said = (f"partition 1 of {stream.events_topic}: the scorers have no committed offset and the log starts at 3")
    assert said in str(stopped)
    assert any(said in e for e in errors), errors


def test_the_scorer_command_exits_with_the_reason(stream, engine, admin):
    send_to(stream, 1, shootings("b", 10))
    fold_all(stream, score_parts(engine, CATALOG))
    send_to(stream, 1, shootings("c", 10))
    admin.delete_records({TopicPartition(stream.events_topic, 1): 15})
    env = {**os.environ, **stream.env(), "CITYSCORE_LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, "-m", "services.cli", "scorer", "run", "--http-port", "0"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "the scorers' next event is at offset 10 but the log starts at 15" in done.stderr, done.stderr[-2000:]
    assert "cityscore rebuild --allow-partial-history" in done.stderr  # and what to do about it
    assert committed(stream, 1) == 10
