"""A city's 311 CSV export -> case events, by a feed of the catalog (docs/feeds.md).

`cityscore import csv FILE --feed NAME` and `cityscore import boston311` (Boston's feeds)
both read through here: the file is streamed row by row (a year of Boston 311 is 250 000+
rows and is never held in memory), each row goes through the feed's pure rule
(shared/core/feed_rows.py), and the events are written as JSONL or sent to ingest.

The header is read and checked before any output is opened, so a wrong file is refused
without leaving anything behind. Rows that cannot become a valid event are skipped and
counted by reason; a produced event that fails the contract would be a bug of the feed,
and is counted the same way instead of stopping a 250 000-row import.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Sequence, TextIO

from shared.core.catalog import CaseFeed, Catalog
from shared.core.contract import CaseEvent, event_to_json
from shared.core.feed_rows import UNMAPPED_TYPE, FeedFormatError, FeedRows, choose_feed, feeds_named

WRONG_FIELD_COUNT = "wrong number of fields"
UNREADABLE_ROW = "unreadable CSV row"

PROGRESS_EVERY = 4096
# Files below this size import in about a second: no progress bar.
PROGRESS_MIN_BYTES = 4 * 1024 * 1024


class UnknownFeed(ValueError):
    """The catalog has no feed by that name."""


@dataclass
class ImportSummary:
    """What an import did: rows read, events written, rows skipped and why."""

    format: str = ""  # the feed's layout ("old", "new") or name
    description: str = ""  # e.g. "old 2015-2018 layout"
    target_column: str | None = None  # the due column the file has, if any
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
        layout = self.description or self.format
        target = f"due column {self.target_column}" if self.target_column else "no due column"
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


def resolve_feeds(catalog: Catalog, name: str) -> list[tuple[str, CaseFeed]]:
    """The feed called `name` or the layouts of the source `name`; UnknownFeed names the choices."""
    found = feeds_named(catalog, name)
    if not found:
        known = sorted(set(catalog.feeds) | {feed.source for feed in catalog.feeds.values() if feed.source})
        choices = ", ".join(known) if known else "none: the catalog has no feeds section"
        raise UnknownFeed(f"the catalog ({catalog.city}) has no feed {name!r} (feeds: {choices})")
    return found


class CsvFeedReader:
    """Reads a CSV export from a text stream through a feed and yields validated case events.

    `feeds` are one feed, or the layouts of one source (the header picks one). The header
    is read and checked when the reader is made (FeedFormatError). Counts accumulate in
    ``self.summary``.
    """

    def __init__(self, stream: TextIO, catalog: Catalog, feeds: Sequence[tuple[str, CaseFeed]],
                 error: type[FeedFormatError] = FeedFormatError):
        self.catalog = catalog
        self.summary = ImportSummary()
        self._rows = csv.reader(stream)
        try:
            header = next(self._rows)
        except StopIteration:
            raise error("the file is empty (no header row)") from None
        except csv.Error as exc:
            raise error(f"the header row is not valid CSV: {exc}") from None
        if header and header[0].startswith("\ufeff"):  # a BOM the decoder did not remove
            header[0] = header[0][1:]
        self.header = [name.strip() for name in header]
        self.feed_name, self.feed = choose_feed(feeds, self.header)
        try:
            self.rows_to_events = FeedRows(self.feed, catalog, self.header, name=self.feed_name)
        except FeedFormatError as exc:
            raise error(str(exc)) from None
        self._width = len(header)
        self.summary.format = self.feed.layout or self.feed_name
        self.summary.description = self.feed.description or self.summary.format
        self.summary.target_column = self.rows_to_events.due_column
        # Called every PROGRESS_EVERY rows (the progress bar hooks in here).
        self.on_rows: Callable[[], None] | None = None

    def parse_time(self, text: str) -> datetime | None:
        """A local timestamp as an aware datetime in the city's zone; None if unparseable."""
        return self.rows_to_events.parse_time(text)

    def __iter__(self) -> Iterator[CaseEvent]:
        summary = self.summary
        skipped = summary.skipped
        rows = self._rows
        width = self._width
        mapper = self.rows_to_events
        # Only the columns the feed reads (a Boston row has 29; the feed reads 8).
        wanted = [(name, self.header.index(name)) for name in mapper.columns]
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
            if len(row) != width:
                # A shorter row, or a longer one with data past the header, has lost or
                # gained a separator: its columns cannot be trusted. Trailing empty
                # fields (a spreadsheet's stray commas) are harmless.
                if len(row) < width or any(extra.strip() for extra in row[width:]):
                    skipped[WRONG_FIELD_COUNT] += 1
                    continue
            values = {name: row[index] for name, index in wanted}
            event = tally(summary, mapper, values)
            if event is not None:
                yield event


def tally(summary: ImportSummary, mapper: FeedRows, values) -> CaseEvent | None:
    """One row through the feed's rule, counted in the summary: its event, or None when skipped.

    Every reader (CSV here, Open311's JSON in shared/feeds/open311.py) counts rows this way."""
    result = mapper.event(values)
    if isinstance(result, str):
        summary.skipped[result] += 1
        if result == UNMAPPED_TYPE:
            summary.unmapped_types[mapper.type_of(values) or "(blank)"] += 1
        return None
    event, from_export = result
    summary.written += 1
    if event.closed_at is None:
        summary.open += 1
    else:
        summary.closed += 1
    if from_export:
        summary.due_from_export += 1
    else:
        summary.due_computed += 1
    return event


