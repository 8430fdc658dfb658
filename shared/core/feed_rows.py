"""A feed's rows -> case events: the pure rule behind every CSV (and later JSON) importer.

A catalog's feed (shared/core/catalog.py `CaseFeed`, docs/feeds.md) says which columns of a
city's export hold the case id, the times, the status and the type. `FeedRows` binds a feed
to a file's header once (refusing a file that lacks a needed column) and then turns each row,
a mapping of column name to text, into a validated `CaseEvent` or the reason it is skipped.
No I/O here: the readers in shared/feeds stream the files, count and write.

Time zone rule (documented in docs/feeds.md): a time without an offset is local time in the
column's zone (the feed's, else the catalog's). In the autumn fall-back hour, which happens
twice, the *first* occurrence (daylight time) is taken, as ``zoneinfo`` does with ``fold=0``;
a time in the spring-forward gap (02:30 on the second Sunday of March) is shifted *forward* by
the gap, to 03:30 daylight time, the instant a clock that missed the change would have meant.
A time with an offset (``+00``, ``-05:00``, ``Z``) is the instant it names. Every time is
written in the catalog's zone.

Date-only due times: a due column marked ``date_only`` holds a day (Philadelphia writes
``2024-01-08 00:00:00+00`` for "due 8 January"): the day as written is taken, whatever time
or offset follows it, and the case is due by the end of that local day, 23:59:59.

Event ids: ``<source>-<case id>-<open|closed>-<digest>``, the digest of everything the event
says (metric, case, times, due time, and the attributes when there are any) and of the row's
version (the feed's `version` column, when it names one and the row has a value), so importing
the same file again gives the same ids (duplicates downstream) and a later export in which a
case changed (or, with a version, was reopened to an earlier state) gives a new id whose case
replaces the earlier version (docs/contract.md).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from datetime import date, datetime, timedelta, timezone
from typing import Mapping, Sequence
from zoneinfo import ZoneInfo

from shared.core.business_time import BusinessCalendar
from shared.core.catalog import SLA, CaseFeed, Catalog, FeedSkip, FeedTime
from shared.core.contract import CaseEvent, InvalidEvent, validate_event

# Skip reasons: stable strings, counted by the importers. A feed's own skip rules add theirs.
UNMAPPED_TYPE = "case type not in the catalog"
BAD_CASE_ID = "bad case id"
MISSING_OPEN = "missing open date"
BAD_OPEN = "unparseable open date"
BAD_CLOSED = "unparseable closed date"
BAD_TARGET = "unparseable target date"
CLOSED_WITHOUT_DATE = "closed case without a closed date"
CLOSED_BEFORE_OPENED = "closed before opened"
NO_DUE_TIME = "no due time (a metric without an SLA, and the row states none)"
INVALID_EVENT = "invalid event"  # followed by the contract's reason

# An SLA in words, as Philly311 and Open311 write service_notice: "5 Business Days",
# "1 Business Day", "3 Calendar Days", "30 Days" (calendar days), "48 Hours", "24 hrs".
_NOTICE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(business\s+days?|calendar\s+days?|days?|hours?|hrs?)\.?\s*",
                        re.IGNORECASE)


# The most a notice may say, by its unit's first letter: a year of hours, of working days, of days.
_NOTICE_MOST = {"h": 24 * 366, "b": 261, "c": 366, "d": 366}


def sla_of_notice(text: str) -> SLA | None:
    """The SLA a notice states ("5 Business Days"), or None when it states none this rule reads
    (blank, "Varies", "2-3 Business Days", business hours, a zero)."""
    return _notice_sla(text.strip().casefold()) if text else None


@lru_cache(maxsize=256)  # a feed's notices are a handful of strings: each read once
def _notice_sla(folded: str) -> SLA | None:
    found = _NOTICE_RE.fullmatch(folded)
    if found is None:
        return None
    amount, unit = float(found.group(1)), found.group(2)
    # A notice is data, not the catalog: an amount no service promises ("9999999 Days", a typo) is
    # read as no notice rather than a due time centuries away (or past the calendar's end).
    if amount <= 0 or amount > _NOTICE_MOST[unit[0]]:
        return None
    if unit.startswith("h"):
        return SLA(hours=amount)
    if amount != int(amount):  # "1.5 Days": no whole days to count
        return None
    return SLA(business_days=int(amount)) if unit.startswith("business") else SLA(calendar_days=int(amount))


# Case ids: Boston's are 12 digits; other systems use letters. Anything else (blank,
# "1.01001E+11" from a spreadsheet, spaces) cannot be trusted as an id.
_CASE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")

# 2019-01-01 00:25:23[.123456][+00[:00]|Z], also with a T.
_ISO_RE = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?"
)
# 01/01/2015 12:25:23 AM, also without seconds and in 24-hour time (spreadsheets).
_US_RE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?\s*([AaPp][Mm])?")
# A day alone, for date-only columns: 2024-01-08 or 01/08/2024.
_ISO_DAY_RE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_US_DAY_RE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")

_UTC = timezone.utc
END_OF_DAY = (23, 59, 59)


class FeedFormatError(ValueError):
    """The file's header does not fit the feed (a needed column is missing)."""


