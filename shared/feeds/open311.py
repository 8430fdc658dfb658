"""A city's Open311 GeoReport v2 endpoint (or a saved answer) -> case events, by a feed of the catalog.

`cityscore import open311` and `cityscore pull open311` read through here (docs/feeds.md,
"Open311"). The endpoint is asked for `requests.json` in windows of at most 90 days on
`requested_datetime` (shared/core/open311.py), once with `status=open` and once with
`status=closed`, page by page with the `page`/`page_size` extension when the endpoint offers
it, until an empty page (page 2 is asked for after any non-empty page 1: an endpoint may cap
page_size below ours). An endpoint that does not page answers at most its limit (1,000 by
default): a window whose answer is that long may have been cut, so it is asked for again in
two halves.

Each request is flattened into a row (shared/core/open311.flatten) and goes through the
feeds' one row rule (shared/core/feed_rows.py) and the CSV importer's counting (csv_feed.tally),
so a request becomes the same event whether it came from a CSV export, a saved answer or the
endpoint. A request read twice (a window bound, or one that closed between the open and
closed queries) counts once, in its latest version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from shared.core.catalog import CaseFeed, Catalog
from shared.core.contract import CaseEvent
from shared.core.feed_rows import FeedFormatError, FeedRows, choose_feed, named_columns
from shared.core.open311 import (
    CLOSED_NOTE,
    DEFAULT_LIMIT,
    EXTENDED,
    OPEN311_FIELDS,
    flatten,
    halves,
    latest_versions,
    requests_of,
    stamp,
    versions_read_by,
    windows,
)
from shared.feeds.csv_feed import ImportSummary, tally

log = logging.getLogger("cityscore.open311")

STATUSES = ("open", "closed")
# Chicago caps page_size at 500: ask for no more, so one setting fits every endpoint that pages.
PAGE_SIZE = 500
# (connect, read) seconds: an endpoint that does not answer is retried, then reported.
TIMEOUT = (10.0, 120.0)


class Open311Error(RuntimeError):
    """The endpoint could not be read (after retries): an HTTP error, a timeout, not JSON."""


@dataclass
class FetchStats:
    windows: int = 0  # windows of at most 90 days asked for (halves counted too)
    pages: int = 0  # requests.json answers read
    requests: int = 0  # requests in those answers, repeats included
    halved: int = 0  # windows asked again in halves (an answer cut at the endpoint's limit)
    paging: bool | None = None  # whether the endpoint pages (None: never needed to know)

    def line(self) -> str:
        paging = {True: "pages with page/page_size", False: "does not page", None: "no second page needed"}[self.paging]
        halved = f", {self.halved} halved" if self.halved else ""
        return (f"{self.requests} requests read in {self.pages} answers for {self.windows} windows "
                f"of at most 90 days{halved} (the endpoint {paging})")


def requests_url(endpoint: str) -> str:
    """The requests.json URL of an endpoint given as its base (…/open311/v2) or as that URL itself."""
    base = endpoint.split("?", 1)[0].rstrip("/")
    return base if base.endswith(".json") else base + "/requests.json"


class Open311Client:
    """Reads requests.json: windows of at most 90 days, open and closed, paged when offered.

    HTTP 429, 5xx and dropped connections are retried with exponential back-off (urllib3's
    Retry); what still fails raises Open311Error naming the URL and the answer.
    """

    def __init__(self, endpoint: str, *, params: Mapping[str, str] | None = None, page_size: int = PAGE_SIZE,
                 retries: int = 4, backoff_s: float = 0.5, timeout: tuple[float, float] = TIMEOUT,
                 limit: int = DEFAULT_LIMIT):
        self.url = requests_url(endpoint)
        self.params = dict(params or {})  # e.g. jurisdiction_id, api_key
        self.page_size = page_size
        self.limit = limit
        self.timeout = timeout
        self.stats = FetchStats()
        self.session = requests.Session()
        retry = Retry(total=retries, connect=retries, read=retries, status=retries,
                      status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset({"GET"}),
                      backoff_factor=backoff_s, backoff_max=30, respect_retry_after_header=True,
                      raise_on_status=False)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.session.headers["Accept"] = "application/json"

    def fetch(self, start: datetime, end: datetime) -> Iterator[Mapping[str, object]]:
        """Every request requested in [start, end), open and closed (repeats possible: dedupe by id)."""
        for window in windows(start, end):
            for status in STATUSES:
                yield from self._window(window, status)

    def _window(self, window: tuple[datetime, datetime], status: str) -> Iterator[Mapping[str, object]]:
        self.stats.windows += 1
        first = self._get(window, status, 1)
        if not first:
            return
        if self.stats.paging is not False:
            # Page 2 is asked for even after a short page 1: an endpoint may cap page_size below
            # ours (answering 100 of 500) and a short page says nothing about what is left.
            second = self._get(window, status, 2)
            if not _same_page(first, second):
                self.stats.paging = True
                yield from first
                page, previous, answer = 2, first, second
                # Until an empty page: only that says the window is read (a page shorter than
                # asked may be the endpoint's own size). A page repeating the one before it is
                # an endpoint that stopped paging: nothing more to read.
                while answer and not _same_page(previous, answer):
                    yield from answer
                    page += 1
                    previous, answer = answer, self._get(window, status, page)
                return
            self.stats.paging = False  # page 2 is page 1 again: the endpoint ignores `page`
        if len(first) < self.limit:
            yield from first  # not paging, and under the limit: all of it
            return
        split = halves(*window)
        if split is None:
            log.warning("a one-second window still holds the endpoint's limit: some requests may be missed",
                        extra={"start": stamp(window[0]), "end": stamp(window[1]), "status": status})
            yield from first
            return
        self.stats.halved += 1
        for half in split:
            yield from self._window(half, status)

    def _get(self, window: tuple[datetime, datetime], status: str, page: int) -> list[Mapping[str, object]]:
        params = {**self.params, "start_date": stamp(window[0]), "end_date": stamp(window[1]), "status": status,
                  "page": str(page), "page_size": str(self.page_size)}
        try:
            response = self.session.get(self.url, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise Open311Error(f"{self.url}: {exc.__class__.__name__}: {exc}") from None
        self.stats.pages += 1
        if response.status_code != 200:
            raise Open311Error(f"{response.url} answered HTTP {response.status_code}: {response.text[:200]!r}")
        try:
            found = requests_of(orjson.loads(response.content))
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise Open311Error(f"{response.url}: not a requests.json answer ({exc})") from None
        self.stats.requests += len(found)
        return found


def _same_page(first: Sequence[Mapping[str, object]], second: Sequence[Mapping[str, object]]) -> bool:
    """Whether page 2 repeats page 1 (an endpoint that ignores `page` answers page 1 again)."""
    if not second:
        return False
    ids = [str(item.get("service_request_id")) for item in first[:3]]
    return ids == [str(item.get("service_request_id")) for item in second[:3]]


def read_saved(path: str) -> list[Mapping[str, object]]:
    """The requests of a saved requests.json answer (a list, or an object holding one)."""
    try:
        document = orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError as exc:
        raise FeedFormatError(f"{path} is not JSON: {exc}") from None
    try:
        return requests_of(document)
    except ValueError as exc:
        raise FeedFormatError(f"{path}: {exc}") from None


# (feed, field) pairs already warned of as absent from every request read: once a process.
_WARNED_ABSENT: set[tuple[str, str]] = set()


class Open311Rows:
    """Open311 requests through a feed: the events, counted in an ImportSummary like a CSV's rows.

    The 'header' a feed is checked against is every GeoReport v2 field, `notes.closed`, the
    fields the requests carry, and every column the feed names that none of those is (a JSON
    request leaves out what it has no value for: a city's `closed_datetime` is absent from
    every request of a read whose requests are all open). Such a column reads blank; one that
    is neither a GeoReport v2 field nor an extension's is warned of once a process, in case the
    feed misspells it.
    """

    def __init__(self, catalog: Catalog, feeds: Sequence[tuple[str, CaseFeed]], rows: Sequence[dict[str, str]],
                 summary: ImportSummary | None = None):
        seen: dict[str, None] = dict.fromkeys(OPEN311_FIELDS)
        seen[CLOSED_NOTE] = None
        for row in rows:
            for key in row:
                seen.setdefault(key)
        self.feed_name, self.feed = choose_feed(feeds, list(seen))
        present = {name.strip().casefold() for name in seen}
        for names in named_columns(self.feed):
            if any(name.strip().casefold() in present for name in names):
                continue
            seen.setdefault(names[0])  # the first choice, as a file would spell it
            present.add(names[0].strip().casefold())
            if not names[0].startswith(EXTENDED) and (self.feed_name, names[0]) not in _WARNED_ABSENT:
                _WARNED_ABSENT.add((self.feed_name, names[0]))
                log.warning("a field the feed names is in no request read: read as blank", extra={
                    "feed": self.feed_name, "field": " or ".join(names), "requests": len(rows)})
        header = list(seen)
        self.mapper = FeedRows(self.feed, catalog, header, name=self.feed_name)
        self.summary = summary or ImportSummary()
        self.summary.format = self.feed.layout or self.feed_name
        self.summary.description = self.feed.description or self.summary.format
        self.summary.target_column = self.mapper.due_column
        # Open311's own version fields, read as the feed reads its open time (its zone for a time
        # written without an offset): the pull's order and the events agree on every time.
        self._request_version = versions_read_by(self.mapper.parse_time)

    def version_of(self, row: Mapping[str, str]) -> datetime | None:
        """When the request last changed: the feed's `version` column, else updated_datetime, else
        requested_datetime, by the feed's time rule (None: none readable)."""
        return self.mapper.version_of(row) or self._request_version(row)

    def events(self, rows: Iterable[Mapping[str, str]]) -> Iterator[CaseEvent]:
        summary, mapper = self.summary, self.mapper
        for row in rows:
            summary.rows += 1
            event = tally(summary, mapper, row)
            if event is not None:
                yield event


