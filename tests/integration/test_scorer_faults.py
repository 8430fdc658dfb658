"""The scorer as real processes: killed with SIGKILL mid-stream, two of them sharing the partitions,
and one riding out a broker outage.

Whatever happens to the processes, the final scores must equal the offline scores of
the same events: nothing lost, nothing counted twice.
"""

from __future__ import annotations

import logging
import random
import signal
import time
from datetime import date

import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import func, select

from services.scorer.consumer import Scorer
from shared.core.catalog import load_catalog
from shared.core.contract import parse_event
from shared.store.tables.scorer import ProcessedEvent
from shared.core.folding import Ledger
from shared.dev.generator import generate
from shared.platform.kafka import kafka_security

from tests.helpers.broker import kill_broker, start_broker_again
from tests.helpers.ingest import fresh_database
from tests.helpers.boards import board_differences
from tests.helpers.score_parts import score_parts
from tests.helpers.scorer import Stream, clock_for, scorer_process
from tests.helpers.waiting import wait_until

CATALOG = load_catalog()
END = date(2026, 6, 30)


@pytest.fixture(scope="module")
def events():
    return list(generate(CATALOG, 90, 23, END))


@pytest.fixture(scope="module")
def expected(events):
    ledger = Ledger(CATALOG)
    for event in events:
        ledger.fold(parse_event(event))
    return {as_of: ledger.scoreboard(as_of).as_dict(CATALOG) for as_of in (END, date(2026, 6, 1), date(2026, 4, 15))}


@pytest.fixture
def setup(kafka_bootstrap, database_url):
    engine = fresh_database(database_url)
    stream = Stream(kafka_bootstrap, database_url)
    yield stream, score_parts(engine, CATALOG)
    stream.close()
    engine.dispose()


def folded(store) -> int:
    with store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(ProcessedEvent))


def stop(process) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except Exception:
            process.kill()
            process.wait()


def assert_matches_offline(store, expected) -> None:
    for as_of, board in expected.items():
        assert board_differences(board, store.reader.scoreboard(as_of).as_dict(CATALOG)) == [], as_of


def test_sigkill_at_any_moment_loses_and_doubles_nothing(setup, events, expected):
    stream, store = setup
    stream.send(events)
    total = len({e["event_id"] for e in events})
    rng = random.Random(17)
    kills_mid_stream = 0
    for _ in range(4):
        process = scorer_process(stream)
        wait_until(lambda: process.poll() is not None or folded(store) > 0, timeout_s=120, what="the scorer to start")
        time.sleep(rng.uniform(0.3, 2.5))
        process.kill()  # SIGKILL: no clean-up of any kind
        process.wait()
        done = folded(store)
        if 0 < done < total:
            kills_mid_stream += 1
    assert kills_mid_stream >= 2, "the kills did not land in the middle of the stream"
    process = scorer_process(stream)
    try:
        wait_until(lambda: folded(store) >= total, timeout_s=300, what="every event folded")
        assert folded(store) == total
    finally:
        stop(process)
    assert_matches_offline(store, expected)


