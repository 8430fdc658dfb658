"""The notifier's HTTP side: Slack's buttons and /cityscore, and the operations endpoints.

Every request from Slack is checked before anything else happens: a body over
SLACK_MAX_BODY_BYTES gets 413 without being read; a missing or non-numeric timestamp,
a forged signature, or a timestamp more than five minutes away gets 401 (slack_sdk's
SignatureVerifier); another workspace than SLACK_TEAM_ID gets 403. A verified request
is acted on once, even when it is replayed within its five minutes to another replica
(Notifier.first_sight). Views stay thin: parse, call one use case, answer.

In production gunicorn serves this app (services/notifier/wsgi.py); `notifier run`
serves it with Werkzeug for the laptop, or only the operations endpoints when
NOTIFIER_SERVE_SLACK is false.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timezone
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import orjson
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import text

from shared.platform.clock import Clock, system_clock

from .actions import FollowUpActions
from .blocks import ACKNOWLEDGE, ADD_NOTE, NOTE_MODAL, RECORD_ACTION, SHOW_CASES, TAKE_OWNERSHIP
from .case_replies import show_cases
from .health import NotReady
from .record_blocks import ACTION_MODAL, CLOSE_ACTION, CLOSE_MODAL, modal_errors, submitted
from .service import Answer, NotAllowed, Notifier
from .settings import NotifierSettings
from .slack import DeliveryError, SlackGateway

log = logging.getLogger("cityscore.notifier.http")

TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"
# ASCII digits only: str.isdigit() and int() also take '９９'. Seconds since 1970.
TIMESTAMP = re.compile(r"[0-9]{1,12}")
# Slack's user ids (U…, W…) go into mentions <@…>: nothing else may.
USER_ID = re.compile(r"[A-Z0-9]{2,32}")


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


def slack_response_url(url: str, slack_base_url: str) -> bool:
    """Whether an interaction's response_url is Slack's: https on Slack's hooks host (hooks.slack.com
    beside slack.com/api/), or the very host SLACK_BASE_URL names (a proxy; the tests' fake Slack).

    The request is signed, so the URL came from Slack; checked all the same, since the notifier
    posts to it: a leaked signing secret must not make it post to hosts inside the city's network.
    """
    try:
        asked, base = urlsplit(url), urlsplit(slack_base_url)
        if (asked.scheme, asked.netloc) == (base.scheme, base.netloc) and asked.netloc:
            return True
        host = (base.hostname or "").removeprefix("api.")
        return asked.scheme == "https" and asked.hostname == f"hooks.{host}" and asked.port is None
    except ValueError:  # an unparseable port or address
        return False


def _json(status: int, body: dict) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


class _EpochSeconds:
    """Our clock in slack_sdk's shape (seconds since the epoch), for its five-minute signature check."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def now(self) -> float:
        return self.clock.now().timestamp()


def create_app(settings: NotifierSettings, notifier: Notifier, gateway: SlackGateway, *,
               metrics: NotifierMetrics | None = None,
               checks: dict[str, Callable[[], bool]] | None = None,
               liveness: Callable[[], dict[str, str]] | None = None,
               clock: Clock = system_clock, slack_routes: bool = True) -> Flask:
    """The notifier's HTTP app; `slack_routes=False` leaves out /slack/ (served elsewhere)."""
    metrics = metrics or NotifierMetrics(notifier)
    checks = dict(checks or {})
    verifier = None
    if settings.slack_signing_secret:
        verifier = SignatureVerifier(settings.slack_signing_secret, clock=_EpochSeconds(clock))

    app = Flask(__name__)
    # A backstop for bodies sent without a Content-Length (chunked): reading stops at the limit.
    app.config["MAX_CONTENT_LENGTH"] = settings.slack_max_body_bytes
    app.extensions["cityscore_notifier"] = {"notifier": notifier, "metrics": metrics}
    # "Show cases" is answered after the click is: Slack waits three seconds for the click's 200,
    # and reading the cases and posting them can take longer on a busy day. Two threads: a few
    # clicks at once queue rather than open connections without bound.
    answering = ThreadPoolExecutor(max_workers=2, thread_name_prefix="show-cases")

    def refuse(endpoint: str, status: int, field: str, error: str) -> Response:
        log.warning("a Slack request was refused", extra={"endpoint": endpoint, "status": status, "field": field,
                                                          "reason": error, "remote": request.remote_addr})
        metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
        return _json(status, {"error": error, "field": field})

    @app.errorhandler(413)
    def too_large(_error) -> Response:
        return refuse(request.path.rsplit("/", 1)[-1], 413, "body",
                      f"the request body is over {settings.slack_max_body_bytes} bytes")

    def verified(endpoint: str) -> tuple[bytes, Response | None]:
        """The body of a request from Slack, or the refusal to answer instead."""
        length = request.content_length
        if length is not None and length > settings.slack_max_body_bytes:
            # Refused on its Content-Length alone: the body is never read.
            return b"", refuse(endpoint, 413, "body", f"the request body ({length} bytes) is over "
                                                      f"{settings.slack_max_body_bytes} bytes")
        if verifier is None:
            return b"", refuse(endpoint, 401, "X-Slack-Signature",
                               "requests from Slack cannot be verified: no signing secret (SLACK_SIGNING_SECRET)")
        stamp = request.headers.get(TIMESTAMP_HEADER, "")
        if not TIMESTAMP.fullmatch(stamp):
            return b"", refuse(endpoint, 401, TIMESTAMP_HEADER, "missing or not a number of seconds")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        body = request.get_data(cache=True)
        if not signature or not verifier.is_valid(body, stamp, signature):
            return body, refuse(endpoint, 401, SIGNATURE_HEADER, "invalid or stale Slack signature")
        if not notifier.first_sight(int(stamp), signature, clock.now().astimezone(timezone.utc)):
            # A replay of a request acted on already: 200 with nothing in it, and nothing done.
            log.warning("a replayed Slack request was ignored", extra={"endpoint": endpoint,
                                                                       "remote": request.remote_addr})
            metrics.requests.labels(endpoint=endpoint, status="replay").inc()
            return body, Response(status=200)
        metrics.requests.labels(endpoint=endpoint, status="200").inc()
        return body, None

    def wrong_team(endpoint: str, team: str | None, field: str) -> Response | None:
        if settings.slack_team_id and team != settings.slack_team_id:
            return refuse(endpoint, 403, field, f"workspace {team or '(none)'} is not this city's "
                                                f"({settings.slack_team_id})")
        return None

    def form(body: bytes) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", errors="replace")).items()}

    def slack_route(rule: str):
        # Without the Slack routes the app answers 404 there: gunicorn serves them instead.
        return app.post(rule) if slack_routes else (lambda view: view)

    @slack_route("/slack/actions")
    def slack_actions() -> Response:
        body, refusal = verified("actions")
        if refusal is not None:
            return refusal
        try:
            payload = orjson.loads(form(body)["payload"])
        except (KeyError, orjson.JSONDecodeError):
            return _json(400, {"error": "expected a form field 'payload' with JSON", "field": "payload"})
        if not isinstance(payload, dict):
            return _json(400, {"error": "expected a JSON object", "field": "payload"})
        refusal = wrong_team("actions", (payload.get("team") or {}).get("id"), "team.id")
        if refusal is not None:
            return refusal
        user = (payload.get("user") or {}).get("id", "")
        if payload.get("type") in ("block_actions", "view_submission") and not USER_ID.fullmatch(str(user)):
            return _json(400, {"error": "not a Slack user id", "field": "user.id"})
        try:
            return act(payload, user)
        except NotAllowed as refused:
            return refuse("actions", 403, "user.id", str(refused))

    def act(payload: dict, user: str) -> Response:
        if payload.get("type") == "block_actions":
            for action in payload.get("actions", []):
                action_id, value = action.get("action_id"), action.get("value", "")
                if action_id not in (ACKNOWLEDGE, TAKE_OWNERSHIP, ADD_NOTE, SHOW_CASES, RECORD_ACTION, CLOSE_ACTION):
                    continue
                if not TIMESTAMP.fullmatch(str(value)):
                    return _json(400, {"error": "the button carries no alert id", "field": "actions.value"})
                alert_id = int(value)
                if action_id in (RECORD_ACTION, CLOSE_ACTION):  # a modal to open (CLOSE_ACTION's value: an action id)
                    desk = FollowUpActions(notifier)
                    opened = desk.action_form(alert_id, user) if action_id == RECORD_ACTION \
                        else desk.close_form(alert_id, user)
                    if opened.modal is None:
                        return _json(200, {"text": opened.text})
                    gateway.open_view(payload.get("trigger_id", ""), opened.modal)
                    log.info("slack action", extra={"action": action_id, "id": alert_id, "user": user})
                    continue
                if action_id == SHOW_CASES:
                    refusal = answer_privately(payload, alert_id, user)
                    if refusal is not None:
                        return refusal
                    continue
                if action_id == ACKNOWLEDGE:
                    result = notifier.acknowledge(alert_id, user)
                elif action_id == TAKE_OWNERSHIP:
                    result = notifier.take_ownership(alert_id, user)
                else:
                    result = notifier.note_form(alert_id, user)
                    if result.note_form is None:  # no such alert, or a data alert (no notes)
                        return _json(200, {"text": result.text})
                    gateway.open_view(payload.get("trigger_id", ""), result.note_form)
                log.info("slack action", extra={"action": action_id, "alert": alert_id, "user": user,
                                                "answer": result.text})
            return Response(status=200)
        if payload.get("type") == "view_submission" and (payload.get("view") or {}).get("callback_id") == NOTE_MODAL:
            view = payload["view"]
            note = (((view.get("state") or {}).get("values") or {}).get("note") or {}).get("text", {}).get("value")
            metadata = view.get("private_metadata", "")
            if not TIMESTAMP.fullmatch(str(metadata)):
                return _json(400, {"error": "the note form carries no alert id", "field": "view.private_metadata"})
            fields = submitted(view)
            result = notifier.add_note(int(metadata), user, note or "", day=fields.get("day"),
                                       public="public" in (fields.get("public") or ()))
            log.info("slack note", extra={"alert": int(metadata), "user": user, "answer": result.text})
            if result.answer is Answer.EMPTY_NOTE:  # shown under the form's field, which stays open
                return _json(200, {"response_action": "errors", "errors": {"note": result.text}})
            return Response(status=200)
        if payload.get("type") == "view_submission" and (payload.get("view") or {}).get("callback_id") in (
                ACTION_MODAL, CLOSE_MODAL):
            view = payload["view"]
            metadata, fields = view.get("private_metadata", ""), submitted(view)
            if not TIMESTAMP.fullmatch(str(metadata)):
                return _json(400, {"error": "the form carries no id", "field": "view.private_metadata"})
            desk = FollowUpActions(notifier)
            if view["callback_id"] == ACTION_MODAL:
                done = desk.record_from_alert(int(metadata), user, fields.get("owner"), fields.get("due"),
                                              fields.get("text"))
                blocks = {"text": "text", "owner": "owner", "due": "due"}
            else:
                done = desk.close(int(metadata), user, fields.get("outcome"))
                blocks = {"outcome": "outcome"}
            log.info("slack form", extra={"form": view["callback_id"], "id": int(metadata), "user": user,
                                          "problems": [str(p) for p in done.problems]})
            if done.problems:  # shown under the form's fields, which stays open
                return _json(200, modal_errors(done.problems, blocks))
            return Response(status=200)
        return Response(status=200)  # other interactions are not ours

    def answer_privately(payload: dict, alert_id: int, user: str) -> Response | None:
        """"Show cases": the cases behind the alert, posted to the click's response_url, which Slack
        shows to `user` only (ephemeral). Reading only, so anyone who sees the alert may ask.

        The click is answered (200) at once and the cases after it, on a worker thread: Slack hears
        back within its three seconds however long the read (bounded by case_replies.READ_TIMEOUT_S)
        and the post take."""
        response_url = payload.get("response_url")
        if not isinstance(response_url, str) or not response_url:
            return _json(400, {"error": "the click carries no response_url to answer to", "field": "response_url"})
        if not slack_response_url(response_url, settings.slack_base_url):
            return refuse("actions", 400, "response_url", "not a Slack response_url (hooks.slack.com or "
                                                          "SLACK_BASE_URL's host)")
        answering.submit(answer_cases, response_url, alert_id, user)
        return None

    def answer_cases(response_url: str, alert_id: int, user: str) -> None:
        try:
            message = show_cases(notifier, alert_id)
            gateway.respond(response_url, message)
        except DeliveryError as failed:
            # Nothing to retry later: the person who clicked sees no answer and may click again.
            log.warning("the cases could not be answered", extra={"alert": alert_id, "user": user,
                                                                  "reason": failed.error})
            return
        except Exception:  # a worker thread's failure would otherwise vanish silently
            log.exception("the cases could not be answered", extra={"alert": alert_id, "user": user})
            return
        log.info("slack action", extra={"action": SHOW_CASES, "alert": alert_id, "user": user,
                                        "answer": message.get("text")})

    @slack_route("/slack/commands")
    def slack_commands() -> Response:
        body, refusal = verified("commands")
        if refusal is not None:
            return refusal
        fields = form(body)
        refusal = wrong_team("commands", fields.get("team_id"), "team_id")
        if refusal is not None:
            return refusal
        return _json(200, notifier.answer_command(fields.get("text", "")))

    @app.get("/healthz")
    def healthz() -> Response:
        # `liveness`: the loops of `notifier run` (consumer, sender), each named with its problem.
        problems = liveness() if liveness is not None else {}
        if problems:
            return _json(503, {"status": "unhealthy", "problems": problems})
        return _json(200, {"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        results, problems = {}, {}
        try:
            with notifier.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            results["database"] = True
        except Exception as exc:  # noqa: BLE001 - readiness is a yes/no question, with its reason
            results["database"] = False
            problems["database"] = f"{type(exc).__name__}: {exc}"[:300]
        for name, check in checks.items():
            try:
                results[name] = bool(check())
            except NotReady as exc:  # the check's own reason, e.g. Slack's token_revoked
                results[name] = False
                problems[name] = str(exc)
            except Exception as exc:  # noqa: BLE001
                results[name] = False
                problems[name] = f"{type(exc).__name__}: {exc}"[:300]
        ready = all(results.values())
        body = {"status": "ready" if ready else "not ready", "checks": results}
        if problems:
            body["problems"] = problems
        return _json(200 if ready else 503, body)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)

    return app
