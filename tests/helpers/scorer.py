"""Helpers for scorer tests: a stream on a topic of its own, scorers in threads or processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from datetime import date, datetime, time as clock_time, timedelta, timezone
from pathlib import Path

import orjson

from shared.platform.kafka import ensure_topics, make_producer
from services.scorer.settings import ScorerSettings

from tests.fakes.clock import ManualClock

ROOT = Path(__file__).resolve().parents[2]


class Stream:
    """A unique set of topics and a consumer group for one test."""

    def __init__(self, bootstrap: str, database_url: str, partitions: int = 6):
        tag = uuid.uuid4().hex[:10]
        self.bootstrap = bootstrap
        self.database_url = database_url
        self.events_topic = f"cityscore.events.t-{tag}"
        self.scores_topic = f"cityscore.scores.t-{tag}"
        self.dlq_topic = f"cityscore.events.dlq.t-{tag}"
        self.group = f"scorer-t-{tag}"
        ensure_topics(bootstrap, {self.events_topic: partitions, self.scores_topic: partitions, self.dlq_topic: 1})
        self.producer = make_producer(bootstrap, 30, client_id="test-departments")

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "DATABASE_URL": self.database_url,
                "CITYSCORE_EVENTS_TOPIC": self.events_topic, "CITYSCORE_SCORES_TOPIC": self.scores_topic,
                "CITYSCORE_DLQ_TOPIC": self.dlq_topic, "SCORER_GROUP": self.group,
                "SCORER_BATCH_MAX": "2000", "SCORER_BATCH_WAIT": "0.2"}

    def settings(self, **overrides) -> ScorerSettings:
        return ScorerSettings(**{**self.env(), **overrides})

    def send(self, events: list[dict], raw: list[tuple[bytes, bytes]] = ()) -> None:
        """Write events (keyed by metric, as ingest does) and raw messages; wait for every ack."""
        futures = [self.producer.send(self.events_topic, key=e["metric"].encode(), value=orjson.dumps(e))
                   for e in events]
        futures += [self.producer.send(self.events_topic, key=k, value=v) for k, v in raw]
        self.producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)

    def close(self) -> None:
        self.producer.close(timeout=10)


def clock_for(as_of: date) -> ManualClock:
    """A clock at noon UTC on the day after `as_of` (morning in Boston): `as_of` is 'yesterday'."""
    return ManualClock(datetime.combine(as_of + timedelta(days=1), clock_time(12), tzinfo=timezone.utc))


def run_in_thread(scorer) -> threading.Thread:
    thread = threading.Thread(target=scorer.run, daemon=True)
    thread.start()
    return thread


def scorer_process(stream: Stream, extra_env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """`cityscore scorer run` as a real process (the API is checked with explicit as_of dates).

    Its log goes to `log` when given; otherwise to a pipe nobody reads, so only for runs
    that log little (a broker outage fills a pipe's 64 KB and the scorer would block on it).
    """
    env = {**os.environ, **stream.env(), "CITYSCORE_LOG_LEVEL": "WARNING", **(extra_env or {})}
    args = [sys.executable, "-m", "services.cli", "scorer", "run", "--http-port", "0"]
    if log is None:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with log.open("ab") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out)


def run_scorer_until_idle(stream: Stream, engine, catalog, as_of: date) -> None:
    """A scorer with `catalog` folds what the stream's topic holds and publishes its scores as of `as_of`."""
    from services.scorer.consumer import Scorer
    from tests.helpers.score_parts import score_parts

    store = score_parts(engine, catalog)
    scorer = Scorer(stream.settings(), store.writer, store.scores, catalog, clock=clock_for(as_of))
    try:
        scorer.run(until_idle=True)
    finally:
        scorer.close()


def published_changes(stream: Stream) -> list[dict]:
    """Every score change on the stream's scores topic, in the order the scorers committed them (seq)."""
    from kafka import KafkaConsumer, TopicPartition

    from shared.platform.kafka import kafka_security

    consumer = KafkaConsumer(bootstrap_servers=stream.bootstrap, **kafka_security(), enable_auto_commit=False,
                             consumer_timeout_ms=2000)
    try:
        partitions = consumer.partitions_for_topic(stream.scores_topic) or set()
        assigned = [TopicPartition(stream.scores_topic, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        changes = [orjson.loads(message.value) for message in consumer]
    finally:
        consumer.close()
    return sorted(changes, key=lambda change: change["seq"])


def latest_change(changes: list[dict], metric: str, window: str) -> dict:
    """The newest of `changes` for one metric's window."""
    return [c for c in changes if (c["metric"], c["window"]) == (metric, window)][-1]