def _offset_zone(text: str) -> timezone:
    if text == "Z":
        return _UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


class TimeParser:
    """Reads one time column's text as an aware datetime in the catalog's zone (None: unparseable)."""

    def __init__(self, zone: ZoneInfo, output: ZoneInfo, fmt: str = "auto", date_only: bool = False):
        self.zone = zone
        self.output = output
        self.format = fmt
        self.date_only = date_only
        # Which style is tried first: the one that matched last (a file keeps to one style). Only
        # a matter of speed: no text matches both.
        self._styles = (_ISO_RE, _US_RE)
        self._dst_days: dict[tuple[int, int, int], bool] = {}

    def __call__(self, text: str) -> datetime | None:
        text = text.strip()
        if self.format != "auto":
            return self._strptime(text)
        first, second = self._styles
        match = first.fullmatch(text)
        if match is None:
            match = second.fullmatch(text)
            if match is not None:
                self._styles = (second, first)
        if match is None:
            if self.date_only:
                return self._day_alone(text)
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
            if self.date_only:
                datetime(year, month, day, hour_n, int(minute), int(second_s or 0))  # still a real time
                return self.end_of(date(year, month, day))
            micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
            if offset is not None:
                exact = datetime(year, month, day, hour_n, int(minute), int(second_s or 0), micro,
                                 _offset_zone(offset))
                return exact.astimezone(self.output)
            # fold=0: in a repeated hour, the first occurrence (daylight time).
            local = datetime(year, month, day, hour_n, int(minute), int(second_s or 0), micro, self.zone)
        except ValueError:
            return None
        return self._settled(local, year, month, day)

    def end_of(self, day: date) -> datetime:
        """Due by the end of a day in the city's zone (a date-only due time), whatever zone the
        column's times are written in: the day names the city's day. 23:59:59 is never in a
        DST gap or repeated hour (those are in the small hours)."""
        return datetime(day.year, day.month, day.day, *END_OF_DAY, tzinfo=self.output)

    def _day_alone(self, text: str) -> datetime | None:
        match = _ISO_DAY_RE.fullmatch(text)
        try:
            if match is not None:
                return self.end_of(date(int(match[1]), int(match[2]), int(match[3])))
            match = _US_DAY_RE.fullmatch(text)
            if match is not None:
                return self.end_of(date(int(match[3]), int(match[1]), int(match[2])))
        except ValueError:
            return None
        return None

    def _strptime(self, text: str) -> datetime | None:
        try:
            parsed = datetime.strptime(text, self.format)
        except ValueError:
            return None
        if self.date_only:
            return self.end_of(parsed.date())
        if parsed.tzinfo is not None:
            return parsed.astimezone(self.output)
        local = parsed.replace(tzinfo=self.zone)
        return self._settled(local, parsed.year, parsed.month, parsed.day)

    def _settled(self, local: datetime, year: int, month: int, day: int) -> datetime:
        if self._changes_offset(year, month, day):
            # Round trip through UTC: a time in the spring-forward gap comes back shifted
            # forward (02:30 "EST" that never was -> 03:30 EDT); any other time is unchanged.
            local = local.astimezone(_UTC).astimezone(self.zone)
        if self.zone is not self.output:
            return local.astimezone(self.output)
        return local

    def _changes_offset(self, year: int, month: int, day: int) -> bool:
        """Whether the zone's UTC offset changes on this local date (a DST day)."""
        key = (year, month, day)
        known = self._dst_days.get(key)
        if known is None:
            zone = self.zone
            known = datetime(year, month, day, tzinfo=zone).utcoffset() != datetime(
                year, month, day, 23, 59, 59, tzinfo=zone
            ).utcoffset()
            self._dst_days[key] = known
        return known


