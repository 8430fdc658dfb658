"""Boston 311 case exports -> case events (docs/scoring.md §5 and §7, docs/contract.md).

Boston publishes its 311 cases as CSV files, one per year, in two layouts:

* old (2015-2018): ``CASE_ENQUIRY_ID, OPEN_DT, TARGET_DT, CLOSED_DT, OnTime_Status,
  CASE_STATUS, ..., TYPE, ...`` with timestamps like ``01/01/2015 12:25:23 AM``;
* new (2019 on): ``case_enquiry_id, open_dt, sla_target_dt`` (older files:
  ``target_dt``), ``closed_dt, on_time`` (older: ``ontime``), ``case_status, ...,
  type, ...`` with timestamps like ``2019-01-01 00:25:23`` (fractional seconds allowed).

The layout is told from the header (column names compared case-insensitively), and
every timestamp is parsed whichever of the two styles it is written in, so a file
re-saved by a spreadsheet still imports. The file is streamed row by row: a year of
Boston 311 is 250 000+ rows and is never held in memory.

Each row whose ``TYPE`` the catalog maps to a metric becomes one ``case`` event:

* ``case_id`` is the case enquiry id, ``opened_at`` the open time;
* ``closed_at`` is the closed time when the row has one, else the case is open;
* ``due_at`` is the export's target time when the row has one; when the export has
  no target column, or the row's target is empty, it is computed from the catalog
  SLA (``BusinessCalendar.case_due_at``), exactly as the scorer would, and written;
* ``attributes.neighborhood`` is the row's ``neighborhood`` (both layouts have the
  column) when it is not blank: the catalog breaks on-time shares down by it.

Time zone (our choice, documented): timestamps without an offset are local city
time and get the catalog's zone. In the autumn fall-back hour, which happens twice,
the *first* occurrence (daylight time) is taken, as ``zoneinfo`` does with
``fold=0``. A time that does not exist (the spring-forward gap, e.g. 02:30 on the
second Sunday of March) is shifted *forward* by the gap, so 02:30 becomes
03:30 daylight time - the instant a clock that missed the change would have meant.
A timestamp that does carry an offset (``+00``, ``-05:00``, ``Z``) names an exact
instant; it is honoured and converted to local time.

Event ids (our choice): ``boston311-<case_id>-<open|closed>-<hash>``, where the
hash is a short digest of everything the event says (metric, times, due time,
neighbourhood). So re-importing the same file gives the same ids and every event is a duplicate
downstream (ignored), while a later export in which the case changed (closed,
re-dated, reopened and closed again) gives a new id, and the new version replaces
the old one through its ``case_id`` (docs/contract.md). A row whose non-scored columns
changed (queue, description) gives the same event and so the same id: nothing to
update. The one thing ids cannot express is a case going back to a state it had
before with identical content (closed, reopened, then closed again at exactly the
same time); Boston's exports have no "last modified" column to tell those apart.

Rows that cannot become a valid event are skipped and counted by reason; a
produced event that fails ``validate_event`` would be a bug here, and is counted
the same way instead of stopping a 250 000-row import.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, TextIO

from shared.core.business_time import BusinessCalendar
from shared.core.catalog import Catalog
from shared.core.contract import CaseEvent, InvalidEvent, event_to_json, validate_event

SOURCE = "boston311"

# Skip reasons: stable strings, counted in ImportSummary.skipped.
UNMAPPED_TYPE = "case type not in the catalog"
BAD_CASE_ID = "bad case id"
MISSING_OPEN = "missing open date"
BAD_OPEN = "unparseable open date"
BAD_CLOSED = "unparseable closed date"
BAD_TARGET = "unparseable target date"
CLOSED_WITHOUT_DATE = "closed case without a closed date"
CLOSED_BEFORE_OPENED = "closed before opened"
WRONG_FIELD_COUNT = "wrong number of fields"
UNREADABLE_ROW = "unreadable CSV row"
INVALID_EVENT = "invalid event"  # followed by the contract's reason

# Column names, lower-cased; the first one present wins.
_CASE_ID = ("case_enquiry_id",)
_OPEN = ("open_dt",)
_TARGET = ("sla_target_dt", "target_dt")
_CLOSED = ("closed_dt",)
_STATUS = ("case_status",)
_TYPE = ("type",)
# Both layouts name it in lower case; the event carries it as the case attribute `neighborhood`,
# which Boston's catalog breaks on-time shares down by (docs/scoring.md §5a).
_NEIGHBORHOOD = ("neighborhood",)
NEIGHBORHOOD = "neighborhood"
_REQUIRED = {"case id": _CASE_ID, "open time": _OPEN, "closed time": _CLOSED, "case type": _TYPE}

# Boston case enquiry ids are 12 digits; other systems may use letters. Anything
# else (blank, "1.01001E+11" from a spreadsheet, spaces) cannot be trusted as an id.
_CASE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")

# 2019-01-01 00:25:23[.123456][+00[:00]|Z], also with a T.
_ISO_RE = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?"
)
# 01/01/2015 12:25:23 AM, also without seconds and in 24-hour time (spreadsheets).
_US_RE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?\s*([AaPp][Mm])?")


PROGRESS_EVERY = 4096


class Boston311FormatError(ValueError):
    """The file is not a Boston 311 export this importer can read."""


@dataclass
class ImportSummary:
    """What an import did: rows read, events written, rows skipped and why."""

    format: str = ""  # "old" (2015-2018 columns) or "new" (2019 on)
    target_column: str | None = None
    rows: int = 0
    written: int = 0
    closed: int = 0
    open: int = 0
    due_from_export: int = 0
    due_computed: int = 0
    skipped: Counter = field(default_factory=Counter)
    unmapped_types: Counter = field(default_factory=Counter)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def as_dict(self) -> dict:
        return {
            "format": self.format,
            "target_column": self.target_column,
            "rows": self.rows,
            "written": self.written,
            "closed": self.closed,
            "open": self.open,
            "due_from_export": self.due_from_export,
            "due_computed": self.due_computed,
            "skipped": dict(self.skipped),
        }

    def lines(self) -> list[str]:
        """A human summary, one line per fact (the CLI prints it on stderr)."""
        layout = {"old": "old 2015-2018 layout", "new": "new 2019+ layout"}.get(self.format, self.format)
        target = f"target column {self.target_column}" if self.target_column else "no target column"
        out = [
            f"{self.rows} rows read ({layout}, {target}): {self.written} events written "
            f"({self.closed} closed, {self.open} open; due_at from the export {self.due_from_export}, "
            f"computed from the catalog SLA {self.due_computed}), {self.skipped_total} rows skipped"
        ]
        for reason, count in sorted(self.skipped.items(), key=lambda item: (-item[1], item[0])):
            line = f"  skipped, {reason}: {count}"
            if reason == UNMAPPED_TYPE and self.unmapped_types:
                top = ", ".join(f"{name!r} {n}" for name, n in self.unmapped_types.most_common(3))
                line += f" (most common: {top})"
            out.append(line)
        return out


def _first(columns: dict[str, int], names: tuple[str, ...]) -> tuple[str, int] | None:
    for name in names:
        if name in columns:
            return name, columns[name]
    return None


class Boston311Reader:
    """Reads a Boston 311 CSV export from a text stream and yields validated case events.

    The header is read (and checked) when the reader is made, so a wrong file is
    refused before any output is written. Counts accumulate in ``self.summary``.
    """

    def __init__(self, stream: TextIO, catalog: Catalog):
        self.catalog = catalog
        self.zone = catalog.zone
        self.calendar = BusinessCalendar(catalog)
        self.summary = ImportSummary()
        self._rows = csv.reader(stream)
        try:
            header = next(self._rows)
        except StopIteration:
            raise Boston311FormatError("the file is empty (no header row)") from None
        except csv.Error as exc:
            raise Boston311FormatError(f"the header row is not valid CSV: {exc}") from None
        if header and header[0].startswith("\ufeff"):  # a BOM the decoder did not remove
            header[0] = header[0][1:]
        names = [h.strip() for h in header]
        columns: dict[str, int] = {}
        for index, name in enumerate(names):
            columns.setdefault(name.lower(), index)
        missing = [
            f"{what} ({' or '.join(options)})" for what, options in _REQUIRED.items() if _first(columns, options) is None
        ]
        if missing:
            raise Boston311FormatError(
                "not a Boston 311 export: the header has no column for " + ", ".join(missing)
            )
        self._width = len(header)
        self._case_id = columns[_CASE_ID[0]]
        self._open = columns[_OPEN[0]]
        self._closed = columns[_CLOSED[0]]
        self._type = columns[_TYPE[0]]
        status = _first(columns, _STATUS)
        self._status = status[1] if status else None
        target = _first(columns, _TARGET)
        self._target = target[1] if target else None
        neighborhood = _first(columns, _NEIGHBORHOOD)
        self._neighborhood = neighborhood[1] if neighborhood else None
        self.summary.target_column = names[target[1]] if target else None
        # Old exports write their names in capitals (CASE_ENQUIRY_ID, OnTime_Status);
        # new ones in lower case.
        old = "ontime_status" in columns or names[self._case_id].isupper()
        self.summary.format = "old" if old else "new"
        self._prefer_us = old
        # Exact TYPE first; a case-insensitive match forgives a re-typed export.
        self._types = dict(catalog.case_type_map)
        self._types_folded = {name.casefold(): metric for name, metric in self._types.items()}
        self._utc = timezone.utc
        self._dst_days: dict[tuple[int, int, int], bool] = {}
        # Called every PROGRESS_EVERY rows (the progress bar hooks in here).
        self.on_rows: Callable[[], None] | None = None

    # -- timestamps ------------------------------------------------------------

    def parse_time(self, text: str) -> datetime | None:
        """A local timestamp as an aware datetime in the city's zone; None if unparseable."""
        text = text.strip()
        first, second = (_US_RE, _ISO_RE) if self._prefer_us else (_ISO_RE, _US_RE)
        match = first.fullmatch(text) or second.fullmatch(text)
        if match is None:
            return None
        a, b, c, hour, minute, second_s, fraction, tail = match.groups()
        try:
            if match.re is _US_RE:
                month, day, year = int(a), int(b), int(c)
                hour_n = int(hour)
                if tail is not None:  # 12-hour clock
                    if not 1 <= hour_n <= 12:
                        return None
                    hour_n = hour_n % 12 + (12 if tail in ("PM", "pm", "Pm", "pM") else 0)
                offset = None
            else:
                year, month, day = int(a), int(b), int(c)
                hour_n = int(hour)
                offset = tail
            micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
            if offset is not None:
                exact = datetime(year, month, day, hour_n, int(minute), int(second_s or 0), micro, _offset_zone(offset))
                return exact.astimezone(self.zone)
            # fold=0: in a repeated hour, the first occurrence (daylight time).
            local = datetime(year, month, day, hour_n, int(minute), int(second_s or 0), micro, self.zone)
        except ValueError:
            return None
        if self._changes_offset(year, month, day):
            # Round trip through UTC: a time in the spring-forward gap comes back
            # shifted forward (02:30 "EST" that never was -> 03:30 EDT); any other
            # time of the day is unchanged.
            return local.astimezone(self._utc).astimezone(self.zone)
        return local

    def _changes_offset(self, year: int, month: int, day: int) -> bool:
        """Whether the city's UTC offset changes on this local date (a DST day)."""
        key = (year, month, day)
        known = self._dst_days.get(key)
        if known is None:
            zone = self.zone
            known = datetime(year, month, day, tzinfo=zone).utcoffset() != datetime(
                year, month, day, 23, 59, 59, tzinfo=zone
            ).utcoffset()
            self._dst_days[key] = known
        return known

    # -- rows --------------------------------------------------------------------

    def __iter__(self) -> Iterator[CaseEvent]:
        summary = self.summary
        skipped = summary.skipped
        rows = self._rows
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error:  # e.g. a NUL byte or a runaway quoted field
                summary.rows += 1
                skipped[UNREADABLE_ROW] += 1
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line is not a row
            summary.rows += 1
            if self.on_rows is not None and summary.rows % PROGRESS_EVERY == 0:
                self.on_rows()
            result = self._event(row)
            if isinstance(result, str):
                skipped[result] += 1
                continue
            summary.written += 1
            if result.closed_at is None:
                summary.open += 1
            else:
                summary.closed += 1
            yield result

    def _event(self, row: list[str]) -> CaseEvent | str:
        """The row's validated event, or the reason it is skipped."""
        if len(row) != self._width:
            # A shorter row, or a longer one with data past the header, has lost or
            # gained a separator: its columns cannot be trusted. Trailing empty
            # fields (a spreadsheet's stray commas) are harmless.
            if len(row) < self._width or any(extra.strip() for extra in row[self._width :]):
                return WRONG_FIELD_COUNT
        case_type = row[self._type].strip()
        metric_id = self._types.get(case_type) or self._types_folded.get(case_type.casefold())
        if metric_id is None:
            self.summary.unmapped_types[case_type or "(blank)"] += 1
            return UNMAPPED_TYPE
        case_id = row[self._case_id].strip()
        if not _CASE_ID_RE.fullmatch(case_id):
            return BAD_CASE_ID
        open_text = row[self._open].strip()
        if not open_text:
            return MISSING_OPEN
        opened_at = self.parse_time(open_text)
        if opened_at is None:
            return BAD_OPEN
        closed_text = row[self._closed].strip()
        if closed_text:
            closed_at = self.parse_time(closed_text)
            if closed_at is None:
                return BAD_CLOSED
            if closed_at < opened_at:
                return CLOSED_BEFORE_OPENED
        else:
            closed_at = None
            if self._status is not None and row[self._status].strip().lower() == "closed":
                return CLOSED_WITHOUT_DATE
        target_text = row[self._target].strip() if self._target is not None else ""
        if target_text:
            due_at = self.parse_time(target_text)
            if due_at is None:
                return BAD_TARGET
            from_export = True
        else:
            # Written in local time like every other timestamp here (an hours SLA
            # comes back in UTC).
            due_at = self.calendar.case_due_at(self.catalog.by_id[metric_id], opened_at, None).astimezone(self.zone)
            from_export = False

        opened_s = opened_at.isoformat()
        closed_s = closed_at.isoformat() if closed_at is not None else None
        due_s = due_at.isoformat()
        neighborhood = row[self._neighborhood].strip() if self._neighborhood is not None else ""
        # The id names the case, its state and a digest of what the event says: the neighbourhood
        # too when there is one, so a case moved to another neighbourhood is a new version (a row
        # without one keeps the id it always had).
        said = f"{metric_id}|{case_id}|{opened_s}|{closed_s or ''}|{due_s}"
        if neighborhood:
            said += f"|{neighborhood}"
        digest = hashlib.blake2b(said.encode(), digest_size=6).hexdigest()
        raw = {
            "event_id": f"{SOURCE}-{case_id}-{'open' if closed_s is None else 'closed'}-{digest}",
            "type": "case",
            "metric": metric_id,
            "case_id": case_id,
            "opened_at": opened_s,
            "closed_at": closed_s,
            "due_at": due_s,
        }
        if neighborhood:
            raw["attributes"] = {NEIGHBORHOOD: neighborhood}
        try:
            event = validate_event(raw, self.catalog)
        except InvalidEvent as exc:
            return f"{INVALID_EVENT}: {exc}"
        if from_export:
            self.summary.due_from_export += 1
        else:
            self.summary.due_computed += 1
        return event  # type: ignore[return-value]


