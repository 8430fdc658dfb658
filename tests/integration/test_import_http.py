"""`cityscore import boston311 --ingest-url`: a real HTTP server, real Kafka, real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli.commands import main
from services.ingest.app import create_app
from shared.core.catalog import load_catalog
from services.ingest.settings import IngestSettings

from tests.helpers.ingest import fresh_database, issue_keys, read_topic, unique_topic
from tests.helpers.serving import served

DATA = Path(__file__).resolve().parents[1] / "data"
CATALOG = load_catalog()


@pytest.fixture
def server(kafka_bootstrap, database_url):
    """Ingest over real HTTP, rate-limited hard so the importer must wait and retry."""
    engine = fresh_database(database_url)
    keys = issue_keys(engine, CATALOG, ["public-works", "transportation", "parks"])
    topic = unique_topic()
    app = create_app(IngestSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, CITYSCORE_EVENTS_TOPIC=topic,
                              CITYSCORE_DLQ_TOPIC=topic + ".dlq", INGEST_RATE_LIMIT="2/second"),
                     engine=engine, catalog=CATALOG)
    with served(app, "ingest-http") as url:
        yield url, keys, topic
    app.extensions["cityscore"]["publisher"].close()
    engine.dispose()


def offline_events(tmp_path, name):
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(main, ["import", "boston311", str(DATA / name), "--out", str(out)])  # name may be a path
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("export", ["boston311_new.csv", "boston311_old.csv"])
def test_import_sends_every_event_with_its_departments_key(server, kafka_bootstrap, tmp_path, export):
    url, keys, topic = server
    expected = offline_events(tmp_path, export)
    assert len(expected) >= 5
    result = CliRunner().invoke(main, [
        "import", "boston311", str(DATA / export), "--ingest-url", url, "--batch-size", "2",
        "--api-key", keys["public-works"], "--api-key", keys["transportation"], "--api-key", keys["parks"]])
    assert result.exit_code == 0, result.output
    assert f"{len(expected)} accepted, 0 refused" in result.stderr
    on_topic = {value["event_id"]: value for _, value, _ in read_topic(kafka_bootstrap, topic)}
    assert set(on_topic) == {e["event_id"] for e in expected}
    for event in expected:
        sent = on_topic[event["event_id"]]
        assert sent["department"] == CATALOG.metric(event["metric"]).department
        assert {k: v for k, v in sent.items() if k != "department"} == event


EXTRA_ROWS = [
    "101002709001,2019-01-03 10:00:00,2019-02-02 10:00:00,2019-01-10 11:00:00,ONTIME,Closed,Case Resolved,"
    "Sign Repair,Transportation - Traffic Division,Signs & Signals,Sign Repair,BTDT_Sign Shop,BTDT,,,"
    "1 Main St  Charlestown  MA  02129,3,1A,1,A15,Charlestown,2,Ward 2,0201,Main St,02129,42.37,-71.06,Constituent Call",
    "101002709002,2019-01-03 11:00:00,,2019-01-09 12:00:00,ONTIME,Closed,Case Resolved,"
    "Tree Maintenance Requests,Parks & Recreation Department,Trees,Tree Maintenance Requests,PARK_Tree,PARK,,,"
    "2 Elm St  Roxbury  MA  02119,7,10B,7,B2,Roxbury,13,Ward 12,1201,Elm St,02119,42.32,-71.08,Self Service",
]


def test_events_without_a_key_for_their_department_are_refused_and_reported(server, kafka_bootstrap, tmp_path):
    url, keys, topic = server
    export = tmp_path / "export.csv"
    export.write_text((DATA / "boston311_new.csv").read_text().rstrip("\n") + "\n" + "\n".join(EXTRA_ROWS) + "\n")
    expected = offline_events(tmp_path, export)
    public_works = [e for e in expected if CATALOG.metric(e["metric"]).department == "public-works"]
    others = [e for e in expected if CATALOG.metric(e["metric"]).department != "public-works"]
    assert public_works and others, "the test file should span several departments"
    result = CliRunner().invoke(main, ["import", "boston311", str(export),
                                       "--ingest-url", url, "--api-key", keys["public-works"]])
    assert result.exit_code == 1
    assert f"{len(public_works)} accepted, {len(others)} refused" in result.stderr
    assert "no API key given for" in result.stderr
    on_topic = {value["event_id"] for _, value, _ in read_topic(kafka_bootstrap, topic)}
    assert on_topic == {e["event_id"] for e in public_works}


def test_a_bad_key_is_a_clear_error(server):
    url, _, _ = server
    result = CliRunner().invoke(main, ["import", "boston311", str(DATA / "boston311_new.csv"),
                                       "--ingest-url", url, "--api-key", "csk_nope_nope"])
    assert result.exit_code == 1 and "answered 401" in result.output