class Open311Reader:
    """Every request of a saved answer or an endpoint's period, once each, as case events.

    Made with everything read (the endpoint's errors and a feed that does not fit come before
    any output is opened); iterating yields the events and fills ``summary`` (rows: requests).
    """

    def __init__(self, catalog: Catalog, feeds: Sequence[tuple[str, CaseFeed]],
                 requests_read: Iterable[Mapping[str, object]], stats: FetchStats | None = None):
        self.stats = stats
        every = [flatten(request) for request in requests_read]
        self._rows = Open311Rows(catalog, feeds, every)
        self.rows = latest_versions(every, self._rows.version_of)
        self.repeats = (stats.requests - len(self.rows)) if stats is not None else 0
        self.summary = self._rows.summary
        self.on_rows = None  # csv_feed.write_events' progress hook: none here (read before writing)

    def __iter__(self) -> Iterator[CaseEvent]:
        return self._rows.events(self.rows)

    @classmethod
    def from_file(cls, path: str, catalog: Catalog, feeds: Sequence[tuple[str, CaseFeed]]) -> "Open311Reader":
        return cls(catalog, feeds, read_saved(path))

    @classmethod
    def from_endpoint(cls, client: Open311Client, start: datetime, end: datetime, catalog: Catalog,
                      feeds: Sequence[tuple[str, CaseFeed]]) -> "Open311Reader":
        return cls(catalog, feeds, list(client.fetch(start, end)), client.stats)
