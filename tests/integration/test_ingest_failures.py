"""Ingest when Kafka fails: 503 within the bound, never a 202 for an event Kafka does not have.

These tests stop and start a broker of their own (the local launcher, on a port of
its own), so they never disturb the broker the other tests share.
"""

from __future__ import annotations

import itertools
import os
import threading
import time

import orjson
import pytest

from services.ingest.app import create_app
from shared.dev import local_kafka
from shared.core.catalog import load_catalog
from services.ingest.settings import IngestSettings

from tests.helpers.ingest import case_event, fresh_database, issue_keys, read_topic, unique_topic
from tests.helpers.waiting import wait_until

CATALOG = load_catalog()
PORT = int(os.environ.get("CITYSCORE_TEST_FAULT_KAFKA_PORT", "19392"))
BOUND_S = 2.0


@pytest.fixture(scope="module")
def broker():
    """A broker this module may stop and start; fails (never skips) when none can be run."""
    started = local_kafka.start(port=PORT, wait=120, fresh=True)
    yield started.bootstrap_servers
    local_kafka.stop(PORT)


@pytest.fixture(scope="module")
def setup(database_url, broker):
    engine = fresh_database(database_url)
    keys = issue_keys(engine, CATALOG, ["public-works"])
    topic = unique_topic()
    settings = IngestSettings(KAFKA_BOOTSTRAP_SERVERS=broker, CITYSCORE_EVENTS_TOPIC=topic,
                        CITYSCORE_DLQ_TOPIC=topic + ".dlq", INGEST_KAFKA_TIMEOUT=BOUND_S,
                        INGEST_RATE_LIMIT="100000/second")
    app = create_app(settings, engine=engine, catalog=CATALOG)
    yield app, keys["public-works"], topic
    app.extensions["cityscore"]["publisher"].close()
    engine.dispose()


def post(client, body, key):
    return client.post("/v1/events", data=orjson.dumps(body),
                       headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})


def wait_for_202(client, key, prefix, timeout_s=90):
    """Post a new event every half second until one gets a 202 (each other answer must be a 503); its id."""
    attempts = itertools.count(1)

    def accepted() -> str | None:
        event_id = f"{prefix}-{next(attempts)}"
        response = post(client, case_event(event_id), key)
        if response.status_code == 202:
            return event_id
        assert response.status_code == 503, response.json
        return None

    return wait_until(accepted, timeout_s, "ingest to recover", interval_s=0.5)


def test_broker_down_gives_503_within_the_bound_and_recovers_without_restart(setup, broker):
    app, key, topic = setup
    client = app.test_client()
    assert post(client, case_event("before"), key).status_code == 202

    local_kafka.stop(PORT)
    try:
        for attempt in range(3):
            started = time.monotonic()
            response = post(client, [case_event(f"down-{attempt}-a"), case_event(f"down-{attempt}-b")], key)
            elapsed = time.monotonic() - started
            assert response.status_code == 503, response.json
            assert int(response.headers["Retry-After"]) >= 1
            assert "retry" in response.json["error"]
            assert elapsed < BOUND_S + 1.5, f"503 took {elapsed:.2f}s, bound {BOUND_S}s"
        assert client.get("/readyz").status_code == 503
    finally:
        local_kafka.start(port=PORT, wait=120)

    recovered = wait_for_202(client, key, "after")  # the same app: no restart
    assert client.get("/readyz").status_code == 200
    ids = {value["event_id"] for _, value, _ in read_topic(broker, topic)}
    assert {"before", recovered} <= ids


def test_no_accepted_event_is_lost_while_the_broker_stops_and_starts(setup, broker):
    """Post batches from two threads while the broker is stopped and started again;
    every event that got a 202 must be on the topic afterwards."""
    app, key, topic = setup
    accepted: list[str] = []
    refused = 0
    lock = threading.Lock()
    stop = threading.Event()

    def sender(name: str) -> None:
        nonlocal refused
        client = app.test_client()
        batch_number = 0
        while not stop.is_set():
            batch_number += 1
            batch = [case_event(f"load-{name}-{batch_number}-{i}") for i in range(20)]
            response = post(client, batch, key)
            with lock:
                if response.status_code == 202:
                    accepted.extend(response.json["event_ids"])
                else:
                    assert response.status_code == 503, response.json
                    refused += 1
            time.sleep(0.01)

    threads = [threading.Thread(target=sender, args=(name,), daemon=True) for name in "ab"]
    for thread in threads:
        thread.start()
    try:
        time.sleep(3)
        local_kafka.stop(PORT)
        time.sleep(4)
        local_kafka.start(port=PORT, wait=120)
        time.sleep(6)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    assert refused > 0, "the broker outage produced no 503: the test did not test anything"
    assert len(accepted) > 100
    on_topic = {value["event_id"] for _, value, _ in read_topic(broker, topic, timeout_s=120)}
    missing = [event_id for event_id in accepted if event_id not in on_topic]
    assert not missing, f"{len(missing)} events got a 202 but are not on the topic, e.g. {missing[:5]}"