def _find(header: Mapping[str, str], names: Sequence[str]) -> str | None:
    """The header's spelling of the first of `names` it has (compared without regard to case)."""
    for name in names:
        found = header.get(name.casefold())
        if found is not None:
            return found
    return None


def _folded_header(columns: Sequence[str]) -> dict[str, str]:
    header: dict[str, str] = {}
    for name in columns:
        header.setdefault(name.strip().casefold(), name)
    return header


def named_columns(feed: CaseFeed) -> list[tuple[str, ...]]:
    """Every column the feed reads, each as the names it may have (first choice first): the case
    id, type, times, status, attributes and skip rules' columns."""
    named = [feed.case_id.column, feed.type.column, feed.opened.column, feed.closed.column]
    named += [column.column for column in (feed.due, feed.status, feed.version, feed.sla_notice) if column is not None]
    named += list(feed.attributes.values())
    named += [rule.column for rule in feed.skip]
    return named


def recognises(feed: CaseFeed, columns: Sequence[str]) -> bool:
    """Whether a header shows this feed's layout (by its `recognised_by`; none: any header)."""
    rule = feed.recognised_by
    if rule is None:
        return True
    header = _folded_header(columns)
    if _find(header, rule.any_column) is not None:
        return True
    for name in rule.upper_case_column:
        found = header.get(name.casefold())
        if found is not None and found.strip().isupper():
            return True
    return False


def feeds_named(catalog: Catalog, name: str) -> list[tuple[str, CaseFeed]]:
    """The feed called `name`, or else every feed whose source is `name` (the layouts of one export)."""
    if name in catalog.feeds:
        return [(name, catalog.feeds[name])]
    return [(key, feed) for key, feed in catalog.feeds.items() if (feed.source or key) == name]


def choose_feed(feeds: Sequence[tuple[str, CaseFeed]], columns: Sequence[str]) -> tuple[str, CaseFeed]:
    """Among one source's layouts, the first whose `recognised_by` fits the header.

    A layout without `recognised_by` takes any header; when none fits, the last layout is
    taken, and binding it says which columns are missing.
    """
    for named in feeds:
        if named[1].recognised_by is not None and recognises(named[1], columns):
            return named
    for named in feeds:
        if named[1].recognised_by is None:
            return named
    return feeds[-1]


@dataclass(frozen=True)
class _Skip:
    reason: str
    column: str
    equals: frozenset[str]
    contains: tuple[str, ...]
    not_blank: bool
    repeated: bool


