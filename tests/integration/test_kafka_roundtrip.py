"""Round trip on a real Kafka broker: keyed acks=all writes, a consumer group that
commits offsets by hand, and a second member of the group resuming after them."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.serializer import DefaultSerializer  # str <-> UTF-8; plain callables are deprecated in 3.x

from shared.platform.kafka import kafka_security

pytestmark = pytest.mark.kafka

PARTITIONS = 3
KEYS = [f"case-{n:02d}" for n in range(12)]
ROUNDS = 4


def _consumer(bootstrap: str, topic: str, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap, **kafka_security(),
        group_id=group,
        client_id=f"{group}-member",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        key_deserializer=DefaultSerializer(),
        value_deserializer=DefaultSerializer(),
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
    )


def _poll_until(consumer: KafkaConsumer, want: int, deadline_s: float = 60.0) -> list:
    """Poll until ``want`` records arrived (or the deadline); returns them in poll order."""
    records = []
    deadline = time.monotonic() + deadline_s
    while len(records) < want and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    return records


def _wait_for_assignment(consumer: KafkaConsumer, deadline_s: float = 60.0) -> list:
    """Poll (joining the group) until partitions are assigned; returns any records seen."""
    seen = []
    deadline = time.monotonic() + deadline_s
    while not consumer.assignment() and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            seen.extend(batch)
    assert consumer.assignment(), "the consumer was never assigned partitions"
    return seen


@pytest.fixture
def topic(kafka_bootstrap):
    name = f"it-roundtrip-{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, **kafka_security())
    try:
        admin.create_topics(
            {name: {"num_partitions": PARTITIONS, "replication_factor": 1}},
            wait_for_metadata=True,
        )
        described = admin.describe_topics([name])
        assert len(described[0]["partitions"]) == PARTITIONS
        yield name
        admin.delete_topics([name])
    finally:
        admin.close()


def test_keyed_roundtrip_with_committed_offsets(kafka_bootstrap, topic):
    group = f"it-group-{uuid.uuid4().hex[:12]}"

    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, **kafka_security(),
        acks="all",
        key_serializer=DefaultSerializer(),
        value_serializer=DefaultSerializer(),
    )
    sent = []  # (key, value, partition, offset) in send order
    try:
        for round_no in range(ROUNDS):
            for key in KEYS:
                value = f"{key}#{round_no}"
                meta = producer.send(topic, key=key, value=value).get(timeout=30)
                sent.append((key, value, meta.partition, meta.offset))
        producer.flush(timeout=30)

        # The default partitioner hashes the key: one key, one partition.
        partition_of = {}
        for key, _, partition, _ in sent:
            assert partition_of.setdefault(key, partition) == partition, key
        assert len(set(partition_of.values())) > 1, "keys should spread over partitions"

        first = _consumer(kafka_bootstrap, topic, group)
        try:
            records = _poll_until(first, len(sent))
            assert len(records) == len(sent), f"got {len(records)} of {len(sent)} records"

            by_key = defaultdict(list)
            for record in records:
                assert record.partition == partition_of[record.key]
                by_key[record.key].append(record.value)
            # Per key, records come back in the order they were produced.
            for key in KEYS:
                assert by_key[key] == [f"{key}#{n}" for n in range(ROUNDS)], key
            # And per partition, offsets strictly increase.
            offsets = defaultdict(list)
            for record in records:
                offsets[record.partition].append(record.offset)
            for partition, seen in offsets.items():
                assert seen == sorted(seen) and len(set(seen)) == len(seen), partition

            first.commit()
            ends = first.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
            for tp, end in ends.items():
                committed = first.committed(tp)
                assert committed == end, f"{tp}: committed {committed}, end {end}"
        finally:
            first.close()

        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, **kafka_security())
        try:
            # kafka-python 3.x returns {group_id: {TopicPartition: OffsetAndMetadata}}.
            group_offsets = admin.list_group_offsets({group: None})[group]
        finally:
            admin.close()
        assert {tp: om.offset for tp, om in group_offsets.items()} == ends

        second = _consumer(kafka_bootstrap, topic, group)
        try:
            stale = _wait_for_assignment(second)
            stale += _poll_until(second, 1, deadline_s=3.0)
            assert stale == [], f"resumed consumer re-read committed records: {stale[:3]}"

            key = KEYS[0]
            meta = producer.send(topic, key=key, value=f"{key}#new").get(timeout=30)
            producer.flush(timeout=30)
            assert meta.partition == partition_of[key]

            fresh = _poll_until(second, 1)
            fresh += _poll_until(second, 1, deadline_s=2.0)  # nothing else may trail it
            assert [(r.key, r.value, r.partition, r.offset) for r in fresh] == [
                (key, f"{key}#new", meta.partition, meta.offset)
            ]
            assert meta.offset == ends[TopicPartition(topic, meta.partition)]
        finally:
            second.close()
    finally:
        producer.close(timeout=10)


def test_a_notifier_that_joins_as_its_topic_is_created_reads_every_partition(kafka_bootstrap):
    """The CI failure of 1 December: the notifier's group formed before its client had the new
    topic's metadata, it was assigned nothing ("No partition metadata for topic") and read
    nothing for kafka-python's 5-minute metadata age. It now subscribes once it knows the
    partitions, and refreshes metadata every 30 s should a broker still be behind."""
    from services.notifier.consumer import make_consumer
    from shared.platform.kafka import METADATA_MAX_AGE_MS, ensure_topics

    for _ in range(5):
        topic = f"cityscore.scores.join-{uuid.uuid4().hex[:8]}"
        ensure_topics(kafka_bootstrap, {topic: PARTITIONS})
        consumer = make_consumer(kafka_bootstrap, topic, f"join-{uuid.uuid4().hex[:8]}", session_timeout_ms=10000)
        try:
            assert consumer.config["metadata_max_age_ms"] == METADATA_MAX_AGE_MS <= 30_000
            assert consumer.partitions_for_topic(topic) == set(range(PARTITIONS))
            deadline = time.monotonic() + 30
            while not consumer.assignment() and time.monotonic() < deadline:
                consumer.poll(timeout_ms=200)
            assert {tp.partition for tp in consumer.assignment()} == set(range(PARTITIONS))
        finally:
            consumer.close()