def test_two_scorers_with_a_rebalance_in_the_middle(setup, events, expected):
    stream, store = setup
    stream.send(events)
    total = len({e["event_id"] for e in events})
    first = scorer_process(stream)
    second = None
    try:
        wait_until(lambda: folded(store) > total // 10, timeout_s=120, what="the first scorer to make progress")
        second = scorer_process(stream)  # joins the group: the partitions are shared out again
        wait_until(lambda: folded(store) >= total, timeout_s=300, what="every event folded")
        assert second.poll() is None and first.poll() is None, "both scorers should still be running"
    finally:
        stop(first)
        if second is not None:
            stop(second)
    assert folded(store) == total
    assert_matches_offline(store, expected)


@pytest.mark.timeout(600)
def test_a_broker_outage_mid_stream_neither_stops_the_scorer_nor_loses_an_event(own_broker, database_url, events,
                                                                                expected, tmp_path):
    engine = fresh_database(database_url)
    stream = Stream(own_broker, database_url)
    store = score_parts(engine, CATALOG)
    log = tmp_path / "scorer.log"
    # Trying the broker again every 20 ms, the scorer meets (within seconds of the outage) the
    # error kafka-python raises out of poll() when the group coordinator lookup and the
    # metadata request after it both fail to connect.
    process = scorer_process(stream, {"KAFKA_RECONNECT_BACKOFF_MAX_MS": "20"}, log=log)
    first, rest = events[: len(events) // 2], events[len(events) // 2:]
    total = len({e["event_id"] for e in events})
    try:
        stream.send(first)
        wait_until(lambda: folded(store) > len(first) // 4, timeout_s=120, what="the scorer to make progress")
        kill_broker()
        # Batches still going to the database, their offset commits failing, polls failing. Short:
        # with the broker's own restart (15-20 s after a SIGKILL) the outage stays well under
        # the 30 s in which a score change must reach Kafka.
        time.sleep(3)
        start_broker_again()
        stream.send(rest)  # the departments' events go on after the outage
        wait_until(lambda: process.poll() is not None or folded(store) >= total, timeout_s=300,
                   what="every event folded after the outage")
        assert process.poll() is None, f"the scorer stopped in or after the outage:\n{log.read_text()[-3000:]}"
        assert "Kafka did not answer a poll; polling again" in log.read_text(), "the outage never reached a poll"
        assert folded(store) == total
        assert_matches_offline(store, expected)
    finally:
        stop(process)
        stream.close()
        engine.dispose()


def test_offsets_whose_waited_commit_failed_are_committed_once_the_broker_is_back(own_broker, database_url, events,
                                                                                 caplog):
    """The scorer has folded every event; the commit it waits for when it idles fails (here the
    broker is down; in the end-to-end test a rebalance did it). Nothing is left to read, so no
    later batch would commit those offsets: without keeping them the group looked behind for
    good (its lag never reached 0)."""
    engine = fresh_database(database_url)
    stream = Stream(own_broker, database_url)
    store = score_parts(engine, CATALOG)
    sample = events[:3000]
    unique = len({event["event_id"] for event in sample})
    # The waited commit gives up after SCORER_COMMIT_TIMEOUT, not kafka-python's 30 s request timeout.
    scorer = Scorer(stream.settings(SCORER_COMMIT_TIMEOUT="3"), store.writer, store.scores, CATALOG,
                    clock=clock_for(END))
    try:
        stream.send(sample)
        scorer.connect()
        deadline = time.monotonic() + 120
        while folded(store) < unique and time.monotonic() < deadline:
            batch = scorer.collect()
            if batch.messages:
                scorer.submit(batch)  # the last batch's offsets wait for the idle loop's commit
        assert folded(store) == unique
        while not scorer._in_flight[-1][0].done():
            time.sleep(0.05)
        kill_broker()
        with caplog.at_level(logging.WARNING, logger="cityscore.scorer"):
            started = time.monotonic()
            scorer.finish_in_flight()
            waited = time.monotonic() - started
        # The waited commit's warning (a failed commit_async, logged from kafka-python's thread, says
        # "a later commit covers it").
        failures = [r for r in caplog.records if r.getMessage().startswith("offset commit failed; it is tried again")]
        assert failures, "the commit did not fail"
        # Bounded by the setting: a scorer stopping while the broker is away is not held for 30 s,
        # nor for a second try at once.
        assert waited < 20, f"the failed commit held the loop {waited:.1f}s"
        assert len(failures) == 1, f"the commit was tried {len(failures)} times in a row"
        start_broker_again()
        # Idle: nothing left to read, so only the offsets kept from the failed commit can bring
        # the group to the end.
        deadline = time.monotonic() + 120
        while committed_offsets(stream) < len(sample) and time.monotonic() < deadline:
            if not scorer.collect().messages:
                scorer.finish_in_flight()
        assert committed_offsets(stream) == len(sample)
    finally:
        scorer.close()
        stream.close()
        engine.dispose()


def committed_offsets(stream: Stream) -> int:
    """The group's committed offsets, summed over the events topic's partitions."""
    probe = KafkaConsumer(bootstrap_servers=stream.bootstrap, group_id=stream.group, enable_auto_commit=False,
                          **kafka_security())
    try:
        partitions = probe.partitions_for_topic(stream.events_topic) or ()
        return sum(probe.committed(TopicPartition(stream.events_topic, p)) or 0 for p in partitions)
    finally:
        probe.close()
