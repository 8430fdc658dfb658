"""The event contract, version 2 (docs/contract.md).

One JSON object per event: the body of an HTTP post, the value of a Kafka message
and a line of a JSONL file all use these models. Unknown fields are refused so a
typo never silently drops data, and every refusal names the field and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from shared.core.catalog import Catalog, Feed, Metric

# Version 2 adds corrections (`replaces`) and withdrawals; every version 1 event is a
# valid version 2 event.
CONTRACT_VERSION = 2

# No string may hold a control character: C0 (U+0000-U+001F, so tab and newline too), DEL or
# C1 (U+0080-U+009F). PostgreSQL cannot store a NUL (SQLSTATE 22P05: one in an event id
# stopped every scorer), and none of them belongs in an id, a metric, a department or a case
# attribute, while in a log line, a Slack post or a page they hide or forge text. A pattern
# rather than a Python validator: pydantic checks it in Rust, at no cost to the scorer.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f-\x9f]*$"
Text = Annotated[str, Field(pattern=NO_CONTROL_CHARACTERS)]
EventId = Annotated[str, Field(min_length=1, max_length=128, pattern=NO_CONTROL_CHARACTERS)]
CaseId = Annotated[str, Field(min_length=1, max_length=128, pattern=NO_CONTROL_CHARACTERS)]
MetricId = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS)]
DepartmentId = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS)]  # as the catalog's
# The largest number one event may carry: an incident's count, a tally's numerator, denominator
# or count, a measurement (either sign). A billion is far above anything a city counts in a
# day (Boston's largest daily feed, library users, is about 15,000; New York's subway carries
# about 4 million riders), yet a day's total of such numbers can neither overflow (two
# incidents of 1e308 made one infinite, which the database refused) nor lose a unit in the
# database's float8 until some nine million maximal events in one day (2^53 is about 9e15).
MAX_AMOUNT = 1_000_000_000
# Finite numbers only: NaN or infinity would poison every sum they enter.
Number = Annotated[float, Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1, le=MAX_AMOUNT)]
# Every timestamp and date falls in 2000-2099 (our choice, docs/contract.md). A year
# 9999 or 0001 is a department's bug, and it would break the fold: its due date or local
# day is outside what Python's dates hold, and a trend metric would look back thousands
# of years.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)
Timestamp = Annotated[AwareDatetime, Field(ge=datetime.combine(FIRST_DAY, time(), timezone.utc),
                                           lt=datetime.combine(LAST_DAY + timedelta(days=1), time(), timezone.utc),
                                           description="RFC 3339 with a UTC offset, from 2000-01-01 to 2099-12-31 UTC")]
Day = Annotated[date, Field(ge=FIRST_DAY, le=LAST_DAY, description="YYYY-MM-DD, from 2000-01-01 to 2099-12-31")]


class _Event(BaseModel):
    # strict: no "5" for 5 and no epoch numbers for timestamps; a department's bug
    # should be refused loudly, not guessed at.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    event_id: EventId
    metric: MetricId
    department: DepartmentId | None = None
    # A correction: the event_id of an earlier event of the same department that this one
    # takes the place of. What that event counted is taken back, this one counts instead.
    replaces: EventId | None = None


class CaseEvent(_Event):
    """A 311-style case; sending the same case_id again replaces the earlier version."""

    type: Literal["case"]
    case_id: CaseId
    opened_at: Timestamp
    closed_at: Timestamp | None = None
    due_at: Timestamp | None = None
    attributes: dict[Text, Text] | None = None

    @model_validator(mode="after")
    def _closed_after_opened(self) -> "CaseEvent":
        if self.closed_at is not None and self.closed_at < self.opened_at:
            raise ValueError("closed_at: is before opened_at")
        return self


class MeasurementEvent(_Event):
    """One measurement: a call's answer time, a response time, a survey rating."""

    type: Literal["measurement"]
    occurred_at: Timestamp
    value: Number


class IncidentEvent(_Event):
    """Something that happened (a shooting, a fire), counted against past years."""

    type: Literal["incident"]
    occurred_at: Timestamp
    count: Count = 1


