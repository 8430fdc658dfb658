"""Open311 GeoReport v2 requests as feed rows, the windows they are asked for in, and the pull's cursor.

Pure (no I/O): shared/feeds/open311.py does the HTTP and files; the row rule that turns a
request into a case event is the feeds' one (shared/core/feed_rows.py), fed a request
flattened into a mapping of field name to text.

- Windows: GeoReport v2 filters `requests.json` on `requested_datetime` between `start_date`
  and `end_date`, a span of at most 90 days, so a longer period is asked for in consecutive
  windows of at most 90 days. A window whose answer may have been cut at the endpoint's limit
  (1,000 requests by default, when it does not page) is asked for again in two halves.
- The cursor of `cityscore pull open311`: the newest version (the feed's version column, else
  updated_datetime, else requested_datetime, read by the feed's TimeParser) and id among the
  requests whose events ingest accepted, with what was sent of the versions in an overlap
  before it (request id -> version and digest). Each cycle sends the requests after the
  cursor and those in the overlap that are not as they were sent: a request a cycle did not
  see (paging shifted, the endpoint lagged, a close back-dated) is sent once it shows, if its
  version is within the overlap of the cursor; a restart sends nothing twice.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from shared.core.feed_rows import TimeParser

# The fields of a GeoReport v2 request (city-data.md). A JSON request leaves out a field it
# has no value for, so every one of these is a "column" of every request, blank when absent.
OPEN311_FIELDS = (
    "service_request_id", "status", "status_notes", "service_name", "service_code", "description",
    "agency_responsible", "service_notice", "requested_datetime", "updated_datetime", "expected_datetime",
    "address", "address_id", "zipcode", "lat", "long", "media_url",
)
# Derived from the `notes[]` history extension: the time of the (last) note of type `closed`.
CLOSED_NOTE = "notes.closed"
# Prefix of the `extended_attributes` extension's fields (channel, ward, duplicate, parent_service_request_id).
EXTENDED = "extended_attributes."

MAX_WINDOW = timedelta(days=90)
# The spec's default limit when a window holds more requests and the endpoint does not page.
DEFAULT_LIMIT = 1000
_UTC = timezone.utc


def windows(start: datetime, end: datetime, span: timedelta = MAX_WINDOW) -> list[tuple[datetime, datetime]]:
    """[start, end) in consecutive windows of at most `span`, oldest first (none when end <= start)."""
    if span <= timedelta(0):
        raise ValueError("span: must be longer than zero")
    out = []
    at = start
    while at < end:
        upto = min(at + span, end)
        out.append((at, upto))
        at = upto
    return out


def halves(start: datetime, end: datetime) -> list[tuple[datetime, datetime]] | None:
    """A window split in two (to ask again when its answer may have been cut); None below a second."""
    if end - start < timedelta(seconds=2):
        return None
    middle = start + (end - start) / 2
    middle = middle.replace(microsecond=0)
    return [(start, middle), (middle, end)]


def stamp(moment: datetime) -> str:
    """A window bound as the endpoint is asked for it: ISO 8601 in UTC with a Z."""
    return moment.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def flatten(request: Mapping[str, object]) -> dict[str, str]:
    """One request as a row: its fields as text, `extended_attributes` as `extended_attributes.NAME`,
    and the time of its `closed` note (the `notes[]` extension) as `notes.closed`."""
    row = {name: _text(value) for name, value in request.items() if not isinstance(value, (dict, list))}
    extended = request.get("extended_attributes")
    if isinstance(extended, Mapping):
        for name, value in extended.items():
            if not isinstance(value, (dict, list)):
                row[EXTENDED + str(name)] = _text(value)
    notes = request.get("notes")
    if isinstance(notes, list):
        closes = [note for note in notes if isinstance(note, Mapping)
                  and _text(note.get("type")).strip().casefold() == "closed" and note.get("datetime")]
        if closes:
            row[CLOSED_NOTE] = _text(closes[-1]["datetime"])
    return row


def requests_of(document: object) -> list[Mapping[str, object]]:
    """The requests of a requests.json answer: a list, or (some cities) an object holding one.

    Raises ValueError, saying what was found, for anything else."""
    if isinstance(document, Mapping):
        for key in ("service_requests", "requests"):
            if isinstance(document.get(key), list):
                document = document[key]
                break
        else:
            raise ValueError(f"expected a list of service requests, got an object with {sorted(document)[:5]}")
    if not isinstance(document, list):
        raise ValueError(f"expected a list of service requests, got {type(document).__name__}")
    return [item for item in document if isinstance(item, Mapping)]


def request_key(row: Mapping[str, str]) -> str:
    return (row.get("service_request_id") or "").strip()


def parse_instant(text: str) -> datetime | None:
    """An ISO 8601 time with an offset in UTC; None if it is not one. Only for the pull's state
    file, which writes its cursor so; a request's times are read by the feed's TimeParser."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace(" ", "T", 1) if re.match(r"\d{4}-\d\d-\d\d ", text) else text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(_UTC)


Version = Callable[[Mapping[str, str]], "datetime | None"]


