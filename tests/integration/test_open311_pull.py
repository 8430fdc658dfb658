"""`cityscore pull open311`: a fake Open311 endpoint into a real ingest, Kafka and PostgreSQL.

The pull is killed (SIGKILL, a real subprocess) mid-run and restarted from its state file:
every request is sent exactly once, and the events on the topic, scored offline, are the
offline import of the same requests scored. It rides out an endpoint answering HTTP 500 for a
while, and sends a request again when the city updates it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
import requests
from click.testing import CliRunner

from services.cli.commands import main
from services.cli.offline import score_file
from services.ingest.app import create_app
from services.ingest.client import DepartmentRouter, IngestClient, idempotency_key
from services.ingest.settings import IngestSettings
from services.puller.pull import IngestFailed, Open311Pull, StateFile
from shared.core.catalog import load_catalog
from shared.core.open311 import flatten, to_send
from shared.feeds.csv_feed import ingest_dicts
from shared.feeds.open311 import Open311Client, Open311Rows, requests_url

from tests.fakes.open311 import FakeOpen311
from tests.helpers.ingest import fresh_database, issue_keys, read_topic, unique_topic
from tests.helpers.open311 import city_requests, iso
from tests.helpers.serving import served

ROOT = Path(__file__).resolve().parents[2]
FEEDS = ROOT / "tests" / "data" / "feeds"
CATALOG_FILE = FEEDS / "philadelphia_open311.yaml"
CATALOG = load_catalog(CATALOG_FILE)


@pytest.fixture
def ingest(kafka_bootstrap, database_url):
    """Philadelphia's ingest over real HTTP, rate-limited so that a pull takes a while (and must retry 429s)."""
    engine = fresh_database(database_url)
    keys = issue_keys(engine, CATALOG, ["streets", "police"])
    topic = unique_topic()
    app = create_app(IngestSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, CITYSCORE_EVENTS_TOPIC=topic,
                                    CITYSCORE_DLQ_TOPIC=topic + ".dlq", INGEST_RATE_LIMIT="8/second"),
                     engine=engine, catalog=CATALOG)
    with served(app, "ingest-http") as url:
        yield url, [keys["streets"], keys["police"]], topic
    app.extensions["cityscore"]["publisher"].close()
    engine.dispose()


@pytest.fixture
def endpoint():
    now = datetime.now(timezone.utc).replace(microsecond=0)
    fake = FakeOpen311(city_requests(400, now - timedelta(minutes=10), days=120, seed=7))
    url = fake.start()
    yield fake, url
    fake.stop()