class TallyEvent(_Event):
    """A department's own total for one local day; a later tally for the day replaces it."""

    type: Literal["tally"]
    date: Day
    numerator: NonNegative | None = None
    denominator: NonNegative | None = None
    count: NonNegative | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> "TallyEvent":
        has_ratio = self.numerator is not None or self.denominator is not None
        if has_ratio and self.count is not None:
            raise ValueError("count: give either numerator and denominator, or count, not both")
        if self.numerator is not None and self.denominator is None:
            raise ValueError("denominator: required with numerator")
        if self.denominator is not None and self.numerator is None:
            raise ValueError("numerator: required with denominator")
        if not has_ratio and self.count is None:
            raise ValueError("count: give numerator and denominator, or count")
        return self


class WithdrawalEvent(_Event):
    """Takes back an earlier event of the same department: an incident or measurement sent by
    mistake, a tally, or a case (withdrawing any version of a case withdraws the case)."""

    type: Literal["withdrawal"]
    withdraws: EventId

    @model_validator(mode="after")
    def _withdraws_only(self) -> "WithdrawalEvent":
        if self.replaces is not None:
            raise ValueError("replaces: a withdrawal names what it withdraws in 'withdraws'")
        if self.withdraws == self.event_id:
            raise ValueError("withdraws: names this event itself")
        return self


Event = Annotated[
    Union[CaseEvent, MeasurementEvent, IncidentEvent, TallyEvent, WithdrawalEvent],
    Field(discriminator="type"),
]
EVENT_TYPES = ("case", "measurement", "incident", "tally", "withdrawal")

