"""A department's client for the ingest API: batches, retries, and an honest tally.

Retries 429 and 503 (and dropped connections) with backoff, honouring Retry-After.
A batch refused for some bad events (403, 422 with errors naming their indexes) is sent
again without them, so one bad event never holds back the good ones; every refusal is kept
with its reason, and a refusal of the request as a whole is marked `whole_batch`. Each batch
carries an Idempotency-Key digested from its whole body.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry


@dataclass
class Refusal:
    event_id: str
    status: int
    reasons: list[str]
    # True when ingest refused the request as a whole (no error names this event's index: a
    # refused key, an Idempotency-Key reused, retries exhausted): not the event's own fault, so
    # a sender that keeps a cursor must not pass over it.
    whole_batch: bool = False


@dataclass
class SendReport:
    accepted: int = 0
    refused: list[Refusal] = field(default_factory=list)
    requests: int = 0

    @property
    def refused_count(self) -> int:
        return len(self.refused)


class IngestClient:
    def __init__(self, base_url: str, api_key: str, batch_size: int = 500, retries: int = 8,
                 backoff_s: float = 0.5, timeout_s: float = 30.0):
        self.url = base_url.rstrip("/") + "/v1/events"
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.session = requests.Session()
        retry = Retry(
            total=retries, connect=retries, read=retries, status=retries,
            status_forcelist=(429, 502, 503, 504),
            allowed_methods=frozenset({"POST"}),  # safe: every request carries an Idempotency-Key
            backoff_factor=backoff_s, backoff_max=30, respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.session.headers.update({"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})

    def post_batch(self, events: list[dict]) -> requests.Response:
        body = orjson.dumps(events)
        headers = {"Idempotency-Key": idempotency_key(body)}
        return self.session.post(self.url, data=body, headers=headers, timeout=self.timeout_s)

    def send(self, events: Iterable[dict], report: SendReport | None = None,
             progress: Callable[[int], None] | None = None) -> SendReport:
        report = report or SendReport()
        batch: list[dict] = []
        for event in events:
            batch.append(event)
            if len(batch) >= self.batch_size:
                self._send(batch, report)
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            self._send(batch, report)
            if progress:
                progress(len(batch))
        return report

    def _send(self, batch: list[dict], report: SendReport) -> None:
        while batch:
            report.requests += 1
            response = self.post_batch(batch)
            if response.status_code == 202:
                report.accepted += len(batch)
                return
            try:
                body = response.json()
            except ValueError:
                body = {"error": response.text[:200]}
            errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
            named = {e["index"] for e in errors if isinstance(e.get("index"), int) and 0 <= e["index"] < len(batch)}
            if response.status_code in (403, 422) and named:
                # The events the errors name are refused for their own reasons (the contract, a
                # metric of another department): set them aside and send the rest again.
                for index in sorted(named):
                    reasons = [f"{e.get('field')}: {e.get('reason')}" for e in errors if e.get("index") == index]
                    report.refused.append(Refusal(str(batch[index].get("event_id")), response.status_code, reasons))
                batch = [event for index, event in enumerate(batch) if index not in named]
                continue
            # Anything else refuses the batch as a whole (401, 413, an Idempotency-Key reused with
            # another body, retries exhausted, ...): no event's own refusal.
            reason = body.get("error", f"HTTP {response.status_code}")
            reasons = [reason] + [f"{e.get('field')}: {e.get('reason')}" for e in errors]
            for event in batch:
                report.refused.append(Refusal(str(event.get("event_id")), response.status_code, reasons,
                                              whole_batch=True))
            return


def idempotency_key(body: bytes) -> str:
    """One key per batch content, from a digest of the whole body: a retry after a lost answer
    is recognised, not written twice, and two different batches never share a key."""
    return uuid.uuid5(uuid.NAMESPACE_URL, hashlib.sha256(body).hexdigest()).hex


class DepartmentRouter:
    """Sends each event with the key of the department that owns its metric.

    A city-wide export (Boston's 311 cases span public works, transportation and
    parks) is sent with several department keys; each key's GET /v1/catalog says
    which metrics it may send. Events no key may send are refused here, by reason.
    """

    def __init__(self, base_url: str, api_keys: list[str], batch_size: int = 500, retries: int = 8,
                 backoff_s: float = 0.5):
        self.clients: dict[str, IngestClient] = {}
        self.metric_client: dict[str, IngestClient] = {}
        for key in api_keys:
            client = IngestClient(base_url, key, batch_size=batch_size, retries=retries, backoff_s=backoff_s)
            response = client.session.get(base_url.rstrip("/") + "/v1/catalog", timeout=client.timeout_s)
            if response.status_code != 200:
                raise ValueError(f"API key {key[:16]}…: GET /v1/catalog answered {response.status_code}")
            catalog = response.json()
            self.clients[catalog["department"]] = client
            for metric in catalog["metrics"]:
                self.metric_client[metric["id"]] = client

    def send(self, events: Iterable[dict], progress: Callable[[int], None] | None = None) -> SendReport:
        report = SendReport()
        pending: dict[int, list[dict]] = {}
        for event in events:
            client = self.metric_client.get(event.get("metric", ""))
            if client is None:
                report.refused.append(Refusal(str(event.get("event_id")), 0,
                                              [f"metric: no API key given for {event.get('metric')!r}"]))
                continue
            batch = pending.setdefault(id(client), [])
            batch.append(event)
            if len(batch) >= client.batch_size:
                client._send(batch, report)
                if progress:
                    progress(len(batch))
                pending[id(client)] = []
        for client in self.clients.values():
            batch = pending.get(id(client)) or []
            if batch:
                client._send(batch, report)
                if progress:
                    progress(len(batch))
        return report
