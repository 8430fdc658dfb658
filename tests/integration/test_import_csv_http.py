"""`cityscore import csv --feed … --ingest-url`: another city's export over real HTTP, Kafka and PostgreSQL."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli.commands import main
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.core.catalog import load_catalog

from tests.helpers.ingest import fresh_database, issue_keys, read_topic, unique_topic
from tests.helpers.serving import served

FEEDS = Path(__file__).resolve().parents[1] / "data" / "feeds"
CATALOG_FILE = FEEDS / "philadelphia.yaml"
CATALOG = load_catalog(CATALOG_FILE)
EXPORT = FEEDS / "philadelphia_public_cases_fc.csv"


@pytest.fixture
def server(kafka_bootstrap, database_url):
    """Philadelphia's ingest over real HTTP, rate-limited hard so the importer must wait and retry."""
    engine = fresh_database(database_url)
    keys = issue_keys(engine, CATALOG, ["streets", "police"])
    topic = unique_topic()
    app = create_app(IngestSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, CITYSCORE_EVENTS_TOPIC=topic,
                                    CITYSCORE_DLQ_TOPIC=topic + ".dlq", INGEST_RATE_LIMIT="2/second"),
                     engine=engine, catalog=CATALOG)
    with served(app, "ingest-http") as url:
        yield url, keys, topic
    app.extensions["cityscore"]["publisher"].close()
    engine.dispose()


def command(*extra):
    return ["import", "csv", str(EXPORT), "--feed", "philly311", "--catalog", str(CATALOG_FILE), *extra]


def offline_events(tmp_path):
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(main, command("--out", str(out)))
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_every_event_goes_with_its_departments_key_once_even_when_sent_twice(server, kafka_bootstrap, tmp_path):
    url, keys, topic = server
    expected = offline_events(tmp_path)
    assert {CATALOG.metric(e["metric"]).department for e in expected} == {"streets", "police"}
    sent = command("--ingest-url", url, "--batch-size", "2", "--api-key", keys["streets"], "--api-key", keys["police"])
    first = CliRunner().invoke(main, sent)
    assert first.exit_code == 0, first.output
    assert f"{len(expected)} accepted, 0 refused" in first.stderr
    assert "skipped, information request: 1" in first.stderr
    again = CliRunner().invoke(main, sent)  # the same batches: ingest recognises their idempotency keys
    assert again.exit_code == 0, again.output
    on_topic = [value for _, value, _ in read_topic(kafka_bootstrap, topic)]
    assert Counter(value["event_id"] for value in on_topic) == Counter(e["event_id"] for e in expected)
    by_id = {value["event_id"]: value for value in on_topic}
    for event in expected:
        assert by_id[event["event_id"]]["department"] == CATALOG.metric(event["metric"]).department
        assert {k: v for k, v in by_id[event["event_id"]].items() if k != "department"} == event


def test_events_of_a_department_without_a_key_are_refused_and_reported(server, kafka_bootstrap, tmp_path):
    url, keys, topic = server
    expected = offline_events(tmp_path)
    streets = [e for e in expected if CATALOG.metric(e["metric"]).department == "streets"]
    result = CliRunner().invoke(main, command("--ingest-url", url, "--api-key", keys["streets"]))
    assert result.exit_code == 1
    assert f"{len(streets)} accepted, {len(expected) - len(streets)} refused" in result.stderr
    assert "no API key given for" in result.stderr
    assert {value["event_id"] for _, value, _ in read_topic(kafka_bootstrap, topic)} == {e["event_id"] for e in streets}