def offline_import(url: str, tmp_path: Path, name: str) -> list[dict]:
    """The same requests through `cityscore import open311` (its own reading of the endpoint)."""
    today = datetime.now(CATALOG.zone).date()
    out = tmp_path / f"{name}.jsonl"
    result = CliRunner().invoke(main, ["import", "open311", url, "--feed", "open311", "--catalog", str(CATALOG_FILE),
                                       "--start", str(today - timedelta(days=125)), "--end", str(today),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def on_topic(kafka_bootstrap: str, topic: str) -> list[dict]:
    return [{k: v for k, v in value.items() if k != "department"} for _, value, _ in read_topic(kafka_bootstrap, topic)]


def scored(events: list[dict]) -> dict:
    stream = io.BytesIO(b"".join(orjson.dumps(e) + b"\n" for e in events))
    board, report, _ = score_file(stream, CATALOG, datetime.now(CATALOG.zone).date(), percentile=False)
    assert report.invalid == 0
    return board.as_dict(CATALOG)


def pull_command(url: str, ingest_url: str, keys: list[str], state: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", "pull", "open311", url, "--feed", "open311", "--catalog",
            str(CATALOG_FILE), "--ingest-url", ingest_url, "--state", str(state), "--lookback", "130d",
            "--every", "1s", "--backoff", "0.1s", "--batch-size", "10",
            *[part for key in keys for part in ("--api-key", key)], *extra]


def test_a_pull_killed_mid_run_and_restarted_sends_every_request_exactly_once(endpoint, ingest, kafka_bootstrap,
                                                                               tmp_path):
    fake, url = endpoint
    ingest_url, keys, topic = ingest
    state = tmp_path / "pull-state.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CITYSCORE_LOG_FORMAT": "json"}
    first = subprocess.Popen(pull_command(url, ingest_url, keys, state), cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not state.exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        time.sleep(0.5)  # a few more batches: killed with some sent, most not
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        first.kill()  # SIGKILL: no chance to tidy up
    finally:
        first.wait(timeout=30)
    cursor_at_kill = json.loads(state.read_text())["cursor"]
    sent_before = on_topic(kafka_bootstrap, topic)
    expected = offline_import(url, tmp_path, "offline")
    assert 0 < len(sent_before) < len(expected)

    second = subprocess.run(pull_command(url, ingest_url, keys, state, "--cycles", "1"), cwd=ROOT, env=env,
                            capture_output=True, timeout=300)
    assert second.returncode == 0, second.stderr.decode()[-3000:]
    logs = [json.loads(line) for line in second.stderr.decode().splitlines() if line.startswith("{")]
    started = next(record for record in logs if record["message"] == "pulling")
    assert started["cursor"] == f"{cursor_at_kill['version']} {cursor_at_kill['case_id']}"  # resumed, not restarted
    sends = [record for record in logs if record["message"] == "sent to ingest"]
    assert sends and all(record["refused"] == 0 for record in sends)

    events = on_topic(kafka_bootstrap, topic)
    counts = Counter(event["event_id"] for event in events)
    assert max(counts.values()) == 1, [e for e, n in counts.items() if n > 1][:5]  # exactly once
    assert sorted(map(json.dumps, events)) == sorted(map(json.dumps, expected))
    assert scored(events) == scored(expected)


def test_the_pull_rides_out_an_endpoint_failing_for_a_while_and_sends_updated_requests_again(
        endpoint, ingest, kafka_bootstrap, tmp_path, caplog):
    fake, url = endpoint
    ingest_url, keys, topic = ingest
    client = Open311Client(url, backoff_s=0.01)
    pull = Open311Pull(client, CATALOG, [("open311", CATALOG.feeds["open311"])],
                       lambda: DepartmentRouter(ingest_url, keys), StateFile(tmp_path / "s.json", requests_url(url),
                                                                              "open311"),
                       lookback_s=130 * 86400, batch_size=50)
    fake.fail_next(12)  # one cycle's call and its 4 retries fail, twice; the third gets through
    stop = threading.Event()
    with caplog.at_level(logging.INFO, logger="cityscore.pull"):
        assert pull.run(stop, every_s=0.1, backoff_s=0.05, backoff_max_s=0.2, cycles=1) == 0
    failed = [r for r in caplog.records if r.getMessage() == "pull failed; trying again after a back-off"]
    assert [r.failures for r in failed] == [1, 2]
    assert [r.retry_in_s for r in failed] == [0.05, 0.1]
    assert "answered HTTP 500" in failed[0].error
    assert [c.status for c in fake.calls[:12]] == [500] * 12
    first_round = on_topic(kafka_bootstrap, topic)
    assert sorted(map(json.dumps, first_round)) == sorted(map(json.dumps, offline_import(url, tmp_path, "before")))

    # The city closes an open request and re-opens nothing else: only it is sent again, as a new version.
    still_open = next(r for r in fake.requests if r["status"] == "open" and r["service_name"] == "Illegal Dumping"
                      and "extended_attributes" not in r)
    fake.replace({**still_open, "status": "closed", "updated_datetime": iso(datetime.now(timezone.utc))})
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cityscore.pull"):
        assert pull.run(stop, every_s=0.1, backoff_s=0.05, backoff_max_s=0.2, cycles=1) == 0
    sent = [r for r in caplog.records if r.getMessage() == "sent to ingest"]
    assert [(r.requests, r.accepted) for r in sent] == [(1, 1)]
    events = on_topic(kafka_bootstrap, topic)
    (new,) = [e for e in events if e not in first_round]
    assert new["case_id"] == still_open["service_request_id"] and new["closed_at"]
    # Scored, the topic (both versions of that case) is the import of the requests as they are now.
    assert scored(events) == scored(offline_import(url, tmp_path, "after"))
    # Nothing new: nothing sent.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cityscore.pull"):
        pull.run(stop, every_s=0.1, backoff_s=0.05, backoff_max_s=0.2, cycles=1)
    assert [r.getMessage() for r in caplog.records if r.getMessage() == "sent to ingest"] == []
    assert len(on_topic(kafka_bootstrap, topic)) == len(events)


def test_the_pull_backs_off_while_ingest_is_down_and_sends_everything_once_it_is_back(
        endpoint, ingest, kafka_bootstrap, database_url, tmp_path, caplog):
    from shared.store.engine import make_engine

    fake, url = endpoint
    ingest_url, keys, topic = ingest
    # A second ingest on the same topic and database (the fixture's keys), down at first: nothing
    # listens on its port.
    engine = make_engine(database_url)
    port = free_port()
    app = create_app(IngestSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, CITYSCORE_EVENTS_TOPIC=topic,
                                    CITYSCORE_DLQ_TOPIC=topic + ".dlq"), engine=engine, catalog=CATALOG)
    state = StateFile(tmp_path / "s.json", requests_url(url), "open311")
    pull = Open311Pull(Open311Client(url, backoff_s=0.01), CATALOG, [("open311", CATALOG.feeds["open311"])],
                       lambda: DepartmentRouter(f"http://127.0.0.1:{port}", keys, retries=1, backoff_s=0.01), state,
                       lookback_s=130 * 86400, batch_size=50)
    stop = threading.Event()
    done = []
    with caplog.at_level(logging.INFO, logger="cityscore.pull"):
        runner = threading.Thread(target=lambda: done.append(pull.run(stop, 0.1, 0.05, 0.4, cycles=1)))
        runner.start()
        deadline = time.monotonic() + 60
        while pull.failures < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pull.failures >= 4 and state.load() is None  # nothing accepted: no cursor
        try:
            with served(app, "ingest-http", port):  # ingest is back
                runner.join(timeout=120)
                assert done == [0]
        finally:
            app.extensions["cityscore"]["publisher"].close()
    waits = [r.retry_in_s for r in caplog.records if r.getMessage() == "pull failed; trying again after a back-off"]
    assert waits[:4] == [0.05, 0.1, 0.2, 0.4] and set(waits[4:]) <= {0.4}  # doubling, capped
    assert all("ingest: ConnectionError" in r.error for r in caplog.records if hasattr(r, "retry_in_s"))
    assert state.load() is not None
    events = on_topic(kafka_bootstrap, topic)
    assert Counter(e["event_id"] for e in events).most_common(1)[0][1] == 1
    assert sorted(map(json.dumps, events)) == sorted(map(json.dumps, offline_import(url, tmp_path, "offline")))


def test_a_request_shown_late_below_the_cursor_is_sent_once_within_the_overlap(ingest, kafka_bootstrap, tmp_path):
    now = datetime.now(timezone.utc).replace(microsecond=0)

    def dumping(number: int, updated: datetime, status: str = "open") -> dict:
        return {"service_request_id": str(number), "service_name": "Illegal Dumping", "status": status,
                "requested_datetime": iso(now - timedelta(days=3)), "updated_datetime": iso(updated),
                "zipcode": "19104"}

    fake = FakeOpen311([dumping(1, now - timedelta(hours=3)), dumping(3, now - timedelta(hours=2))])
    url = fake.start()
    ingest_url, keys, topic = ingest
    state = StateFile(tmp_path / "s.json", requests_url(url), "open311")

    def pull() -> Open311Pull:  # a new process each time: all it knows is the state file
        return Open311Pull(Open311Client(url, backoff_s=0.01), CATALOG, [("open311", CATALOG.feeds["open311"])],
                           lambda: DepartmentRouter(ingest_url, keys), state, lookback_s=10 * 86400)

    try:
        assert pull().cycle().accepted == 2
        assert state.load().case_id == "3"
        # Shown only now, with versions before the cursor: 2 updated between 1 and 3 (the endpoint
        # lagged), 4 closed in the field an hour before 1 and entered late, 5 two days back
        # (beyond the day of overlap: never sent, as documented).
        fake.requests += [dumping(2, now - timedelta(hours=2, minutes=30)),
                          dumping(4, now - timedelta(hours=4), status="closed"),
                          dumping(5, now - timedelta(days=2))]
        report = pull().cycle()
        assert (report.new, report.accepted) == (2, 2)
        assert pull().cycle().new == 0  # sent once: neither again nor after a restart
        # Changed without a newer version: sent again (its event is the same: a duplicate downstream).
        fake.replace({**dumping(2, now - timedelta(hours=2, minutes=30)), "status_notes": "crew assigned"})
        assert pull().cycle().new == 1
    finally:
        fake.stop()
    events = on_topic(kafka_bootstrap, topic)
    assert sorted(e["case_id"] for e in events) == ["1", "2", "2", "3", "4"]
    assert next(e for e in events if e["case_id"] == "4")["closed_at"]


def dumping_events(requests: list[dict]) -> list[dict]:
    """The events the pull makes of these requests, in the order it sends them."""
    read = [flatten(r) for r in requests]
    rows = Open311Rows(CATALOG, [("open311", CATALOG.feeds["open311"])], read)
    return list(ingest_dicts(rows.events(row for _, row in to_send(read, None, rows.version_of))))


def dumping_request(number: int, closed: str) -> dict:
    return {"service_request_id": str(30_000_000 + number), "service_name": "Illegal Dumping", "status": "closed",
            "requested_datetime": "2024-01-02T10:00:00-05:00", "updated_datetime": closed, "zipcode": "19104"}


def test_two_batches_alike_in_their_first_kilobytes_and_length_are_both_accepted(ingest):
    # Twenty requests alike, then one whose close time differs (same length): the bodies share
    # their first 2 KB and their length, and must not share an Idempotency-Key.
    ingest_url, keys, _ = ingest
    alike = [dumping_request(number, "2024-01-03T10:00:00-05:00") for number in range(20)]
    a = dumping_events(alike + [dumping_request(77, "2024-01-08T07:22:43-05:00")])
    b = dumping_events(alike + [dumping_request(77, "2024-01-08T09:41:05-05:00")])
    body_a, body_b = orjson.dumps(a), orjson.dumps(b)
    assert body_a[:2048] == body_b[:2048] and len(body_a) == len(body_b) and body_a != body_b
    client = IngestClient(ingest_url, keys[0])
    assert client.send(a).accepted == 21
    report = client.send(b)
    assert (report.accepted, report.refused) == (21, [])


def test_events_each_refused_for_their_own_reasons_are_not_a_refusal_of_the_batch(ingest):
    # Every event of the batch is another department's: each error names its event's index.
    ingest_url, keys, _ = ingest
    events = [{**event, "metric": "abandoned-vehicle-on-time"}
              for event in dumping_events([dumping_request(number, "2024-01-03T10:00:00-05:00") for number in (1, 2)])]
    report = IngestClient(ingest_url, keys[0]).send(events)  # the streets key
    assert report.accepted == 0 and [(r.status, r.whole_batch) for r in report.refused] == [(403, False)] * 2
    assert "belongs to 'police'" in report.refused[0].reasons[0]


def test_a_batch_refused_as_a_whole_fails_the_cycle_and_keeps_the_cursor(ingest, tmp_path):
    ingest_url, keys, _ = ingest
    now = datetime.now(timezone.utc).replace(microsecond=0)
    fake = FakeOpen311([{**dumping_request(number, iso(now - timedelta(hours=number + 1))),
                         "requested_datetime": iso(now - timedelta(days=1))} for number in range(3)])
    url = fake.start()
    # The batch's Idempotency-Key already used with another body: ingest refuses the whole
    # request (422, its error naming the Idempotency-Key, no event's index).
    events = dumping_events(fake.requests)
    assert len(events) == 3
    poison = requests.post(ingest_url + "/v1/events", data=orjson.dumps(events[:1]),
                           headers={"Authorization": f"Bearer {keys[0]}", "Content-Type": "application/json",
                                    "Idempotency-Key": idempotency_key(orjson.dumps(events))}, timeout=30)
    assert poison.status_code == 202
    state = StateFile(tmp_path / "s.json", requests_url(url), "open311")
    pull = Open311Pull(Open311Client(url, backoff_s=0.01), CATALOG, [("open311", CATALOG.feeds["open311"])],
                       lambda: DepartmentRouter(ingest_url, keys), state, lookback_s=10 * 86400)
    try:
        with pytest.raises(IngestFailed, match="Idempotency-Key: reused with a different request body"):
            pull.cycle()
    finally:
        fake.stop()
    assert state.load() is None and pull.cursor is None  # nothing passed over: sent again next cycle


def in_local_time(requests: list[dict]) -> list[dict]:
    """The requests as a city writing local times without an offset answers them."""
    out = []
    for request in requests:
        request = dict(request)
        for name in ("requested_datetime", "updated_datetime", "expected_datetime"):
            if name in request:
                local = datetime.fromisoformat(request[name]).astimezone(CATALOG.zone)
                request[name] = local.replace(tzinfo=None).isoformat()
        out.append(request)
    return out


def test_a_pull_reads_times_without_an_offset_as_import_open311_does(ingest, kafka_bootstrap, tmp_path):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    fake = FakeOpen311(in_local_time(city_requests(80, now - timedelta(minutes=10), days=30, seed=11)),
                       zone=CATALOG.zone)
    url = fake.start()
    ingest_url, keys, topic = ingest
    try:
        pull = Open311Pull(Open311Client(url, backoff_s=0.01), CATALOG, [("open311", CATALOG.feeds["open311"])],
                           lambda: DepartmentRouter(ingest_url, keys),
                           StateFile(tmp_path / "s.json", requests_url(url), "open311"), lookback_s=40 * 86400)
        report = pull.cycle()
        expected = offline_import(url, tmp_path, "offline")
    finally:
        fake.stop()
    assert report.new == 80 and report.accepted == len(expected) > 0
    assert sorted(map(json.dumps, on_topic(kafka_bootstrap, topic))) == sorted(map(json.dumps, expected))


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