def versions_read_by(parse: Callable[[str], "datetime | None"]) -> Version:
    """A request's version (when it last changed: updated_datetime, else requested_datetime for a
    request never updated) read by `parse`, the feed's reading of its times (shared/feeds/open311.py
    Open311Rows.version_of), so that the version and the events agree on what a time means."""

    def version(row: Mapping[str, str]) -> datetime | None:
        for name in ("updated_datetime", "requested_datetime"):
            text = (row.get(name) or "").strip()
            if text:
                moment = parse(text)
                if moment is not None:
                    return moment
        return None

    return version


_UTC_ZONE = ZoneInfo("UTC")
# Without a feed: the feeds' time rule with times lacking an offset taken as UTC.
version_of: Version = versions_read_by(TimeParser(_UTC_ZONE, _UTC_ZONE))


def latest_versions(rows: Iterable[dict[str, str]], version: Version = version_of) -> list[dict[str, str]]:
    """One row per request id (its latest version) in the order first seen: a request read twice
    (two windows sharing a bound, or status=open then status=closed while it closed) counts once.
    Rows without an id are kept, each on its own (the row rule skips them as `bad case id`)."""
    kept: dict[str, dict[str, str]] = {}
    out: list[dict[str, str]] = []
    for row in rows:
        key = request_key(row)
        if not key:
            out.append(row)
            continue
        earlier = kept.get(key)
        if earlier is None:
            kept[key] = row
            out.append(row)
            continue
        old, new = version(earlier), version(row)
        if new is not None and (old is None or new > old):
            earlier.clear()
            earlier.update(row)
    return out


@dataclass(frozen=True, order=True)
class Cursor:
    """The last request sent: its version (UTC) and id. Requests are sent in this order."""

    version: datetime
    case_id: str

    def as_dict(self) -> dict[str, str]:
        return {"version": self.version.astimezone(_UTC).isoformat(), "case_id": self.case_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "Cursor":
        version = parse_instant(str(data.get("version", "")))
        case_id = data.get("case_id")
        if version is None or not isinstance(case_id, str):
            raise ValueError(f"cursor: expected {{version: ISO time with an offset, case_id: text}}, got {dict(data)}")
        return cls(version, case_id)


def request_digest(row: Mapping[str, str]) -> str:
    """A short digest of everything a request said (its fields as read), to tell whether a
    request re-read in the pull's overlap is the one already sent."""
    said = "\x1e".join(f"{name}\x1f{value}" for name, value in sorted(row.items()))
    return hashlib.blake2b(said.encode(), digest_size=8).hexdigest()


# What the pull sent in its overlap: request id -> (its version, request_digest of it).
Sent = Mapping[str, "tuple[datetime, str]"]


def to_send(rows: Iterable[dict[str, str]], cursor: Cursor | None, version: Version = version_of, *,
            sent: Sent | None = None, overlap: timedelta = timedelta(0)) -> list[tuple[Cursor, dict[str, str]]]:
    """The requests still to send, in (version, id) order, each with its place in that order.

    Without `sent`: those after the cursor (a strict high-water mark). With `sent`, what the
    pull already sent of the versions from `overlap` before the cursor on: also every request
    whose version is at or after the cursor's version minus `overlap` and which is not in
    `sent` as it is now (a request a cycle did not see, one with an equal version and a lower
    id read late, a close back-dated by up to `overlap`, a request changed without a newer
    version). Versions before that are never sent again.

    A request without an id or a readable version cannot be placed in that order: it is left
    out (the row rule would skip it anyway, for want of an id or an open time)."""
    floor = cursor.version - overlap if cursor is not None and sent is not None else None
    placed = []
    for row in latest_versions(rows, version):
        key, changed = request_key(row), version(row)
        if not key or changed is None:
            continue
        at = Cursor(changed.astimezone(_UTC), key)
        if cursor is None or at > cursor:
            placed.append((at, row))
        elif floor is not None and at.version >= floor:
            earlier = sent.get(key)  # type: ignore[union-attr]
            if earlier is None or earlier[1] != request_digest(row):
                placed.append((at, row))
    placed.sort(key=lambda item: item[0])
    return placed


def kept_in_overlap(sent: Sent, cursor: Cursor, overlap: timedelta) -> dict[str, tuple[datetime, str]]:
    """The entries of `sent` the next cycle still compares with: versions from the overlap on."""
    floor = cursor.version - overlap
    return {key: entry for key, entry in sent.items() if entry[0] >= floor}


def backoff_delay(failures: int, first: float, cap: float) -> float:
    """Seconds to wait after `failures` failures in a row: first, 2 x first, 4 x first … at most cap."""
    if failures <= 0:
        return 0.0
    return min(cap, first * 2 ** min(failures - 1, 60))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str) -> float:
    """'15m', '30s', '2h', '90d', '500ms' or plain seconds, as seconds. ValueError names the text."""
    match = _DURATION.fullmatch(str(text).strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration (e.g. 15m, 30s, 2h, 90d)")
    return float(match[1]) * _UNIT[match[2]]
