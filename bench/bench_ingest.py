"""Benchmark: ingest through gunicorn with acks=all, against a bare kafka-python producer.

Goals (issue 3): >= 5,000 events/s sustained in batches of 500; single-event posts at
100 requests/s with p99 < 50 ms; ingest >= half the bare producer's rate.

Uses KAFKA_BOOTSTRAP_SERVERS (default: starts the local broker on 9092) and
DATABASE_URL (default: a SQLite file in a temporary folder).

    python bench/bench_ingest.py [--events 100000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from datetime import date
from pathlib import Path

import orjson
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.core.catalog import load_catalog  # noqa: E402
from shared.dev.generator import generate  # noqa: E402
from tests.helpers.processes import free_port, percentile, start_gunicorn  # noqa: E402


def events_by_department(catalog, count: int) -> dict[str, list[dict]]:
    by_department: dict[str, list[dict]] = defaultdict(list)
    taken = 0
    run = uuid.uuid4().hex[:8]  # fresh ids each run
    for event in generate(catalog, 60, 1, date(2026, 6, 30)):
        event["event_id"] = f"{run}-{event['event_id']}"
        by_department[catalog.by_id[event["metric"]].department].append(event)
        taken += 1
        if taken >= count:
            break
    return by_department


def batch_load(url: str, keys: dict[str, str], events: dict[str, list[dict]], batch: int, clients: int) -> tuple[int, float]:
    """Post every event in batches from `clients` threads; return (events accepted, seconds)."""
    work = []
    for department, items in events.items():
        for start in range(0, len(items), batch):
            work.append((keys[department], orjson.dumps(items[start:start + batch]), len(items[start:start + batch])))
    lock = threading.Lock()
    accepted = 0
    failures = []

    def client(mine):
        nonlocal accepted
        session = requests.Session()
        for key, body, n in mine:
            response = session.post(url, data=body, headers={"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {key}"})
            if response.status_code != 202:
                failures.append(response.status_code)
                continue
            with lock:
                accepted += n

    threads = [threading.Thread(target=client, args=(work[i::clients],)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if failures:
        print(f"  batch load: {len(failures)} requests failed: {sorted(set(failures))}")
    return accepted, elapsed


def single_load(url: str, keys: dict[str, str], events: dict[str, list[dict]], rate: float, seconds: float):
    """Open-loop single-event posts at `rate` requests/s; latency of each from its scheduled time."""
    flat = [(keys[d], orjson.dumps(e)) for d, items in events.items() for e in items]
    total = int(rate * seconds)
    latencies: list[float] = []
    statuses: dict[int, int] = defaultdict(int)
    lock = threading.Lock()
    start = time.perf_counter() + 0.2
    next_index = 0

    def worker():
        nonlocal next_index
        session = requests.Session()
        while True:
            with lock:
                index = next_index
                next_index += 1
            if index >= total:
                return
            scheduled = start + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            key, body = flat[index % len(flat)]
            response = session.post(url, data=body, headers={"Content-Type": "application/json",
                                                             "Authorization": f"Bearer {key}"})
            # measured from the scheduled send time, so a slow server cannot hide queueing
            elapsed = time.perf_counter() - scheduled
            with lock:
                latencies.append(elapsed)
                statuses[response.status_code] += 1

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    achieved = total / (time.perf_counter() - start)
    return latencies, dict(statuses), achieved


def bare_producer(bootstrap: str, events: dict[str, list[dict]]) -> tuple[int, float]:
    from kafka import KafkaProducer

    topic = f"bench.bare-{uuid.uuid4().hex[:8]}"
    from shared.platform.kafka import ensure_topics, kafka_security

    ensure_topics(bootstrap, {topic: 6})
    producer = KafkaProducer(bootstrap_servers=bootstrap, **kafka_security(), acks="all", enable_idempotence=True,
                             linger_ms=2,
                             batch_size=256 * 1024)
    records = [(e["metric"].encode(), orjson.dumps(e)) for items in events.values() for e in items]
    producer.send(topic, key=b"warm", value=b"{}").get(timeout=30)
    started = time.perf_counter()
    futures = [producer.send(topic, key=k, value=v) for k, v in records]
    producer.flush()
    for f in futures:
        f.get(timeout=30)
    elapsed = time.perf_counter() - started
    producer.close()
    return len(records), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=100)
    args = parser.parse_args()

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        from shared.dev import local_kafka

        bootstrap = local_kafka.start(port=9092, wait=120).bootstrap_servers
    workdir = tempfile.mkdtemp(prefix="cityscore-bench-")
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{workdir}/bench.db"
    catalog = load_catalog()
    topic = f"bench.events-{uuid.uuid4().hex[:8]}"

    from services.ingest.keys import issue_department_keys
    from shared.store.engine import make_engine, migrate, session_factory

    engine = make_engine(database_url)
    migrate(engine)
    with session_factory(engine)() as session:
        keys = issue_department_keys(session, catalog, label="bench")
        session.commit()
    engine.dispose()

    events = events_by_department(catalog, args.events)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": database_url,
           "CITYSCORE_EVENTS_TOPIC": topic, "INGEST_RATE_LIMIT": "1000000/second", "CITYSCORE_LOG_LEVEL": "WARNING",
           "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="cityscore-prom-")}
    port = free_port()
    server = start_gunicorn("services.ingest.wsgi:app", env, port)
    url = f"http://127.0.0.1:{port}/v1/events"
    try:
        # warm up every worker's producer
        batch_load(url, keys, {d: v[:50] for d, v in events.items()}, 50, 4)
        accepted, elapsed = batch_load(url, keys, events, args.batch, args.clients)
        ingest_rate = accepted / elapsed
        print(f"ingest (gunicorn, acks=all), batches of {args.batch}, {args.clients} clients: "
              f"{accepted} events in {elapsed:.2f}s = {ingest_rate:,.0f} events/s (goal >= 5,000)")

        latencies, statuses, achieved = single_load(url, keys, events, args.rate, args.seconds)
        ms = [x * 1000 for x in latencies]
        print(f"single-event posts at {args.rate:.0f} req/s for {args.seconds:.0f}s: achieved {achieved:.1f} req/s, "
              f"statuses {statuses}, latency p50 {statistics.median(ms):.1f} ms, p95 {percentile(ms, 95):.1f} ms, "
              f"p99 {percentile(ms, 99):.1f} ms, max {max(ms):.1f} ms (goal p99 < 50 ms)")
    finally:
        server.terminate()
        server.wait(timeout=30)

    count, bare_elapsed = bare_producer(bootstrap, events)
    bare_rate = count / bare_elapsed
    print(f"bare kafka-python producer (acks=all), same events: {count} in {bare_elapsed:.2f}s = "
          f"{bare_rate:,.0f} events/s")
    print(f"ratio ingest / bare producer: {ingest_rate / bare_rate:.2f} (goal >= 0.5)")


if __name__ == "__main__":
    main()