def _offset_zone(text: str) -> timezone:
    if text == "Z":
        return timezone.utc
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def text_stream(binary: BinaryIO) -> TextIO:
    """Decode a binary export: UTF-8 with or without a BOM, any line ending."""
    # newline="" hands line endings to the csv module, which takes \r\n and \n
    # alike and keeps line breaks inside quoted fields. Undecodable bytes are
    # replaced rather than fatal: they only ever appear in free-text columns.
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="replace", newline="")


def convert(
    stream: BinaryIO,
    out: BinaryIO,
    catalog: Catalog,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Stream an export from a binary stream into JSONL events on `out`.

    `progress`, when given, is called now and then with the number of bytes read.
    The caller keeps ownership of both streams (neither is closed).
    """
    text = text_stream(stream)
    try:
        reader = Boston311Reader(text, catalog)
        write_events(reader, out, stream, progress)
        return reader.summary
    finally:
        text.detach()  # leave `stream` open for its owner


def write_events(
    reader: Boston311Reader,
    out: BinaryIO,
    source: BinaryIO | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write the reader's events to `out` as JSONL, in batches."""
    if progress is not None and source is not None:
        reader.on_rows = lambda: progress(_tell(source))
    batch: list[bytes] = []
    for event in reader:
        batch.append(event_to_json(event))
        if len(batch) >= 5000:
            out.write(b"\n".join(batch) + b"\n")
            batch.clear()
    if batch:
        out.write(b"\n".join(batch) + b"\n")
    out.flush()
    if reader.on_rows is not None:
        reader.on_rows()


def _tell(stream: BinaryIO) -> int:
    try:
        return stream.tell()
    except (OSError, ValueError):  # a pipe
        return 0


# Files below this size import in about a second: no progress bar.
PROGRESS_MIN_BYTES = 4 * 1024 * 1024


def import_file(
    in_path: str,
    out_path: str,
    catalog: Catalog,
    *,
    show_progress: bool | None = None,
) -> ImportSummary:
    """Import a Boston 311 CSV file (or '-' for stdin) into a JSONL file (or '-' for stdout).

    The header is checked before the output is opened, and a file output is written
    under a temporary name and renamed at the end, so a refused or interrupted import
    never leaves a half-written events file behind.
    A progress bar (by bytes read) goes to stderr when stderr is a terminal and the
    input is a file of at least PROGRESS_MIN_BYTES; `show_progress` overrides that.
    Raises Boston311FormatError when the file is not a Boston 311 export.
    """
    stdin = in_path == "-"
    source: BinaryIO = sys.stdin.buffer if stdin else open(in_path, "rb")  # noqa: SIM115
    text = text_stream(source)
    try:
        size = None if stdin else os.fstat(source.fileno()).st_size
        if show_progress is None:
            show_progress = bool(size and size >= PROGRESS_MIN_BYTES and sys.stderr.isatty())
        reader = Boston311Reader(text, catalog)  # reads and checks the header
        if out_path == "-":
            _run(reader, source, sys.stdout.buffer, size if show_progress else None, in_path)
            return reader.summary
        final = Path(out_path)
        partial = final.with_name(f".{final.name}.partial")
        try:
            with open(partial, "wb") as out:
                _run(reader, source, out, size if show_progress else None, in_path)
            os.replace(partial, final)
        finally:
            if partial.exists():
                partial.unlink()
        return reader.summary
    finally:
        text.detach()
        if not stdin:
            source.close()


def _run(reader: Boston311Reader, source: BinaryIO, out: BinaryIO, size: int | None, label: str) -> None:
    if not size:
        write_events(reader, out)
        return
    import click

    with click.progressbar(
        length=size, label=f"importing {Path(label).name}", file=sys.stderr, show_percent=True, show_eta=True
    ) as bar:
        done = 0

        def advance(position: int) -> None:
            nonlocal done
            if position > done:
                bar.update(position - done)
                done = position

        write_events(reader, out, source, advance)