_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)
_batch_adapter: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason an event was refused: the field (dotted path) and why; `index` in a batch."""

    field: str
    reason: str
    index: int | None = None

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason

    def as_dict(self) -> dict[str, str | int]:
        found: dict[str, str | int] = {"field": self.field, "reason": self.reason}
        if self.index is not None:
            found = {"index": self.index, **found}
        return found


class InvalidEvent(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def _problems(exc: ValidationError, batch: bool = False) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        # The discriminated union puts the type tag in the path ("case.opened_at");
        # a department wants the field it sent.
        loc = list(err["loc"])
        index = None
        if batch and loc and isinstance(loc[0], int):
            index = loc.pop(0)
        loc = [str(p) for p in loc]
        if loc and loc[0] in EVENT_TYPES:
            loc = loc[1:]
        kind = err["type"]
        name_refused = loc[-1:] == ["[key]"]
        if name_refused:
            loc = loc[:-2]  # a refused name: the object that holds it, not the name itself
        field = ".".join(_printable(part) for part in loc)
        message = err["msg"].removeprefix("Value error, ")
        if not field and kind == "value_error" and ": " in message:
            # Cross-field rules below say "field: reason".
            field, message = message.split(": ", 1)
        if kind == "extra_forbidden":
            message = "unknown field (the contract does not have it)"
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "timezone_aware":
            message = "timestamp needs a UTC offset, e.g. 2015-01-02T16:17:43-05:00"
        elif kind in ("greater_than_equal", "less_than", "less_than_equal") and _a_time_bound(err):
            message = f"must fall between {FIRST_DAY} and {LAST_DAY}" + (" (UTC)" if "T" in str(err["ctx"]) else "")
        elif kind in ("greater_than_equal", "less_than_equal"):
            bound = err["ctx"]["ge" if kind == "greater_than_equal" else "le"]
            message = f"must be at {'least' if kind == 'greater_than_equal' else 'most'} {bound:,.10g}"
            if abs(bound) == MAX_AMOUNT:
                message += " (the contract's bound on any one number)"
        elif kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == NO_CONTROL_CHARACTERS:
            message = _control_characters(str(err["input"]), "of a name" if name_refused else "")
        elif kind.startswith("datetime"):
            message = "must be an RFC 3339 timestamp with a UTC offset, e.g. 2015-01-02T16:17:43-05:00"
        elif kind.startswith("date"):
            message = "must be a date written YYYY-MM-DD"
        elif kind == "json_invalid":
            message = "not valid JSON: " + str(err.get("ctx", {}).get("error", message))
        elif kind == "model_type" and not field:
            message = "an event must be a JSON object"
        elif kind == "union_tag_invalid":
            field = "type"
            message = f"must be one of {', '.join(EVENT_TYPES)}"
        elif kind == "union_tag_not_found":
            field = "type"
            message = "required field is missing"
        elif kind == "list_type" and not field and index is None:
            message = "must be an event object or an array of them"
        problems.append(Problem(field, message, index))
    return problems


def _control_characters(text: str, where: str = "") -> str:
    """The refusal of a string with control characters, naming the first (never echoing it)."""
    position, char = next((i, c) for i, c in enumerate(text) if _is_control(c))
    suffix = f" {where}" if where else ""
    return f"must not contain control characters (U+{ord(char):04X} at character {position + 1}{suffix})"


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


def _printable(name: str) -> str:
    """A field name as sent, with any control character written as an escape (an unknown field
    named with a NUL is still named in the refusal, but never carries the NUL itself)."""
    if not any(_is_control(c) for c in name):
        return name
    return "".join(f"\\u{ord(c):04x}" if _is_control(c) else c for c in name)


def _a_time_bound(err: Any) -> bool:
    # Numbers have bounds too (count >= 1); a timestamp's or a date's bound comes back as text.
    return any(isinstance(err.get("ctx", {}).get(bound), str) for bound in ("ge", "lt", "le"))


def parse_event(raw: str | bytes | dict[str, Any]) -> Event:
    """Validate one event (JSON text or an already decoded object) against the contract."""
    try:
        if isinstance(raw, dict):
            # Decoded JSON holds timestamps as strings, which strict Python-mode
            # validation refuses; validating its JSON keeps one set of rules.
            raw = _dumps(raw)
        return _event_adapter.validate_json(raw)
    except ValidationError as exc:
        raise InvalidEvent(_problems(exc)) from None


def parse_events(raw: str | bytes) -> list[Event]:
    """Validate a JSON object or array of events in one pass; problems carry their index."""
    body = raw.lstrip()
    if body[:1] in (b"[", "["):
        try:
            return _batch_adapter.validate_json(raw)
        except ValidationError as exc:
            raise InvalidEvent(_problems(exc, batch=True)) from None
    return [parse_event(raw)]


def _dumps(raw: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(raw)
    except TypeError as exc:
        raise InvalidEvent([Problem("", f"not JSON-serialisable: {exc}")]) from None


def check_against_catalog(event: Event, catalog: Catalog, today: date | None = None) -> list[Problem]:
    """Contract rules that need the catalog: the metric exists and takes this event, and its
    dates fall in the metric's history (from its history start to a day after `today`, the
    city's current local day, when given: ingest gives it, a replay of the past does not)."""
    metric = catalog.by_id.get(event.metric)
    if metric is None:
        return [Problem("metric", f"unknown metric {event.metric!r} (not in the {catalog.city} catalog)")]
    if event.type not in metric.event_types and not isinstance(event, WithdrawalEvent):
        accepted = ", ".join(metric.event_types)
        return [Problem("type", f"metric {metric.id!r} does not accept {event.type!r} events (it accepts: {accepted})")]
    problems: list[Problem] = []
    start = catalog.history_start_of(metric)
    last = None if today is None else today + timedelta(days=1)
    for name, when in _own_dates(event):
        # An instant is compared with the local midnights that bound the allowed days (converted
        # once per day and zone): every event of a batch comes through here, and converting each
        # timestamp to the city's time costs more than the rest of the check.
        if isinstance(when, datetime):
            if when >= _midnight(catalog.zone, start) and (last is None or when < _midnight(catalog.zone, last, 1)):
                continue
            day = local_day(when, catalog)
        else:
            day = when
        if day < start:
            problems.append(Problem(name, f"falls on {day}, before {metric.id}'s history starts ({start})"))
        elif last is not None and day > last:
            problems.append(Problem(name, f"falls on {day}, more than a day after today ({today})"))
    if isinstance(event, CaseEvent):
        if event.due_at is None and metric.due_from_case:
            problems.append(Problem("due_at", f"required: {metric.id} has no SLA in the catalog (due_from_case), "
                                              "so each case says when it is due"))
    elif isinstance(event, MeasurementEvent):
        if metric.min_value is not None and event.value < metric.min_value:
            problems.append(Problem("value", f"must be at least {metric.min_value:g} for {metric.id}"))
        if metric.max_value is not None and event.value > metric.max_value:
            problems.append(Problem("value", f"must be at most {metric.max_value:g} for {metric.id}"))
    elif isinstance(event, TallyEvent):
        wants_count = metric.kind.is_trend
        if wants_count and event.count is None:
            problems.append(Problem("count", f"required: {metric.id} is a trend metric and is tallied by count"))
        elif not wants_count and event.numerator is None:
            problems.append(
                Problem("numerator", f"numerator and denominator required: {metric.id} is a {metric.kind.value} metric")
            )
        if not wants_count and event.numerator is not None and event.denominator is not None:
            problems.extend(_beyond_what_a_unit_counts(metric, event.numerator, event.denominator))
    return problems


