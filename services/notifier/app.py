"""The notifier's HTTP side: Slack's buttons and /cityscore, and the operations endpoints.

Every request from Slack is verified with the signing secret (slack_sdk's
SignatureVerifier): a forged signature, or a timestamp more than five minutes away,
gets 401 before anything else happens. Views stay thin: parse, call one use case,
answer.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Callable
from urllib.parse import parse_qs

import orjson
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import text

from .blocks import ACKNOWLEDGE, ADD_NOTE, NOTE_MODAL, TAKE_OWNERSHIP, board_message, metric_scores_message, note_modal
from .service import Notifier
from .settings import NotifierSettings
from .slack import SlackGateway

log = logging.getLogger("cityscore.notifier.http")


class NotifierMetrics:
    """Prometheus metrics: deliveries as they happen, and the outbox and alerts read at scrape time."""

    def __init__(self, notifier: Notifier) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter("cityscore_notifier_deliveries_total",
                                  "Slack delivery attempts by message kind and outcome (sent, retry, failed)",
                                  ["kind", "outcome"], registry=self.registry)
        self.requests = Counter("cityscore_notifier_slack_requests_total",
                                "Requests from Slack by endpoint and answer", ["endpoint", "status"],
                                registry=self.registry)
        notifier_ = notifier

        class StateCollector:
            def collect(self):
                stats = notifier_.stats()
                messages = GaugeMetricFamily("cityscore_notifier_messages",
                                             "Outbox messages by status (pending, sent, failed, cancelled)",
                                             labels=["status"])
                for status, count in stats["messages"].items():
                    messages.add_metric([status], count)
                yield messages
                yield GaugeMetricFamily("cityscore_notifier_alerts_open", "Follow-up alerts not resolved",
                                        value=stats["alerts_open"])

        self.registry.register(StateCollector())

    def delivered(self, kind: str, outcome: str) -> None:
        self.deliveries.labels(kind=kind, outcome=outcome).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _json(status: int, body: dict) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def create_app(settings: NotifierSettings, notifier: Notifier, gateway: SlackGateway, *,
               metrics: NotifierMetrics | None = None,
               checks: dict[str, Callable[[], bool]] | None = None,
               now: Callable[[], float] = time.time) -> Flask:
    metrics = metrics or NotifierMetrics(notifier)
    checks = dict(checks or {})
    verifier = None
    if settings.slack_signing_secret:
        class _Clock:
            def now(self) -> float:
                return now()

        verifier = SignatureVerifier(settings.slack_signing_secret, clock=_Clock())

    app = Flask(__name__)
    app.extensions["cityscore_notifier"] = {"notifier": notifier, "metrics": metrics}

    def verified(endpoint: str) -> tuple[bytes, Response | None]:
        body = request.get_data(cache=True)
        if verifier is None:
            log.warning("a Slack request was refused: SLACK_SIGNING_SECRET is not set")
            metrics.requests.labels(endpoint=endpoint, status="401").inc()
            return body, _json(401, {"error": "requests from Slack cannot be verified: no signing secret"})
        if not verifier.is_valid_request(body, dict(request.headers)):
            log.warning("a Slack request was refused: bad or stale signature",
                        extra={"endpoint": endpoint, "remote": request.remote_addr})
            metrics.requests.labels(endpoint=endpoint, status="401").inc()
            return body, _json(401, {"error": "invalid or stale Slack signature"})
        metrics.requests.labels(endpoint=endpoint, status="200").inc()
        return body, None

    def form(body: bytes) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(body.decode("utf-8")).items()}

    @app.post("/slack/actions")
    def slack_actions() -> Response:
        body, refusal = verified("actions")
        if refusal is not None:
            return refusal
        try:
            payload = orjson.loads(form(body)["payload"])
        except (KeyError, orjson.JSONDecodeError):
            return _json(400, {"error": "expected a form field 'payload' with JSON"})
        user = (payload.get("user") or {}).get("id", "")
        if payload.get("type") == "block_actions":
            for action in payload.get("actions", []):
                action_id, value = action.get("action_id"), action.get("value", "")
                if action_id not in (ACKNOWLEDGE, TAKE_OWNERSHIP, ADD_NOTE):
                    continue
                if not value.isdigit():
                    return _json(400, {"error": "the button carries no alert id"})
                alert_id = int(value)
                if action_id == ACKNOWLEDGE:
                    answer = notifier.acknowledge(alert_id, user)
                elif action_id == TAKE_OWNERSHIP:
                    answer = notifier.take_ownership(alert_id, user)
                else:
                    alert = notifier.alert(alert_id)
                    if alert is None:
                        return _json(200, {"text": "That alert does not exist."})
                    gateway.open_view(payload.get("trigger_id", ""),
                                      note_modal(alert_id, notifier.catalog.by_id[alert.metric]))
                    answer = "note form opened"
                log.info("slack action", extra={"action": action_id, "alert": alert_id, "user": user,
                                                "answer": answer})
            return Response(status=200)
        if payload.get("type") == "view_submission" and (payload.get("view") or {}).get("callback_id") == NOTE_MODAL:
            view = payload["view"]
            note = (((view.get("state") or {}).get("values") or {}).get("note") or {}).get("text", {}).get("value")
            metadata = view.get("private_metadata", "")
            if not metadata.isdigit():
                return _json(400, {"error": "the note form carries no alert id"})
            answer = notifier.add_note(int(metadata), user, note or "")
            if answer == "The note is empty.":
                return _json(200, {"response_action": "errors", "errors": {"note": answer}})
            return Response(status=200)
        return Response(status=200)  # other interactions are not ours

    @app.post("/slack/commands")
    def slack_commands() -> Response:
        body, refusal = verified("commands")
        if refusal is not None:
            return refusal
        fields = form(body)
        words = fields.get("text", "").strip()
        as_of = notifier.local_today() - timedelta(days=1)
        if words.lower() in ("", "board"):
            board = notifier.store.scoreboard(as_of)
            previous = notifier.store.scoreboard(as_of - timedelta(days=1))
            message = board_message(board, previous, notifier.catalog, settings.public_board_url,
                                    settings.windows[0] if settings.windows else "week", chart=False)
            return _json(200, {"response_type": "ephemeral", **message})
        if words.lower() == "help":
            return _json(200, {"response_type": "ephemeral",
                               "text": "`/cityscore` the scoreboard · `/cityscore METRIC` one metric's scores "
                                       "(its id, e.g. pothole-on-time, or part of its name)"})
        wanted = words.lower()
        metric = notifier.catalog.by_id.get(wanted) or next(
            (m for m in notifier.catalog.metrics if wanted in m.name.lower()), None)
        if metric is None:
            return _json(200, {"response_type": "ephemeral",
                               "text": f"No metric matches “{words}”. Try `/cityscore help`."})
        scores = notifier.store.scoreboard(as_of).metrics[metric.id]
        return _json(200, {"response_type": "ephemeral", **metric_scores_message(metric, scores, as_of)})

    @app.get("/healthz")
    def healthz() -> Response:
        return _json(200, {"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        results = {}
        try:
            with notifier.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            results["database"] = True
        except Exception:  # noqa: BLE001 - readiness is a yes/no question
            results["database"] = False
        for name, check in checks.items():
            try:
                results[name] = bool(check())
            except Exception:  # noqa: BLE001
                results[name] = False
        ready = all(results.values())
        return _json(200 if ready else 503, {"status": "ready" if ready else "not ready", "checks": results})

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)

    return app
