"""Ingest's use cases, free of Flask: accept a batch of events, replay idempotent requests."""

from __future__ import annotations

import hashlib
import json
import json.scanner
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from shared.core.catalog import Catalog
from shared.core.contract import InvalidEvent, Problem, check_against_catalog, event_to_json, parse_events
from shared.store.tables.ingest import IdempotencyRecord

from .keys import Caller
from .publisher import EventPublisher, PublishFailed


@dataclass
class Answer:
    """An HTTP answer in plain terms: status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


# A refusal lists at most this many problems, with the total: a batch's first problems
# tell a department what to fix, and a 1 MiB body can hold hundreds of thousands of
# them (an answer of megabytes, stored again under its Idempotency-Key).
MAX_PROBLEMS_LISTED = 100


def refusal(status: int, title: str, errors: list[Problem] | None = None, **extra: Any) -> Answer:
    body: dict[str, Any] = {"error": title}
    if errors is not None:
        body["errors"] = [p.as_dict() for p in errors[:MAX_PROBLEMS_LISTED]]
        body["error_count"] = len(errors)
        body["errors_truncated"] = len(errors) > MAX_PROBLEMS_LISTED
    body.update(extra)
    return Answer(status, body)


_WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's own
_scan_value = json.scanner.make_scanner(json.JSONDecoder())


def count_array_items(body: bytes, stop_after: int) -> int | None:
    """How many items the JSON array `body` holds, counting no further than `stop_after` + 1.

    One item is decoded at a time and dropped, so counting a 1 MiB array of 349,000
    empty objects costs about a millisecond and no memory, where validating it built
    every object and every problem (over 500 MB). None when the body is not an array,
    or not JSON at all: validation names the problem then.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    at = _WHITESPACE.match(text, 0).end()
    if text[at:at + 1] != "[":
        return None
    at = _WHITESPACE.match(text, at + 1).end()
    if text[at:at + 1] == "]":
        return 0
    count = 0
    try:
        while True:
            _, at = _scan_value(text, at)
            count += 1
            if count > stop_after:
                return count
            at = _WHITESPACE.match(text, at).end()
            if text[at:at + 1] == "]":
                return count
            if text[at:at + 1] != ",":
                return None
            at = _WHITESPACE.match(text, at + 1).end()
    except (StopIteration, ValueError, RecursionError):
        return None


def accept_events(
    body: bytes, caller: Caller, catalog: Catalog, publisher: EventPublisher, max_batch: int,
    retry_after_s: int = 5, today: date | None = None,
) -> tuple[Answer, dict[str, int]]:
    """Validate a body of one event or an array, and write it to Kafka as a whole.

    `today` is the city's local day (now, unless a test says otherwise): a date more than
    a day after it is a department's mistake and is refused.

    Returns the answer and, when accepted, the number of events per metric (for /metrics).
    """
    # The batch size first: validating builds every event and every problem.
    counted = count_array_items(body, stop_after=max_batch)
    if counted is not None and counted > max_batch:
        return refusal(413, f"at most {max_batch} events per request (INGEST_MAX_BATCH); this array holds more",
                       max_events=max_batch), {}
    try:
        events = parse_events(body)
    except InvalidEvent as exc:
        return refusal(422, "invalid events", exc.problems), {}
    if not events:
        return refusal(422, "invalid events", [Problem("", "the array holds no events")]), {}
    if len(events) > max_batch:  # an array the counter could not read but validation could
        return refusal(413, f"at most {max_batch} events per request (INGEST_MAX_BATCH), got {len(events)}",
                       max_events=max_batch), {}
    single = not body.lstrip().startswith(b"[")

    problems: list[Problem] = []
    forbidden: list[Problem] = []
    for index, event in enumerate(events):
        where = None if single else index
        for problem in check_against_catalog(event, catalog, today or datetime.now(catalog.zone).date()):
            problems.append(Problem(problem.field, problem.reason, where))
        metric = catalog.by_id.get(event.metric)
        if metric is not None and metric.department != caller.department:
            forbidden.append(Problem("metric", f"metric {metric.id!r} belongs to {metric.department!r}, "
                                     f"not to this key's department {caller.department!r}", where))
        if event.department is not None and event.department != caller.department:
            forbidden.append(Problem("department", f"is {event.department!r} but this key belongs to "
                                     f"{caller.department!r}", where))
    if problems:
        return refusal(422, "invalid events", problems), {}
    if forbidden:
        return refusal(403, "not allowed for this key", forbidden), {}

    records = []
    per_metric: dict[str, int] = {}
    for event in events:
        stamped = event.model_copy(update={"department": caller.department})
        records.append((event.metric.encode(), event_to_json(stamped)))
        per_metric[event.metric] = per_metric.get(event.metric, 0) + 1
    try:
        publisher.publish(records)
    except PublishFailed as exc:
        answer = refusal(503, "events not accepted: the event log is unavailable, retry later", detail=str(exc))
        answer.headers["Retry-After"] = str(retry_after_s)
        return answer, {}
    return Answer(202, {"accepted": len(events), "event_ids": [e.event_id for e in events]}), per_metric


