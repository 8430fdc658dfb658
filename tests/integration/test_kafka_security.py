"""Every Kafka client of the services logs in with the SASL credentials of the settings.

A broker of this test's own (shared.dev.local_kafka, port CITYSCORE_TEST_SASL_KAFKA_PORT, default
19094) listens with SASL_PLAINTEXT only and knows one user, by PLAIN, SCRAM-SHA-256 and
SCRAM-SHA-512. Ingest's producer, the scorer's admin client, consumer and producer, the
rebuild's consumer and the notifier's consumer all run from Settings built from the
environment variables a deployment sets, and are refused with a wrong password or none.
"""

from __future__ import annotations

import os
import uuid
from datetime import date

import pytest
from kafka.errors import KafkaError

from services.ingest.app import create_app as ingest_app
from services.notifier.consumer import make_consumer
from services.scorer.consumer import Scorer
from services.scorer.replay import rewind_group
from shared.dev import local_kafka
from shared.core.catalog import load_catalog
from shared.platform.kafka import broker_reachable, ensure_topics, kafka_security, make_producer
from services.ingest.settings import IngestSettings
from services.scorer.settings import ScorerSettings

from tests.helpers.ingest import fresh_database, issue_keys
from tests.helpers.score_parts import score_parts
from tests.helpers.scorer import clock_for
from tests.helpers.waiting import wait_until

SASL_PORT = int(os.environ.get("CITYSCORE_TEST_SASL_KAFKA_PORT", "19094"))
USER, PASSWORD = "cityscore-services", "right-horse-battery-staple"
CATALOG = load_catalog()
AS_OF = date(2026, 6, 30)


@pytest.fixture(scope="module")
def sasl_bootstrap():
    broker = local_kafka.start(port=SASL_PORT, wait=120, sasl_users={USER: PASSWORD})
    try:
        yield broker.bootstrap_servers
    finally:
        if broker.started:
            local_kafka.stop(SASL_PORT)


class DeploymentSettings(IngestSettings, ScorerSettings):
    """Every service's settings from one environment, as a deployment's shared configuration gives them."""


def settings_for(bootstrap: str, tag: str, **security: str) -> DeploymentSettings:
    """Settings as a deployment gives them: environment variable names and string values."""
    return DeploymentSettings(**{
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": "sqlite://",
        "CITYSCORE_EVENTS_TOPIC": f"cityscore.events.sasl-{tag}", "CITYSCORE_SCORES_TOPIC": f"cityscore.scores.sasl-{tag}",
        "CITYSCORE_DLQ_TOPIC": f"cityscore.events.dlq.sasl-{tag}", "SCORER_GROUP": f"scorer-sasl-{tag}",
        "CITYSCORE_TOPIC_PARTITIONS": "2", "SCORER_BATCH_WAIT": "0.2", "INGEST_KAFKA_TIMEOUT": "5",
        **security,
    })


def sasl(mechanism: str, password: str = PASSWORD) -> dict[str, str]:
    return {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": mechanism,
            "KAFKA_SASL_USERNAME": USER, "KAFKA_SASL_PASSWORD": password}


def shootings(n: int) -> list[dict]:
    return [{"event_id": f"sasl-{i}", "type": "incident", "metric": "shootings",
             "occurred_at": "2026-06-29T22:00:00-04:00"} for i in range(n)]


@pytest.mark.kafka
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_ingest_scorer_and_notifier_log_in_with_the_settings_credentials(sasl_bootstrap, tmp_path, mechanism):
    settings = settings_for(sasl_bootstrap, uuid.uuid4().hex[:10], **sasl(mechanism))
    engine = fresh_database(f"sqlite:///{tmp_path}/sasl.db")
    key = issue_keys(engine, CATALOG, ["police"])["police"]
    assert broker_reachable(sasl_bootstrap, 10, security=kafka_security(settings))

    # ingest: its producer (and the admin client that makes the topics) answers 202 only after acks=all
    client = ingest_app(settings, engine=engine, catalog=CATALOG).test_client()
    response = client.post("/v1/events", json=shootings(5), headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 202, response.json
    assert client.get("/readyz").status_code == 200

    # the scorer: admin client, consumer in its group, producer of score changes
    store = score_parts(engine, CATALOG)
    scorer = Scorer(settings, store.writer, store.scores, CATALOG, clock=clock_for(AS_OF), client_id="scorer-sasl")
    try:
        scorer.run(until_idle=True)
    finally:
        scorer.close()
    assert scorer.totals.folded == 5

    # the notifier's consumer reads the score changes the scorer published
    consumer = make_consumer(sasl_bootstrap, settings.scores_topic, f"notifier-sasl-{mechanism}",
                             security=kafka_security(settings))
    try:
        changes = wait_until(lambda: [r for records in consumer.poll(timeout_ms=500).values() for r in records],
                             timeout_s=60, what="score changes on the scores topic")
    finally:
        consumer.close()
    assert any(r.key == b"shootings" for r in changes)

    # the rebuild's consumer moves the group's offsets
    assert rewind_group(settings) == 2


@pytest.mark.kafka
@pytest.mark.parametrize("security", [sasl("SCRAM-SHA-256", "wrong-password"), sasl("PLAIN", "wrong-password"), {}],
                         ids=["scram-wrong-password", "plain-wrong-password", "no-sasl"])
def test_the_broker_refuses_clients_with_wrong_credentials_or_none(sasl_bootstrap, tmp_path, security):
    tag = uuid.uuid4().hex[:10]
    good = settings_for(sasl_bootstrap, tag, **sasl("SCRAM-SHA-512"))
    ensure_topics(sasl_bootstrap, {good.events_topic: 2, good.dead_letter_topic: 1}, security=kafka_security(good))
    producer = make_producer(sasl_bootstrap, 30, "sasl-good", security=kafka_security(good))
    producer.send(good.events_topic, key=b"shootings", value=b"{}").get(timeout=30)  # something to read
    producer.close(timeout=10)
    settings = settings_for(sasl_bootstrap, tag, **security, INGEST_KAFKA_TIMEOUT="3")

    assert not broker_reachable(sasl_bootstrap, 3, security=kafka_security(settings))
    with pytest.raises(KafkaError):
        ensure_topics(sasl_bootstrap, {"cityscore.never": 1}, timeout_s=3, security=kafka_security(settings))
    with pytest.raises(KafkaError):
        make_producer(sasl_bootstrap, 3, "refused", security=kafka_security(settings))

    engine = fresh_database(f"sqlite:///{tmp_path}/refused.db")
    key = issue_keys(engine, CATALOG, ["police"])["police"]
    client = ingest_app(settings, engine=engine, catalog=CATALOG).test_client()
    response = client.post("/v1/events", json=shootings(1), headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 503, response.json  # never a 202 Kafka did not confirm
    assert client.get("/readyz").status_code == 503

    with pytest.raises(KafkaError):  # kafka-python gives up bootstrapping: the broker never let it in
        make_consumer(sasl_bootstrap, good.events_topic, f"refused-{tag}", security=kafka_security(settings),
                      bootstrap_timeout_ms=3000)
