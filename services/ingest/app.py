"""The ingest service: departments push events over HTTP; we answer 202 once Kafka has them.

`create_app()` wires the real adapters from the environment; tests pass their own
settings, database engine and publisher (real ones, pointed at test servers).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import swagger_ui_bundle
from flask import Flask, Response, g, request, send_from_directory
from flask_limiter import Limiter
from sqlalchemy import text
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException

from shared.core.catalog import Catalog
from shared.core.contract import Problem
from shared.store.engine import session_factory
from shared.platform.kafka import events_topic_configs, kafka_security
from shared.platform.bootstrap import bootstrap
from shared.platform.web import json_response

from . import handlers
from .keys import key_id_of, verify_key
from .metrics import IngestMetrics
from .openapi import DOCS_INIT, DOCS_PAGE, openapi_document
from .publisher import EventPublisher, KafkaEventPublisher
from .retention import IdempotencyPurger
from .settings import IngestSettings

log = logging.getLogger("cityscore.ingest")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Cache-Control": "no-store",
}
# The docs page loads Swagger UI's own script and styles from this server.
DOCS_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'"


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("X-API-Key")


def create_app(
    settings: IngestSettings | None = None,
    *,
    engine: Engine | None = None,
    publisher: EventPublisher | None = None,
    catalog: Catalog | None = None,
) -> Flask:
    settings, catalog, engine = bootstrap(IngestSettings, settings=settings, catalog=catalog, engine=engine)
    sessions = session_factory(engine)
    publisher = publisher or KafkaEventPublisher(
        settings.kafka_bootstrap_servers, settings.events_topic, settings.kafka_timeout_s,
        settings.topic_partitions, settings.dead_letter_topic, settings.kafka_reconnect_backoff_max_ms,
        security=kafka_security(settings), topic_configs=events_topic_configs(settings))
    metrics = IngestMetrics()
    # Create the topics at start if they are missing, without holding up start-up when
    # Kafka is down: the first request (or /readyz) tries again.
    threading.Thread(target=publisher.ready, name="ingest-topics", daemon=True).start()
    # Ingest has no scheduler: each process purges expired idempotency records itself.
    purger = (IdempotencyPurger(engine, settings.idempotency_ttl_hours, settings.purge_every_s).start()
              if settings.purge_every_s > 0 else None)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["cityscore"] = {"settings": settings, "engine": engine, "publisher": publisher,
                                   "catalog": catalog, "metrics": metrics, "purger": purger}

    def rate_key() -> str:
        return key_id_of(presented_key() or "") or request.remote_addr or "unknown"

    limiter = Limiter(rate_key, app=app, storage_uri=settings.rate_limit_storage, headers_enabled=True,
                      strategy="moving-window")

    # -- cross-cutting: request ids, logs, security headers, metrics ---------------

    @app.before_request
    def _start() -> None:
        g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path.startswith("/docs"):
            response.headers["Content-Security-Policy"] = DOCS_CSP
            response.headers["Cache-Control"] = "public, max-age=3600"
        response.headers["X-Request-ID"] = g.get("request_id", "")
        route = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.requests.labels(route=route, method=request.method, status=str(response.status_code)).inc()
        metrics.latency.labels(route=route).observe(elapsed)
        if route not in ("/healthz", "/metrics"):
            log.info("request", extra={"request_id": g.get("request_id"), "method": request.method,
                                       "path": request.path, "status": response.status_code,
                                       "ms": round(elapsed * 1000, 2), "key_id": g.get("key_id")})
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        headers = {}
        if exc.code == 429:
            headers["Retry-After"] = exc.response.headers.get("Retry-After", "1") if exc.response else "1"
        body = {"error": exc.description if exc.code != 413 else
                f"request body too large (at most {settings.max_body_bytes} bytes)"}
        response = json_response(exc.code or 500, body, headers)
        if exc.code == 429 and exc.response is not None:
            for name, value in exc.response.headers.items():
                if name.lower().startswith(("x-ratelimit", "retry-after")):
                    response.headers[name] = value
        return response

    # -- the API -----------------------------------------------------------------------

    def authenticate():
        with sessions() as session:
            caller = verify_key(session, presented_key())
        if caller is None:
            return None, json_response(401, {"error": "a valid API key is required (Authorization: Bearer csk_…)"},
                                       {"WWW-Authenticate": 'Bearer realm="cityscore"'})
        g.key_id = caller.key_id
        return caller, None

    @app.post("/v1/events")
    @limiter.limit(settings.rate_limit)
    def post_events() -> Response:
        caller, refusal = authenticate()
        if refusal is not None:
            return refusal
        if not request.is_json:
            return json_response(415, {"error": "send JSON: Content-Type: application/json"})
        body = request.get_data(cache=False)
        idempotency_key = request.headers.get("Idempotency-Key")
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= 255:
                refused = handlers.refusal(422, "invalid Idempotency-Key", [
                    Problem("Idempotency-Key", "must be 1 to 255 characters")])
                return json_response(refused.status, refused.body)
            with sessions() as session:
                stored = handlers.replay(session, caller, idempotency_key, body)
            if stored is not None:
                return json_response(stored.status, stored.body, stored.headers)
        started = time.perf_counter()
        answer, per_metric = handlers.accept_events(
            body, caller, catalog, publisher, settings.max_batch,
            retry_after_s=max(1, int(settings.kafka_timeout_s)))
        if answer.status == 202:
            metrics.kafka_latency.observe(time.perf_counter() - started)
            for metric_id, count in per_metric.items():
                metrics.accepted.labels(metric=metric_id).inc(count)
        elif answer.status == 503:
            metrics.kafka_failures.inc()
            log.warning("Kafka did not confirm a batch", extra={"request_id": g.request_id,
                                                                  "detail": answer.body.get("detail")})
        if idempotency_key is not None:
            handlers.remember(sessions, caller, idempotency_key, body, answer)
        return json_response(answer.status, answer.body, answer.headers)

    @app.get("/v1/catalog")
    def get_catalog() -> Response:
        caller, refusal = authenticate()
        if refusal is not None:
            return refusal
        return json_response(200, handlers.catalog_for(catalog, caller.department))

    # -- operations ----------------------------------------------------------------

    @app.get("/healthz")
    def healthz() -> Response:
        return json_response(200, {"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        checks = {"kafka": publisher.ready()}
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            checks["database"] = True
        except Exception:  # noqa: BLE001 - readiness is a yes/no question
            checks["database"] = False
        ready = all(checks.values())
        return json_response(200 if ready else 503, {"status": "ready" if ready else "not ready", "checks": checks})

    @app.get("/metrics")
    def prometheus() -> Response:
        payload, content_type = metrics.exposition()
        return Response(payload, mimetype=content_type)

    document = openapi_document(settings, catalog)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return json_response(200, document)

    @app.get("/docs")
    @app.get("/docs/")
    def docs() -> Response:
        return Response(DOCS_PAGE, mimetype="text/html")

    @app.get("/docs/init.js")
    def docs_init() -> Response:
        return Response(DOCS_INIT, mimetype="text/javascript")

    @app.get("/docs/static/<path:name>")
    def docs_static(name: str) -> Response:
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, name)

    limiter.exempt(healthz)
    limiter.exempt(readyz)
    limiter.exempt(prometheus)
    return app
