"""Boston 311 case exports -> case events (docs/scoring.md §7, docs/feeds.md).

Boston publishes its 311 cases as CSV files, one per year, in two layouts: old (2015-2018,
``CASE_ENQUIRY_ID, OPEN_DT, TARGET_DT, CLOSED_DT, OnTime_Status, ...`` with times like
``01/01/2015 12:25:23 AM``) and new (2019 on, ``case_enquiry_id, open_dt, sla_target_dt``
or ``target_dt``, ``closed_dt, ...`` with times like ``2019-01-01 00:25:23``). Both are
feeds of Boston's catalog (``boston311-old`` and ``boston311-new``, source ``boston311``),
not code: this module only names them, so `cityscore import boston311` is `cityscore import
csv --feed boston311` under its old name, with the same rule (shared/core/feed_rows.py)
and the same reader (shared/feeds/csv_feed.py). A catalog without Boston feeds of its own
(a test's, a city's copy of Boston's metrics) reads with the feeds of the shipped Boston
catalog, mapping types through its own metrics' case_types.
"""

from __future__ import annotations

from functools import lru_cache
from typing import BinaryIO, Callable, TextIO

from shared.core.catalog import CaseFeed, Catalog, load_catalog
from shared.core.feed_rows import (  # noqa: F401  (the skip reasons, importable from here as before)
    BAD_CASE_ID,
    BAD_CLOSED,
    BAD_OPEN,
    BAD_TARGET,
    CLOSED_BEFORE_OPENED,
    CLOSED_WITHOUT_DATE,
    INVALID_EVENT,
    MISSING_OPEN,
    UNMAPPED_TYPE,
    FeedFormatError,
    feeds_named,
)
from shared.feeds import csv_feed
from shared.feeds.csv_feed import (  # noqa: F401
    PROGRESS_EVERY,
    PROGRESS_MIN_BYTES,
    UNREADABLE_ROW,
    WRONG_FIELD_COUNT,
    ImportSummary,
    text_stream,
    write_events,
)

SOURCE = "boston311"


class Boston311FormatError(FeedFormatError):
    """The file is not a Boston 311 export this importer can read."""


@lru_cache(maxsize=1)
def _shipped_feeds() -> tuple[tuple[str, CaseFeed], ...]:
    return tuple(feeds_named(load_catalog(), SOURCE))


def boston_feeds(catalog: Catalog) -> list[tuple[str, CaseFeed]]:
    """Boston's export layouts: the catalog's own feeds of source boston311, else the shipped ones."""
    return feeds_named(catalog, SOURCE) or list(_shipped_feeds())


class Boston311Reader(csv_feed.CsvFeedReader):
    """Reads a Boston 311 CSV export (either layout) and yields validated case events."""

    def __init__(self, stream: TextIO, catalog: Catalog):
        super().__init__(stream, catalog, boston_feeds(catalog), Boston311FormatError)


def convert(stream: BinaryIO, out: BinaryIO, catalog: Catalog,
            progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Stream an export into JSONL events on `out` (see csv_feed.convert)."""
    return csv_feed.convert(stream, out, lambda text: Boston311Reader(text, catalog), progress)


def import_file(in_path: str, out_path: str, catalog: Catalog, *,
                show_progress: bool | None = None) -> ImportSummary:
    """Import a Boston 311 CSV file into a JSONL file (see csv_feed.import_file)."""
    return csv_feed.import_file(in_path, out_path, lambda text: Boston311Reader(text, catalog),
                                show_progress=show_progress)
