"""The OpenAPI 3.1 document of the ingest API, built from the contract's own JSON Schema."""

from __future__ import annotations

from typing import Any

from shared.core.catalog import Catalog
from shared.core.contract import CONTRACT_VERSION, event_json_schema

from .settings import IngestSettings


def _ref_schemas() -> dict[str, Any]:
    schema = event_json_schema()
    definitions = {name: _rewrite_refs(body) for name, body in schema.pop("$defs").items()}
    schema.pop("$schema", None)
    definitions["Event"] = _rewrite_refs(schema)
    return definitions


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" else _rewrite_refs(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "required": ["field", "reason"], "properties": {
            "index": {"type": "integer", "description": "position of the event in the batch"},
            "field": {"type": "string"},
            "reason": {"type": "string"},
        }}, "description": "the first 100 problems, in order"},
        "error_count": {"type": "integer", "description": "how many problems there are in all"},
        "errors_truncated": {"type": "boolean", "description": "true when `errors` lists only the first 100"},
        "max_events": {"type": "integer", "description": "413: the most events a request may hold"},
        "detail": {"type": "string"},
    },
}


def _error(description: str, headers: dict | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if headers:
        response["headers"] = headers
    return response


RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait before retrying"}}


def openapi_document(settings: IngestSettings, catalog: Catalog) -> dict[str, Any]:
    schemas = _ref_schemas()
    # The contract allows any metric id; this city's API takes only its catalog's.
    metric_ids = [m.id for m in catalog.metrics]
    for name in ("CaseEvent", "MeasurementEvent", "IncidentEvent", "TallyEvent"):
        schemas[name]["properties"]["metric"] = {"type": "string", "enum": metric_ids,
                                                 "title": "Metric", "description": "a metric of the catalog"}
    schemas["Error"] = ERROR
    schemas["Accepted"] = {"type": "object", "required": ["accepted", "event_ids"], "properties": {
        "accepted": {"type": "integer"}, "event_ids": {"type": "array", "items": {"type": "string"}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CityScore ingest API",
            "version": f"{CONTRACT_VERSION}.0",
            "description": (
                "Departments push operational events (311 cases, measurements, incidents, daily tallies). "
                "A 202 means Kafka has every event of the request; a 503 means none may be counted yet: retry. "
                "Send an Idempotency-Key header to make retries safe."
            ),
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "A department key issued by `cityscore keys issue`"}},
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/v1/events": {"post": {
                "summary": "Send one event or an array of up to %d" % settings.max_batch,
                "operationId": "postEvents",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                "schema": {"type": "string", "minLength": 1, "maxLength": 255}}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/Event"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/Event"},
                     "minItems": 1, "maxItems": settings.max_batch},
                ]}}}},
                "responses": {
                    "202": {"description": "Every event is in the event log",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                    "400": _error("Malformed request"),
                    "401": _error("Missing, unknown or revoked API key"),
                    "403": _error("A metric or department this key may not send"),
                    "413": _error("Body over the size limit or too many events"),
                    "415": _error("Not JSON"),
                    "422": _error("Events that break the contract, each with index, field and reason"),
                    "429": _error("Rate limit reached", RETRY_AFTER),
                    "503": _error("The event log did not confirm in time: nothing was accepted", RETRY_AFTER),
                },
            }},
            "/v1/catalog": {"get": {
                "summary": "The metrics this key may send, with their event types and fields",
                "operationId": "getCatalog",
                "responses": {"200": {"description": "The department's metrics",
                                      "content": {"application/json": {"schema": {"type": "object"}}}},
                              "401": _error("Missing, unknown or revoked API key")},
            }},
            "/healthz": {"get": {"summary": "The process is alive", "operationId": "healthz", "security": [],
                                 "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "Kafka and the database answer", "operationId": "readyz", "security": [],
                                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}},
        },
    }


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CityScore ingest API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>
"""

DOCS_INIT = "window.ui = SwaggerUIBundle({url: '/openapi.json', dom_id: '#swagger-ui'});\n"