def _own_dates(event: Event) -> list[tuple[str, datetime | date]]:
    """An event's own timestamps and dates, by field (a due date may lie ahead; it is not here)."""
    if isinstance(event, CaseEvent):
        if event.closed_at is None:
            return [("opened_at", event.opened_at)]
        return [("opened_at", event.opened_at), ("closed_at", event.closed_at)]
    if isinstance(event, (MeasurementEvent, IncidentEvent)):
        return [("occurred_at", event.occurred_at)]
    if isinstance(event, TallyEvent):
        return [("date", event.date)]
    return []


@lru_cache(maxsize=256)
def _midnight(zone: ZoneInfo, day: date, days_after: int = 0) -> datetime:
    """The instant a local day (plus `days_after`) starts in `zone`."""
    return datetime.combine(day + timedelta(days=days_after), time(), zone)


def _beyond_what_a_unit_counts(metric: Metric, numerator: float, denominator: float) -> list[Problem]:
    """A ratio tally's numerator against what each unit of its denominator can count: a case
    closed on time or a measurement within the threshold counts 0 or 1 (so at most the
    denominator), a survey rating counts from the catalog's min_value to its max_value, and a
    department's own tally (attendance: present of enrolled) within those when the catalog sets them."""
    if metric.feed in (Feed.CASES, Feed.THRESHOLD):
        lowest, highest = 0.0, 1.0
    else:
        lowest, highest = metric.min_value, metric.max_value
    if highest is not None and numerator > highest * denominator:
        if highest == 1:
            return [Problem("numerator", f"must be at most the denominator ({metric.id} is a share of it)")]
        return [Problem("numerator", f"above {highest:g} per unit of denominator")]
    if lowest is not None and lowest > 0 and numerator < lowest * denominator:
        return [Problem("numerator", f"below {lowest:g} per unit of denominator")]
    return []


def validate_event(raw: str | bytes | dict[str, Any], catalog: Catalog, today: date | None = None) -> Event:
    """Parse an event and check it against the catalog; raise InvalidEvent naming every problem."""
    event = parse_event(raw)
    problems = check_against_catalog(event, catalog, today)
    if problems:
        raise InvalidEvent(problems)
    return event


def event_json_schema() -> dict[str, Any]:
    """The contract as a JSON Schema document (for departments and for the OpenAPI spec)."""
    schema = _event_adapter.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"CityScore event (contract version {CONTRACT_VERSION})"
    return schema


def event_to_json(event: Event) -> bytes:
    """The canonical JSON of an event, as written to Kafka and JSONL files."""
    return event.model_dump_json(exclude_none=True).encode()


def local_day(moment: datetime, catalog: Catalog) -> date:
    """The city's calendar day an instant falls on (DST-safe: converts, never shifts)."""
    return moment.astimezone(catalog.zone).date()
