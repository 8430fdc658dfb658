"""Property-based fuzz of ingest's OpenAPI document (schemathesis): no input makes a 5xx.

Runs the real app (real Kafka, real PostgreSQL) through its WSGI interface with a
valid department key, so generated bodies get past authentication and reach the
validation and publishing code.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from services.ingest.app import create_app
from shared.core.catalog import load_catalog
from services.ingest.settings import IngestSettings

from tests.helpers.ingest import fresh_database, issue_keys, unique_topic

CATALOG = load_catalog()

# Load schemathesis's lazily imported parts now, at collection, rather than deep in a
# test: a plain `pytest` run (plugins autoloaded) rewrites them, and CPython 3.11's
# compiler can fail on that far down the stack.
_WARM_UP = schemathesis.openapi.from_dict({
    "openapi": "3.1.0", "info": {"title": "warm-up", "version": "1"},
    "paths": {"/x": {"get": {"responses": {"200": {"description": "ok"}}}}}})
for _result in _WARM_UP.get_all_operations():
    _result.ok().as_strategy()


@pytest.fixture(scope="module")
def ingest_app(kafka_bootstrap, database_url):
    engine = fresh_database(database_url)
    keys = issue_keys(engine, CATALOG, ["public-works"])
    topic = unique_topic()
    app = create_app(IngestSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, CITYSCORE_EVENTS_TOPIC=topic,
                              CITYSCORE_DLQ_TOPIC=topic + ".dlq", INGEST_RATE_LIMIT="100000/second"),
                     engine=engine, catalog=CATALOG)
    app.config["FUZZ_KEY"] = keys["public-works"]
    yield app
    app.extensions["cityscore"]["publisher"].close()
    engine.dispose()


@pytest.fixture(scope="module")
def ingest_schema(ingest_app):
    return schemathesis.openapi.from_wsgi("/openapi.json", ingest_app)


def operations(schema):
    return {f"{op.method.upper()} {op.path}": op for op in (result.ok() for result in schema.get_all_operations())}


# schemathesis's own pytest plugin does not load under this pytest, so the
# operations' hypothesis strategies are driven here directly: the same generation.
@pytest.mark.parametrize("operation", ["POST /v1/events", "GET /v1/catalog", "GET /healthz", "GET /readyz"])
def test_no_input_makes_a_server_error(ingest_schema, ingest_app, operation):
    found = operations(ingest_schema)
    assert operation in found
    key = ingest_app.config["FUZZ_KEY"]
    statuses = []

    @settings(max_examples=80 if operation.startswith("POST") else 10, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=found[operation].as_strategy())
    def check(case):
        response = case.call(headers={"Authorization": f"Bearer {key}"})
        statuses.append(response.status_code)
        assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])
        if operation == "POST /v1/events":
            assert response.status_code in (202, 400, 403, 413, 415, 422), response.text[:500]

    check()
    assert statuses, "hypothesis generated no request"


def test_the_document_is_valid_openapi(ingest_schema):
    # Loading succeeded and every operation resolves its references.
    assert set(operations(ingest_schema)) >= {"POST /v1/events", "GET /v1/catalog", "GET /healthz", "GET /readyz"}
