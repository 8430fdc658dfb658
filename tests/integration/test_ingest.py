"""The ingest API against a real Kafka broker and a real PostgreSQL database."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from sqlalchemy import select

from services.ingest.app import create_app
from services.ingest.keys import key_id_of
from services.ingest.publisher import KafkaEventPublisher
from services.ingest.retention import purge_idempotency_records
from shared.core.catalog import load_catalog
from shared.store.engine import session_factory, utcnow
from shared.store.tables.ingest import IdempotencyRecord
from shared.platform.kafka import kafka_security
from services.ingest.settings import IngestSettings

from tests.helpers.ingest import case_event, fresh_database, incident_event, issue_keys, read_topic, unique_topic
from tests.helpers.waiting import wait_until

CATALOG = load_catalog()


@pytest.fixture(scope="module")
def database(database_url):
    engine = fresh_database(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def keys(database):
    keys = issue_keys(database, CATALOG, ["public-works", "police", "fire"])
    from services.ingest.keys import issue_key, revoke_key
    from shared.store.engine import session_factory

    with session_factory(database)() as session:
        revoked = issue_key(session, "public-works", label="old system")
        revoke_key(session, revoked.key_id)
        session.commit()
    keys["revoked"] = revoked.secret
    return keys


def make_settings(kafka_bootstrap, topic, **overrides):
    return IngestSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, CITYSCORE_EVENTS_TOPIC=topic,
                    CITYSCORE_DLQ_TOPIC=topic + ".dlq", INGEST_KAFKA_TIMEOUT=5, **overrides)


@pytest.fixture
def ingest(kafka_bootstrap, database):
    topic = unique_topic()
    settings = make_settings(kafka_bootstrap, topic)
    app = create_app(settings, engine=database, catalog=CATALOG)
    app.config["TESTING"] = True
    yield app.test_client(), topic
    app.extensions["cityscore"]["publisher"].close()


def post(client, body, key=None, headers=None, raw=False):
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if key:
        all_headers["Authorization"] = f"Bearer {key}"
    data = body if raw else orjson.dumps(body)
    return client.post("/v1/events", data=data, headers=all_headers)


# -- accepted events are on the topic, refused ones are not ------------------------------


def test_accepted_events_are_on_the_topic_keyed_by_metric_and_refused_ones_are_absent(ingest, keys, kafka_bootstrap):
    client, topic = ingest
    good = [case_event("pw-1"), case_event("pw-2", metric="streetlight-on-time"), case_event("pw-3")]
    response = post(client, good, keys["public-works"])
    assert response.status_code == 202, response.json
    assert response.json == {"accepted": 3, "event_ids": ["pw-1", "pw-2", "pw-3"]}

    single = post(client, incident_event("bpd-1"), keys["police"])
    assert single.status_code == 202 and single.json["event_ids"] == ["bpd-1"]

    # one bad event refuses its whole batch
    refused = post(client, [case_event("pw-4"), case_event("pw-5", opened_at="2026-07-20T09:00:00")],
                   keys["public-works"])
    assert refused.status_code == 422
    forbidden = post(client, [case_event("pw-6"), incident_event("pw-7")], keys["public-works"])
    assert forbidden.status_code == 403

    records = read_topic(kafka_bootstrap, topic)
    by_id = {value["event_id"]: (key, value, partition) for key, value, partition in records}
    assert sorted(by_id) == ["bpd-1", "pw-1", "pw-2", "pw-3"]
    assert len(records) == 4
    for key, value, _ in by_id.values():
        assert key == value["metric"].encode()
    assert by_id["pw-1"][1]["department"] == "public-works"  # stamped from the key
    assert by_id["bpd-1"][1]["department"] == "police"
    assert by_id["pw-1"][2] == by_id["pw-3"][2]  # same metric, same partition: order kept
    assert by_id["pw-1"][1]["opened_at"] == "2026-07-20T09:00:00-04:00"


# -- who may send what ----------------------------------------------------------------------


@pytest.mark.parametrize("key_name, header", [
    (None, None),
    ("bad", "Bearer csk_000000000000_notthesecret"),
    ("garbage", "Bearer hello"),
    ("revoked", None),
    ("wrong secret", None),
])
def test_missing_unknown_or_revoked_keys_get_401(ingest, keys, key_name, header):
    client, _ = ingest
    headers = {}
    if header:
        headers["Authorization"] = header
    elif key_name == "revoked":
        headers["Authorization"] = f"Bearer {keys['revoked']}"
    elif key_name == "wrong secret":
        headers["Authorization"] = f"Bearer {keys['public-works'][:-4]}AAAA"
    response = post(client, case_event("x"), headers=headers)
    assert response.status_code == 401
    assert "API key" in response.json["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_key_sends_only_its_departments_metrics(ingest, keys):
    client, _ = ingest
    response = post(client, [case_event("ok"), incident_event("not-ours")], keys["public-works"])
    assert response.status_code == 403
    assert response.json["errors"] == [{
        "index": 1, "field": "metric",
        "reason": "metric 'shootings' belongs to 'police', not to this key's department 'public-works'"}]


def test_a_different_department_in_the_event_is_refused(ingest, keys):
    client, _ = ingest
    response = post(client, case_event("a", department="police"), keys["public-works"])
    assert response.status_code == 403
    assert response.json["errors"][0]["field"] == "department"
    assert post(client, case_event("b", department="public-works"), keys["public-works"]).status_code == 202


def test_a_date_more_than_a_day_ahead_or_before_the_metrics_history_is_refused_by_name(ingest, keys):
    client, _ = ingest
    ahead = (datetime.now(timezone.utc) + timedelta(days=3)).isoformat(timespec="seconds")
    response = post(client, [incident_event("ok"), incident_event("ahead", occurred_at=ahead),
                             incident_event("old", occurred_at="2001-01-01T12:00:00-05:00")], keys["police"])
    assert response.status_code == 422
    found = {(p["index"], p["field"]): p["reason"] for p in response.json["errors"]}
    assert set(found) == {(1, "occurred_at"), (2, "occurred_at")}
    assert "more than a day after today" in found[(1, "occurred_at")]
    assert "before shootings's history starts (2010-01-01)" in found[(2, "occurred_at")]


def test_a_department_withdraws_its_own_events_only(ingest, keys):
    client, _ = ingest
    withdrawal = {"event_id": "w-1", "type": "withdrawal", "metric": "shootings", "withdraws": "bpd-1"}
    assert post(client, withdrawal, keys["police"]).status_code == 202
    # Public works cannot send a withdrawal under police's metric (and its own would name its own ids).
    response = post(client, {**withdrawal, "event_id": "w-2"}, keys["public-works"])
    assert response.status_code == 403
    assert response.json["errors"][0]["field"] == "metric"


def test_x_api_key_header_works_too(ingest, keys):
    client, _ = ingest
    response = client.post("/v1/events", data=orjson.dumps(case_event("hdr")),
                           headers={"Content-Type": "application/json", "X-API-Key": keys["public-works"]})
    assert response.status_code == 202


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, field, words", [
    (case_event("v", metric="potholes"), "metric", "unknown metric"),
    (case_event("v", metric="311-call-center"), "type", "does not accept 'case'"),
    ({**case_event("v"), "type": "measurement"}, "occurred_at", "required field is missing"),
    ({k: v for k, v in case_event("v").items() if k != "case_id"}, "case_id", "required field is missing"),
    (case_event("v", closed_at="2026-07-20T15:00:00"), "closed_at", "UTC offset"),
    (case_event("v", closed_at="2026-07-19T15:00:00-04:00"), "closed_at", "before opened_at"),
    (case_event("v", colour="red"), "colour", "unknown field"),
    (case_event("v", attributes={"subtype": 3}), "attributes.subtype", None),
    ({**case_event("v"), "event_id": ""}, "event_id", None),
])
def test_invalid_events_are_named_with_index_and_field(ingest, keys, bad, field, words):
    client, _ = ingest
    response = post(client, [case_event("fine"), bad], keys["public-works"])
    assert response.status_code == 422, response.json
    errors = response.json["errors"]
    assert any(e["index"] == 1 and e["field"] == field and (words is None or words in e["reason"])
               for e in errors), errors
    assert all(e["index"] == 1 for e in errors)


def test_numbers_out_of_range_and_wrong_types_for_the_metric(ingest, keys):
    client, _ = ingest
    survey = {"event_id": "s", "type": "measurement", "metric": "311-call-center",
              "occurred_at": "2026-07-22T10:00:00-04:00", "value": -3}
    fire = [{"event_id": "f1", "type": "measurement", "metric": "bfd-response-time",
             "occurred_at": "2026-07-22T10:00:00-04:00", "value": "3"},
            {"event_id": "f2", "type": "incident", "metric": "bfd-incidents",
             "occurred_at": "2026-07-22T10:00:00-04:00", "count": 0},
            {"event_id": "f3", "type": "case", "metric": "bfd-incidents", "case_id": "1",
             "opened_at": "2026-07-22T10:00:00-04:00"}]
    response = post(client, fire, keys["fire"])
    assert response.status_code == 422
    found = {(e["index"], e["field"]) for e in response.json["errors"]}
    assert (0, "value") in found and (1, "count") in found
    response = post(client, fire[2:], keys["fire"])
    assert response.json["errors"] == [{"index": 0, "field": "type", "reason":
                                        "metric 'bfd-incidents' does not accept 'case' events "
                                        "(it accepts: incident, tally)"}]
    del survey


def test_body_limits_content_type_and_json(ingest, keys):
    client, _ = ingest
    key = keys["public-works"]
    assert post(client, [], key).status_code == 422
    too_many = [case_event(f"m{i}") for i in range(1001)]
    response = post(client, too_many, key)
    assert response.status_code == 413 and "at most 1000" in response.json["error"]
    huge = b"[" + b",".join([orjson.dumps(case_event("h" * 100))] * 6000) + b"]"
    assert len(huge) > 1024 * 1024
    response = post(client, huge, key, raw=True)
    assert response.status_code == 413
    response = client.post("/v1/events", data="event_id=1", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Bearer {key}"})
    assert response.status_code == 415
    response = post(client, b"{not json", key, raw=True)
    assert response.status_code == 422 and "not valid JSON" in response.json["errors"][0]["reason"]


def empty_objects(count: int) -> bytes:
    return b"[" + b",".join([b"{}"] * count) + b"]"


def test_a_megabyte_of_empty_objects_is_refused_413_by_its_count_before_validation(ingest, keys, database):
    """349,524 empty objects fit in 1 MiB: counted first, refused with the limit, nothing validated or stored big."""
    client, _ = ingest
    body = empty_objects(349_524)
    assert len(body) <= 1024 * 1024
    response = post(client, body, keys["public-works"], raw=True, headers={"Idempotency-Key": "empties"})
    assert response.status_code == 413, response.status_code
    assert response.json["error"] == "at most 1000 events per request (INGEST_MAX_BATCH); this array holds more"
    assert response.json["max_events"] == 1000
    assert len(response.data) < 1000
    with session_factory(database)() as session:
        record = session.get(IdempotencyRecord, (key_id_of(keys["public-works"]), "empties"))
    assert record.status == 413 and len(record.response_body) < 1000
    # the limit itself is still a batch: validated, one problem each
    at_limit = post(client, empty_objects(1000), keys["public-works"], raw=True)
    assert at_limit.status_code == 422 and at_limit.json["error_count"] == 1000
    assert post(client, empty_objects(1001), keys["public-works"], raw=True).status_code == 413


@pytest.mark.parametrize("bad, status", [
    (lambda i: case_event(f"bad-{i}", closed_at="2026-07-20T15:00:00"), 422),  # the contract
    (lambda i: case_event(f"bad-{i}", metric="potholes"), 422),  # the catalog
    (lambda i: incident_event(f"bad-{i}"), 403),  # police's metric on a public-works key
])
def test_problems_are_capped_at_the_first_100_with_the_total(ingest, keys, bad, status):
    client, _ = ingest
    body = [case_event("fine-0")] + [bad(i) for i in range(500)]
    response = post(client, body, keys["public-works"])
    assert response.status_code == status, response.json
    errors = response.json["errors"]
    assert [e["index"] for e in errors] == list(range(1, 101))
    assert response.json["error_count"] == 500 and response.json["errors_truncated"] is True
    few = post(client, body[:3], keys["public-works"])
    assert few.status_code == status
    assert len(few.json["errors"]) == few.json["error_count"] == 2 and few.json["errors_truncated"] is False


# -- idempotency ---------------------------------------------------------------------------------


def test_idempotency_key_replays_the_first_answer_without_writing_again(ingest, keys, kafka_bootstrap):
    client, topic = ingest
    key = keys["public-works"]
    body = [case_event("idem-1"), case_event("idem-2")]
    first = post(client, body, key, headers={"Idempotency-Key": "batch-42"})
    second = post(client, body, key, headers={"Idempotency-Key": "batch-42"})
    assert first.status_code == second.status_code == 202
    assert second.json == first.json
    assert second.headers["Idempotent-Replayed"] == "true"
    changed = post(client, [case_event("idem-3")], key, headers={"Idempotency-Key": "batch-42"})
    assert changed.status_code == 422 and changed.json["errors"][0]["field"] == "Idempotency-Key"
    # another key may use the same Idempotency-Key for its own request
    other = post(client, incident_event("idem-bpd"), keys["police"], headers={"Idempotency-Key": "batch-42"})
    assert other.status_code == 202
    ids = sorted(value["event_id"] for _, value, _ in read_topic(kafka_bootstrap, topic))
    assert ids == ["idem-1", "idem-2", "idem-bpd"]


def aged(engine, key: str, idempotency_key: str, hours: float) -> None:
    """Make a stored answer `hours` old."""
    with session_factory(engine)() as session:
        record = session.get(IdempotencyRecord, (key_id_of(key), idempotency_key))
        record.created_at = utcnow() - timedelta(hours=hours)
        session.commit()


def stored_keys(engine) -> set[str]:
    with session_factory(engine)() as session:
        return set(session.scalars(select(IdempotencyRecord.idempotency_key)))


def test_idempotency_records_past_the_ttl_are_purged_and_a_retry_within_it_still_replays(ingest, keys, database):
    client, _ = ingest
    key = keys["public-works"]
    answers = {}
    for name in ("ttl-fresh", "ttl-within", "ttl-past"):
        answers[name] = post(client, [case_event(name)], key, headers={"Idempotency-Key": name})
        assert answers[name].status_code == 202
    aged(database, key, "ttl-within", 23.9)  # the TTL is 24 h by default
    aged(database, key, "ttl-past", 24.1)

    assert purge_idempotency_records(database, 24) == 1
    assert {"ttl-fresh", "ttl-within"} <= stored_keys(database)
    assert "ttl-past" not in stored_keys(database)
    retried = post(client, [case_event("ttl-within")], key, headers={"Idempotency-Key": "ttl-within"})
    assert retried.status_code == 202 and retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json == answers["ttl-within"].json
    # past the TTL the key is free again: a new request, a new answer
    reused = post(client, [case_event("ttl-past-2")], key, headers={"Idempotency-Key": "ttl-past"})
    assert reused.status_code == 202 and "Idempotent-Replayed" not in reused.headers


def test_a_backlog_of_expired_records_is_purged_in_chunks(database, keys):
    old = utcnow() - timedelta(days=30)
    with session_factory(database)() as session:
        session.add_all(IdempotencyRecord(api_key_id=key_id_of(keys["police"]), idempotency_key=f"backlog-{i}",
                                          request_hash=b"0" * 32, status=202, response_body="{}", created_at=old)
                        for i in range(2500))
        session.commit()
    assert purge_idempotency_records(database, 24, chunk=1000) == 2500
    assert not {k for k in stored_keys(database) if k.startswith("backlog-")}


def test_each_ingest_process_purges_expired_records_on_its_own(kafka_bootstrap, database, keys):
    key = keys["fire"]
    app = create_app(make_settings(kafka_bootstrap, unique_topic(), INGEST_PURGE_EVERY=0.2), engine=database,
                     catalog=CATALOG)
    client = app.test_client()
    try:
        event = {"event_id": "purge-1", "type": "incident", "metric": "bfd-incidents",
                 "occurred_at": "2026-07-22T10:00:00-04:00"}
        for name in ("own-fresh", "own-past"):
            assert post(client, {**event, "event_id": name}, key, headers={"Idempotency-Key": name}).status_code == 202
        aged(database, key, "own-past", 25)
        wait_until(lambda: "own-past" not in stored_keys(database), 30, "the expired answer to be purged",
                   interval_s=0.1)
        assert "own-past" not in stored_keys(database)
        assert "own-fresh" in stored_keys(database)
    finally:
        app.extensions["cityscore"]["purger"].stop()
        app.extensions["cityscore"]["publisher"].close()


def test_cityscore_ingest_purge_does_one_pass(database, keys, database_url, monkeypatch):
    from click.testing import CliRunner

    from services.cli.commands import main
    from shared.platform.settings import get_settings

    with session_factory(database)() as session:
        session.add(IdempotencyRecord(api_key_id=key_id_of(keys["police"]), idempotency_key="cli-past",
                                      request_hash=b"0" * 32, status=202, response_body="{}",
                                      created_at=utcnow() - timedelta(hours=30)))
        session.commit()
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("INGEST_IDEMPOTENCY_TTL_HOURS", "24")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["ingest", "purge"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "1 idempotency records older than 24 h purged" in result.output
    assert "cli-past" not in stored_keys(database)


# -- protection ----------------------------------------------------------------------------------


def test_rate_limit_per_key_answers_429_with_retry_after(kafka_bootstrap, database, keys):
    settings = make_settings(kafka_bootstrap, unique_topic(), INGEST_RATE_LIMIT="3/minute")
    client = create_app(settings, engine=database, catalog=CATALOG).test_client()
    statuses = [post(client, case_event(f"rl{i}"), keys["public-works"]).status_code for i in range(4)]
    assert statuses == [202, 202, 202, 429]
    limited = post(client, case_event("rl9"), keys["public-works"])
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert "error" in limited.json
    # another department's key has its own allowance
    assert post(client, incident_event("rl-bpd"), keys["police"]).status_code == 202


def test_security_headers_and_request_id(ingest, keys):
    client, _ = ingest
    response = post(client, case_event("sec"), keys["public-works"], headers={"X-Request-ID": "abc123"})
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Request-ID"] == "abc123"
    assert response.headers["Cache-Control"] == "no-store"


# -- operations -----------------------------------------------------------------------------------


def test_health_readiness_metrics_docs_and_catalog(ingest, keys):
    client, _ = ingest
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"] == {"kafka": True, "database": True}

    assert post(client, [case_event("met-1"), case_event("met-2")], keys["public-works"]).status_code == 202
    assert post(client, case_event("met-3"), headers={}).status_code == 401
    text = client.get("/metrics").get_data(as_text=True)
    assert 'cityscore_ingest_events_accepted_total{metric="pothole-on-time"} 2.0' in text
    assert 'cityscore_ingest_requests_total{method="POST",route="/v1/events",status="202"} 1.0' in text
    assert 'status="401"' in text
    assert "cityscore_ingest_kafka_seconds_count 1.0" in text

    document = client.get("/openapi.json").json
    assert document["openapi"].startswith("3.1")
    assert "CaseEvent" in document["components"]["schemas"]
    page = client.get("/docs")
    assert page.status_code == 200 and b"swagger-ui" in page.data
    assert client.get("/docs/static/swagger-ui-bundle.js").status_code == 200

    catalog = client.get("/v1/catalog", headers={"Authorization": f"Bearer {keys['police']}"}).json
    ids = {m["id"] for m in catalog["metrics"]}
    assert ids == {"homicides", "part-1-crimes", "shootings", "stabbings"}
    shootings = next(m for m in catalog["metrics"] if m["id"] == "shootings")
    assert set(shootings["event_types"]) == {"incident", "tally"}
    assert "occurred_at" in shootings["event_types"]["incident"]["required"]
    assert client.get("/v1/catalog").status_code == 401


def test_readyz_says_not_ready_when_kafka_is_unreachable(database):
    settings = IngestSettings(KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", INGEST_KAFKA_TIMEOUT=1)
    client = create_app(settings, engine=database, catalog=CATALOG).test_client()
    started = time.monotonic()
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json["checks"]["kafka"] is False
    assert time.monotonic() - started < 10
    assert client.get("/healthz").status_code == 200


def test_publisher_is_usable_on_its_own(kafka_bootstrap):
    topic = unique_topic()
    publisher = KafkaEventPublisher(kafka_bootstrap, topic, 5, 3, topic + ".dlq")
    try:
        elapsed = publisher.publish([(b"m", b'{"event_id": "direct"}')])
        assert elapsed < 5
        assert publisher.ready()
    finally:
        publisher.close()
    assert [v["event_id"] for _, v, _ in read_topic(kafka_bootstrap, topic)] == ["direct"]


def test_the_events_topic_is_created_at_start_with_the_configured_partitions(kafka_bootstrap, database):
    from kafka import KafkaAdminClient

    topic = unique_topic()
    app = create_app(make_settings(kafka_bootstrap, topic, CITYSCORE_TOPIC_PARTITIONS=4), engine=database,
                     catalog=CATALOG)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, **kafka_security())
    try:
        found = wait_until(lambda: [t for t in admin.describe_topics([topic])
                                    if t.get("error_code", 0) == 0 and t.get("partitions")],
                           30, "the events topic to be created at start", interval_s=0.2)
        assert found, "the events topic was not created at start"
        assert len(found[0]["partitions"]) == 4
    finally:
        admin.close()
        app.extensions["cityscore"]["publisher"].close()
