"""`cityscore pull open311`: a city's Open311 endpoint flowing into ingest, restart-safe.

Every cycle (`--every`, 15 minutes by default) reads the requests requested in the last
`--lookback` (90 days by default; GeoReport v2 can only filter on requested_datetime, so an
update to an older request is seen while the request is within the look-back) and sends to
ingest, in (version, id) order (shared/core/open311.py: the feed's version column, else
updated_datetime, else requested_datetime), those after the cursor and those whose version is
within `--overlap` (1 day) before it and which were not sent as they are now: a request a cycle
did not see below the cursor (paging shifted, the endpoint lagged, an equal version with a
lower id shown late, a close back-dated) is sent once it shows. Events go in batches through
the importers' row rule and DepartmentRouter (each event with its department's key, an
Idempotency-Key per batch).

The cursor, and what was sent in its overlap (request id -> version and a digest of the
request), are written to the state file (atomically: a temporary file, fsync, rename) only
after ingest accepted the batch, so a pull killed at any moment resends at most the batch in
flight: the same requests, hence the same events and the same Idempotency-Keys, which ingest
answers from its record without writing them again. A request updated later is sent again;
its event differs when anything the event says or its version changed (the event id is a
digest of them, shared/core/feed_rows.py), and the new version replaces the earlier one
through its case_id.

When the endpoint or ingest fails the cycle stops where it is (the cursor stays at the last
accepted batch) and the next one starts after an exponential back-off (`--backoff`, doubling,
at most `--backoff-max`), each failure logged with the wait.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence

import orjson
import requests

from shared.core.catalog import CaseFeed, Catalog
from shared.core.feed_rows import FeedFormatError
from shared.core.open311 import (
    Cursor,
    backoff_delay,
    flatten,
    kept_in_overlap,
    parse_instant,
    request_digest,
    to_send,
)
from shared.feeds.csv_feed import ImportSummary, ingest_dicts
from shared.feeds.open311 import Open311Client, Open311Error, Open311Rows

log = logging.getLogger("cityscore.pull")

# 2: the state keeps what was sent in the overlap ("sent"); a version 1 file has none, so its
# first cycle sends the overlap's requests again (the same events: duplicates downstream).
STATE_VERSION = 2
# Refusals that are the events' own are logged and passed over, or the pull would stop on them
# for ever: those whose error names the event's index in the batch (the contract, a metric of
# another department: 403, 422) and those the router makes itself (0: no key given may send the
# metric). A refusal of the batch as a whole (`whole_batch`: a refused key, an Idempotency-Key
# reused with another body, retries exhausted) fails the batch: the cursor stays, and the next
# cycle tries again after the back-off.


class StateError(ValueError):
    """The state file cannot be used (unreadable, or another endpoint's or feed's)."""


class IngestFailed(RuntimeError):
    """Ingest did not accept a batch (down, overloaded, the key refused): try again later."""


@dataclass
class StateFile:
    """The pull's cursor on disk, for one endpoint and feed."""

    path: Path
    endpoint: str
    feed: str

    def load(self) -> Cursor | None:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            raise StateError(f"{self.path}: cannot read the pull's state ({exc})") from None
        if not isinstance(data, dict):
            raise StateError(f"{self.path}: not a pull state (expected a JSON object)")
        for name, expected in (("endpoint", self.endpoint), ("feed", self.feed)):
            if data.get(name) != expected:
                raise StateError(f"{self.path}: {name} is {data.get(name)!r}, this pull's is {expected!r}; "
                                 "give each endpoint and feed a state file of its own")
        if data.get("cursor") is None:
            return None
        try:
            return Cursor.from_dict(data["cursor"])
        except (ValueError, TypeError) as exc:
            raise StateError(f"{self.path}: {exc}") from None

    def sent(self) -> dict[str, tuple[datetime, str]]:
        """What was sent in the overlap before the cursor: request id -> (version, digest)."""
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, orjson.JSONDecodeError) as exc:
            raise StateError(f"{self.path}: cannot read the pull's state ({exc})") from None
        out = {}
        try:
            for key, (version, digest) in (data.get("sent") or {}).items():
                moment = parse_instant(version)
                if moment is None or not isinstance(digest, str):
                    raise ValueError(version)
                out[key] = (moment, digest)
        except (ValueError, TypeError, AttributeError):
            raise StateError(f"{self.path}: sent: expected {{request id: [ISO time with an offset, digest]}}") from None
        return out

    def save(self, cursor: Cursor, sent: Mapping[str, tuple[datetime, str]] | None = None) -> None:
        """Write the cursor (and what was sent in its overlap) so that a crash leaves the old state
        or the new one, never a torn file."""
        body = orjson.dumps({"version": STATE_VERSION, "endpoint": self.endpoint, "feed": self.feed,
                             "cursor": cursor.as_dict(),
                             "sent": {key: [version.astimezone(timezone.utc).isoformat(), digest]
                                      for key, (version, digest) in (sent or {}).items()},
                             "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                            option=orjson.OPT_INDENT_2)
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=folder)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        try:  # the rename itself survives a power cut once the folder is synced
            directory = os.open(folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(directory)
        except OSError:
            pass
        finally:
            os.close(directory)


@dataclass
class CycleReport:
    read: int = 0  # requests read (distinct)
    new: int = 0  # of them after the cursor: new or updated
    batches: int = 0  # batches ingest accepted
    accepted: int = 0  # events ingest accepted
    refused: int = 0  # events refused for their own reasons
    summary: ImportSummary = field(default_factory=ImportSummary)


class Open311Pull:
    """One endpoint and feed into ingest, cycle after cycle, with its cursor in a state file."""

    def __init__(self, client: Open311Client, catalog: Catalog, feeds: Sequence[tuple[str, CaseFeed]],
                 router_for: Callable[[], object], state: StateFile, *, lookback_s: float, batch_size: int = 200,
                 overlap_s: float = 86400.0, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.client = client
        self.catalog = catalog
        self.feeds = feeds
        self.router_for = router_for
        self.router = None
        self.state = state
        self.lookback = timedelta(seconds=lookback_s)
        self.batch_size = batch_size
        self.clock = clock
        self.cursor = state.load()
        # Versions from `overlap` before the cursor are read again and compared with what was
        # sent of them: a request a cycle missed below the cursor is not lost.
        self.overlap = timedelta(seconds=overlap_s)
        self.sent = state.sent()
        self.failures = 0
        self.cycles = 0
        self.last_success: datetime | None = None

    def cycle(self) -> CycleReport:
        """Read the look-back, send what is after the cursor batch by batch, saving the cursor after
        each accepted batch. Raises Open311Error or IngestFailed where it stopped."""
        report = CycleReport()
        now = self.clock()
        read = [flatten(request) for request in self.client.fetch(now - self.lookback, now)]
        try:
            rows = Open311Rows(self.catalog, self.feeds, read, report.summary)
        except FeedFormatError as exc:
            raise Open311Error(f"the requests do not fit the feed: {exc}") from None
        # Versions by the feed's time rule: an endpoint writing local times without an offset is
        # read as `import open311` reads it.
        pending = to_send(read, self.cursor, rows.version_of, sent=self.sent, overlap=self.overlap)
        report.read, report.new = len({row.get("service_request_id") for row in read}), len(pending)
        if not pending:
            log.info("nothing new", extra={"read": report.read, "cursor": self._cursor_text()})
            return report
        for at in range(0, len(pending), self.batch_size):
            batch = pending[at: at + self.batch_size]
            events = list(ingest_dicts(rows.events(row for _, row in batch)))
            accepted, refused = self._send(events) if events else (0, [])
            # The batch is sorted, but requests from the overlap lie before the cursor.
            last = batch[-1][0] if self.cursor is None else max(self.cursor, batch[-1][0])
            sent = dict(self.sent)
            for at, row in batch:
                sent[at.case_id] = (at.version, request_digest(row))
            sent = kept_in_overlap(sent, last, self.overlap)
            self.state.save(last, sent)
            self.cursor, self.sent = last, sent
            report.batches += 1
            report.accepted += accepted
            report.refused += len(refused)
            log.info("sent to ingest", extra={
                "requests": len(batch), "events": len(events), "accepted": accepted, "refused": len(refused),
                "event_ids": [event["event_id"] for event in events][:50], "cursor": self._cursor_text()})
            for refusal in refused[:20]:
                log.warning("ingest refused an event", extra={"event_id": refusal.event_id, "status": refusal.status,
                                                              "reasons": "; ".join(refusal.reasons)})
        return report

    def _send(self, events: list[dict]):
        try:
            if self.router is None:
                self.router = self.router_for()
            sent = self.router.send(events)  # type: ignore[attr-defined]
        except (requests.RequestException, ValueError) as exc:
            self.router = None  # ask GET /v1/catalog again when ingest is back
            raise IngestFailed(f"ingest: {exc.__class__.__name__}: {exc}") from None
        failed = [refusal for refusal in sent.refused if refusal.whole_batch]
        if failed:
            self.router = None  # a key may have been replaced: read the keys' catalogs again
            reasons = sorted({f"HTTP {refusal.status}: {'; '.join(refusal.reasons)}" for refusal in failed})
            raise IngestFailed(f"ingest did not accept {len(failed)} of {len(events)} events ({', '.join(reasons)[:300]})")
        return sent.accepted, sent.refused

    def run(self, stop: threading.Event, every_s: float, backoff_s: float, backoff_max_s: float,
            cycles: int = 0) -> int:
        """Cycle until `stop` is set (or `cycles` cycles succeeded, when given). Returns the exit status."""
        done = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                report = self.cycle()
            except (Open311Error, IngestFailed) as exc:
                self.failures += 1
                delay = backoff_delay(self.failures, backoff_s, backoff_max_s)
                log.warning("pull failed; trying again after a back-off", extra={
                    "error": str(exc)[:500], "failures": self.failures, "retry_in_s": round(delay, 3),
                    "cursor": self._cursor_text()})
                stop.wait(delay)
                continue
            self.failures = 0
            self.cycles += 1
            self.last_success = self.clock()
            done += 1
            log.info("pull cycle done", extra={
                "read": report.read, "new_or_updated": report.new, "batches": report.batches,
                "accepted": report.accepted, "refused": report.refused, "skipped": dict(report.summary.skipped),
                "cursor": self._cursor_text(), "seconds": round(time.monotonic() - started, 3)})
            if cycles and done >= cycles:
                return 0
            stop.wait(max(0.0, every_s - (time.monotonic() - started)))
        return 0

    def _cursor_text(self) -> str | None:
        return None if self.cursor is None else f"{self.cursor.as_dict()['version']} {self.cursor.case_id}"