class FeedRows:
    """A feed bound to a file's header: turns each row into a case event or a skip reason.

    Raises FeedFormatError, naming every missing column, when the header lacks one the
    feed needs. `repeated` skip rules remember the values of the rows already imported,
    so one FeedRows reads one file.
    """

    def __init__(self, feed: CaseFeed, catalog: Catalog, columns: Sequence[str], *, name: str = ""):
        self.feed = feed
        self.name = name
        self.catalog = catalog
        self.calendar = BusinessCalendar(catalog)
        self.source = feed.source or name
        header = _folded_header(columns)
        required = {"case id": feed.case_id.column, "open time": feed.opened.column,
                    "closed time": feed.closed.column, "case type": feed.type.column}
        missing = [f"{what} ({' or '.join(names)})" for what, names in required.items() if _find(header, names) is None]
        missing += [f"skip rule {rule.reason!r} ({' or '.join(rule.column)})" for rule in feed.skip
                    if _find(header, rule.column) is None]
        if feed.closed.when_status_closed and _find(header, feed.status.column) is None:  # type: ignore[union-attr]
            missing.append(f"status ({' or '.join(feed.status.column)}), which says when the closed time is one")  # type: ignore[union-attr]
        if missing:
            raise FeedFormatError(f"not a {feed.title} export: the header has no column for " + ", ".join(missing))
        self._case_id = _find(header, feed.case_id.column)
        self._type = _find(header, feed.type.column)
        self._opened = _find(header, feed.opened.column)
        self._closed = _find(header, feed.closed.column)
        self._due = _find(header, feed.due.column) if feed.due is not None else None
        self._status = _find(header, feed.status.column) if feed.status is not None else None
        self._version = _find(header, feed.version.column) if feed.version is not None else None
        self._closed_values = frozenset(v.strip().casefold() for v in feed.status.closed) if feed.status else frozenset()
        self.due_column = self._due.strip() if self._due is not None else None
        # The close column counts only on closed rows (a file without the status column: none is).
        self._closed_needs_status = feed.closed.when_status_closed
        attributes = [(attribute, _find(header, names)) for attribute, names in feed.attributes.items()]
        self._attributes = [(attribute, column) for attribute, column in attributes if column is not None]
        self._skips = [
            _Skip(rule.reason, _find(header, rule.column) or "", frozenset(v.strip().casefold() for v in rule.equals),
                  tuple(v.casefold() for v in rule.contains), rule.not_blank, rule.repeated)
            for rule in feed.skip
        ]
        # The header's names this feed reads: a reader need hand over no other column.
        read = (_find(header, names) for names in named_columns(feed))
        self.columns = tuple(dict.fromkeys(column for column in read if column is not None))
        self._first_skips = [rule for rule in self._skips if not rule.repeated]
        self._repeat_skips = [rule for rule in self._skips if rule.repeated]
        self._seen: dict[str, set[str]] = {rule.column: set() for rule in self._repeat_skips}
        # Exact type first; a case-insensitive match forgives a re-typed export.
        self._types = dict(feed.types if feed.types is not None else catalog.case_type_map)
        self._types_folded = {name.casefold(): metric for name, metric in self._types.items()}
        self._notice = _find(header, feed.sla_notice.column) if feed.sla_notice is not None else None
        self._sla_by_type: dict[str, SLA] = dict(feed.sla)
        self._sla_folded = {name.casefold(): sla for name, sla in feed.sla.items()}
        self._parse_opened = self._parser(feed.opened)
        self._parse_closed = self._parser(feed.closed)
        self._parse_due = self._parser(feed.due) if feed.due is not None else None
        self._parse_version = self._parser(feed.version) if feed.version is not None else None

    def _parser(self, column: FeedTime) -> TimeParser:
        named = column.timezone or self.feed.timezone
        zone = self.catalog.zone if named is None or named == self.catalog.timezone else ZoneInfo(named)
        return TimeParser(zone, self.catalog.zone, column.format, column.date_only)

    def parse_time(self, text: str) -> datetime | None:
        """An opened-column timestamp as an aware datetime in the city's zone; None if unparseable."""
        return self._parse_opened(text)

    def version_of(self, row: Mapping[str, str]) -> datetime | None:
        """When the row's case last changed, by the feed's `version` column (None: the feed names
        none, the file lacks it, or the row's is blank or unreadable)."""
        if self._version is None:
            return None
        text = (row.get(self._version) or "").strip()
        return self._parse_version(text) if text else None  # type: ignore[misc]

    def _notice_of(self, row: Mapping[str, str]) -> SLA | None:
        """The SLA the row's notice column states, if the feed names one and the row's reads."""
        return sla_of_notice(row.get(self._notice) or "") if self._notice is not None else None

    def type_of(self, row: Mapping[str, str]) -> str:
        return (row.get(self._type) or "").strip()

    def event(self, row: Mapping[str, str]) -> tuple[CaseEvent, bool] | str:
        """The row's validated event and whether its due time came from the export; or why it is skipped."""
        get = row.get
        for rule in self._first_skips:
            value = (get(rule.column) or "").strip()
            if rule.not_blank:
                if value:
                    return rule.reason
                continue
            folded = value.casefold()
            if folded in rule.equals or any(part in folded for part in rule.contains):
                return rule.reason
        case_type = (get(self._type) or "").strip()
        metric_id = self._types.get(case_type) or self._types_folded.get(case_type.casefold())
        if metric_id is None:
            return UNMAPPED_TYPE
        case_id = (get(self._case_id) or "").strip()
        if not _CASE_ID_RE.fullmatch(case_id):
            return BAD_CASE_ID
        open_text = (get(self._opened) or "").strip()
        if not open_text:
            return MISSING_OPEN
        opened_at = self._parse_opened(open_text)
        if opened_at is None:
            return BAD_OPEN
        closed_text = (get(self._closed) or "").strip()
        if closed_text and self._closed_needs_status and (
                (get(self._status) or "").strip().casefold() not in self._closed_values):  # type: ignore[arg-type]
            closed_text = ""  # Open311's updated_datetime of an open request: a change, not a close
        if closed_text:
            closed_at = self._parse_closed(closed_text)
            if closed_at is None:
                return BAD_CLOSED
            if closed_at < opened_at:
                return CLOSED_BEFORE_OPENED
        else:
            closed_at = None
            if self._status is not None and (get(self._status) or "").strip().casefold() in self._closed_values:
                return CLOSED_WITHOUT_DATE
        attributes = {}
        for attribute, column in self._attributes:
            value = (get(column) or "").strip()
            if value:
                attributes[attribute] = value
        due_text = (get(self._due) or "").strip() if self._due is not None else ""
        if due_text:
            due_at = self._parse_due(due_text)  # type: ignore[misc]
            if due_at is None:
                return BAD_TARGET
            from_export = True
        else:
            # The row's own SLA notice first (the export states the due time: counted as from the
            # export), then the feed's SLA for its type, then the metric's.
            sla = self._notice_of(row)
            from_export = sla is not None
            if sla is None:
                sla = self._sla_by_type.get(case_type) or self._sla_folded.get(case_type.casefold())
            metric = self.catalog.by_id[metric_id]
            # Written in local time like every other timestamp here (an hours SLA comes back in UTC).
            if sla is not None:
                due_at = self.calendar.due_at(sla, opened_at).astimezone(self.catalog.zone)
            elif metric.due_from_case:
                return NO_DUE_TIME
            else:
                due_at = self.calendar.case_due_at(metric, opened_at, attributes or None).astimezone(self.catalog.zone)

        opened_s = opened_at.isoformat()
        closed_s = closed_at.isoformat() if closed_at is not None else None
        due_s = due_at.isoformat()
        # The id names the case, its state and a digest of what the event says: the attributes
        # too when there are any, so a case moved to another neighbourhood is a new version (a
        # row without any keeps the id it always had).
        said = f"{metric_id}|{case_id}|{opened_s}|{closed_s or ''}|{due_s}"
        if attributes:
            said += "|" + "|".join(attributes.get(attribute, "") for attribute, _ in self._attributes)
        if self._version is not None:
            # The version too, where the feed names one and the row has it: a case closed and then
            # reopened says again what its first open version said, and without its version its
            # event would be that version's id, dropped downstream as a duplicate. (A feed without
            # a version column cannot tell such a reopen; its rows keep the ids they always had.)
            version_text = (get(self._version) or "").strip()
            if version_text:
                version = self._parse_version(version_text)  # type: ignore[misc]
                said += "|v=" + (version.isoformat() if version is not None else version_text)
        digest = hashlib.blake2b(said.encode(), digest_size=6).hexdigest()
        raw: dict = {
            "event_id": f"{self.source}-{case_id}-{'open' if closed_s is None else 'closed'}-{digest}",
            "type": "case",
            "metric": metric_id,
            "case_id": case_id,
            "opened_at": opened_s,
            "closed_at": closed_s,
            "due_at": due_s,
        }
        if attributes:
            raw["attributes"] = attributes
        try:
            event = validate_event(raw, self.catalog)
        except InvalidEvent as exc:
            return f"{INVALID_EVENT}: {exc}"
        for rule in self._repeat_skips:
            value = (get(rule.column) or "").strip()
            if value:  # a blank is no value to repeat
                seen = self._seen[rule.column]
                if value in seen:
                    return rule.reason
                seen.add(value)
        return event, from_export  # type: ignore[return-value]