# -- idempotency -------------------------------------------------------------------


def request_hash(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


def replay(session: Session, caller: Caller, idempotency_key: str, body: bytes) -> Answer | None:
    """The stored answer for a retried request, a 422 for a reused key, or None if it is new."""
    record = session.get(IdempotencyRecord, (caller.key_id, idempotency_key))
    if record is None:
        return None
    if record.request_hash != request_hash(body):
        return refusal(422, "Idempotency-Key was already used with a different body",
                      [Problem("Idempotency-Key", "reused with a different request body")])
    answer = Answer(record.status, orjson.loads(record.response_body))
    answer.headers["Idempotent-Replayed"] = "true"
    return answer


def remember(sessions: sessionmaker, caller: Caller, idempotency_key: str, body: bytes, answer: Answer) -> None:
    """Keep a final answer (2xx or 4xx) so a retry gets it back; 5xx and 429 may change on retry."""
    if answer.status >= 500 or answer.status == 429:
        return
    with sessions() as session:
        session.add(IdempotencyRecord(api_key_id=caller.key_id, idempotency_key=idempotency_key,
                                      request_hash=request_hash(body), status=answer.status,
                                      response_body=orjson.dumps(answer.body).decode()))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()  # a concurrent retry stored it first; its answer stands


def catalog_for(catalog: Catalog, department: str) -> dict[str, Any]:
    """The metrics a department's key may send, with the event types and fields each takes."""
    from shared.core.contract import event_json_schema

    definitions = event_json_schema()["$defs"]
    type_model = {"case": "CaseEvent", "measurement": "MeasurementEvent", "incident": "IncidentEvent",
                  "tally": "TallyEvent"}
    metrics = []
    for metric in catalog.metrics_of(department):
        metrics.append({
            "id": metric.id,
            "name": metric.name,
            "description": metric.description,
            "kind": metric.kind.value,
            "target": metric.latest_target,  # a target history's newest
            "unit": metric.unit,
            "event_types": {
                event_type: {
                    "required": definitions[type_model[event_type]].get("required", []),
                    "fields": sorted(definitions[type_model[event_type]]["properties"]),
                }
                for event_type in metric.event_types
            },
            **({"threshold": metric.threshold} if metric.threshold is not None else {}),
            **({"sla": metric.sla.describe()} if metric.sla is not None else {}),
            # No SLA in the catalog: the department's own due_at on every case decides.
            **({"sla": "each case's own due_at (required)"} if metric.due_from_case else {}),
            **({"min_value": metric.min_value} if metric.min_value is not None else {}),
            **({"max_value": metric.max_value} if metric.max_value is not None else {}),
        })
    return {"city": catalog.city, "timezone": catalog.timezone, "department": department, "metrics": metrics}