def text_stream(binary: BinaryIO) -> TextIO:
    """Decode a binary export: UTF-8 with or without a BOM, any line ending."""
    # newline="" hands line endings to the csv module, which takes \r\n and \n
    # alike and keeps line breaks inside quoted fields. Undecodable bytes are
    # replaced rather than fatal: they only ever appear in free-text columns.
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="replace", newline="")


ReaderFactory = Callable[[TextIO], CsvFeedReader]


def convert(stream: BinaryIO, out: BinaryIO, reader_for: ReaderFactory,
            progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Stream an export from a binary stream into JSONL events on `out`.

    `reader_for` makes the reader from the decoded stream (it checks the header).
    `progress`, when given, is called now and then with the number of bytes read.
    The caller keeps ownership of both streams (neither is closed).
    """
    text = text_stream(stream)
    try:
        reader = reader_for(text)
        write_events(reader, out, stream, progress)
        return reader.summary
    finally:
        text.detach()  # leave `stream` open for its owner


def write_events(reader: CsvFeedReader, out: BinaryIO, source: BinaryIO | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
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


def import_file(in_path: str, out_path: str, reader_for: ReaderFactory, *,
                show_progress: bool | None = None) -> ImportSummary:
    """Import a CSV file (or '-' for stdin) into a JSONL file (or '-' for stdout).

    The header is checked before the output is opened, and a file output is written
    under a temporary name and renamed at the end, so a refused or interrupted import
    never leaves a half-written events file behind (an output that exists and is not a
    regular file, such as /dev/null or a named pipe, is written directly).
    A progress bar (by bytes read) goes to stderr when stderr is a terminal and the
    input is a file of at least PROGRESS_MIN_BYTES; `show_progress` overrides that.
    Raises FeedFormatError when the file does not fit the feed.
    """
    stdin = in_path == "-"
    source: BinaryIO = sys.stdin.buffer if stdin else open(in_path, "rb")  # noqa: SIM115
    text = text_stream(source)
    try:
        size = None if stdin else os.fstat(source.fileno()).st_size
        if show_progress is None:
            show_progress = bool(size and size >= PROGRESS_MIN_BYTES and sys.stderr.isatty())
        reader = reader_for(text)  # reads and checks the header
        write_output(out_path, lambda out: _run(reader, source, out, size if show_progress else None, in_path))
        return reader.summary
    finally:
        text.detach()
        if not stdin:
            source.close()


def write_output(out_path: str, write: Callable[[BinaryIO], None]) -> None:
    """Call `write` with the output `out_path` names ('-': standard output), so that a refused or
    interrupted import never leaves a half-written events file behind: a file is written under a
    temporary name and renamed at the end; an output that exists and is not a regular file (such
    as /dev/null or a named pipe) is written directly."""
    if out_path == "-":
        write(sys.stdout.buffer)
        return
    final = Path(out_path)
    if final.exists() and not final.is_file():
        # /dev/null, a named pipe, a terminal: written straight; renaming a temporary file
        # over it would replace the device or pipe with a plain file.
        with open(final, "wb") as out:
            write(out)
        return
    partial = final.with_name(f".{final.name}.partial")
    try:
        with open(partial, "wb") as out:
            write(out)
        os.replace(partial, final)
    finally:
        if partial.exists():
            partial.unlink()


def ingest_dicts(events: Iterable[CaseEvent]) -> Iterator[dict]:
    """Events as the JSON objects ingest takes (what DepartmentRouter.send sends)."""
    import orjson

    return (orjson.loads(event.model_dump_json(exclude_none=True)) for event in events)


def _run(reader: CsvFeedReader, source: BinaryIO, out: BinaryIO, size: int | None, label: str) -> None:
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


def send_file(file: str, reader_for: ReaderFactory, router, label: str = "sending"):
    """Read the export and post its events to ingest through `router` (services/ingest/client.py
    DepartmentRouter: batches, each event with its department's key, retries), with a progress bar
    by bytes read when stderr is a terminal. Returns the summary and the router's report."""
    import click

    source: BinaryIO = sys.stdin.buffer if file == "-" else open(file, "rb")  # noqa: SIM115
    text = text_stream(source)
    try:
        reader = reader_for(text)
        events = ingest_dicts(reader)
        size = 0 if file == "-" else os.fstat(source.fileno()).st_size
        if not (size and sys.stderr.isatty()):
            return reader.summary, router.send(events)
        with click.progressbar(length=size, label=f"{label} {Path(file).name}", file=sys.stderr) as bar:
            done = 0

            def advance(_sent: int) -> None:
                nonlocal done
                position = source.tell()
                bar.update(max(0, position - done))
                done = max(done, position)

            return reader.summary, router.send(events, progress=advance)
    finally:
        text.detach()
        if file != "-":
            source.close()
