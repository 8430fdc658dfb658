"""The metric catalog: which metrics a city scores, how, and who owns them.

A catalog is a YAML file (Boston's ships as the default). It is validated on load,
and every error names the metric and the field, so a city's analyst can fix the
file without reading code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, time
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.core.windows import Window

DEFAULT_CATALOG = "boston.yaml"
WINDOW_NAMES = ("day", "week", "month", "quarter")


class Kind(str, enum.Enum):
    """Boston's `metric_logic`: how a metric's window score is computed."""

    RATIO = "ratio"
    MEAN_DAILY_RATIO = "mean_daily_ratio"
    TARGET_OVER_MEDIAN = "target_over_median"
    TREND_LOWER_BETTER = "trend_lower_better"
    TREND_HIGHER_BETTER = "trend_higher_better"

    @property
    def is_trend(self) -> bool:
        return self in (Kind.TREND_LOWER_BETTER, Kind.TREND_HIGHER_BETTER)


class Feed(str, enum.Enum):
    """What the department sends for a metric, and so which event types it accepts."""

    CASES = "cases"  # 311-style cases judged on time against an SLA
    THRESHOLD = "threshold"  # measurements counted when value <= threshold
    RATING = "rating"  # survey ratings, summed against their count
    VALUES = "values"  # raw measurements whose median is scored
    INCIDENTS = "incidents"  # counted occurrences, compared with past years
    TALLIES = "tallies"  # one pre-aggregated tally a day


# Which feeds make sense for each kind. A tally is always allowed where the
# aggregate is a plain sum (departments often pre-aggregate), never for medians.
_FEEDS_BY_KIND = {
    Kind.RATIO: {Feed.CASES, Feed.THRESHOLD, Feed.RATING, Feed.TALLIES},
    Kind.MEAN_DAILY_RATIO: {Feed.TALLIES, Feed.THRESHOLD, Feed.RATING, Feed.CASES},
    Kind.TARGET_OVER_MEDIAN: {Feed.VALUES},
    Kind.TREND_LOWER_BETTER: {Feed.INCIDENTS, Feed.TALLIES},
    Kind.TREND_HIGHER_BETTER: {Feed.INCIDENTS, Feed.TALLIES},
}

_EVENT_TYPES_BY_FEED = {
    Feed.CASES: ("case", "tally"),
    Feed.THRESHOLD: ("measurement", "tally"),
    Feed.RATING: ("measurement", "tally"),
    Feed.VALUES: ("measurement",),
    Feed.INCIDENTS: ("incident", "tally"),
    Feed.TALLIES: ("tally",),
}

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SLA(_Strict):
    """A service-level agreement: exactly one of hours, calendar days or business days."""

    hours: PositiveFloat | None = None
    calendar_days: PositiveInt | None = None
    business_days: PositiveInt | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "SLA":
        given = [f for f in ("hours", "calendar_days", "business_days") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of hours, calendar_days, business_days")
        return self

    def describe(self) -> str:
        if self.hours is not None:
            return f"{self.hours:g} hours"
        if self.calendar_days is not None:
            return f"{self.calendar_days} calendar days"
        return f"{self.business_days} business days"


class SLAByAttribute(_Strict):
    """SLAs chosen by a case attribute, e.g. parks lighting 7 days, other requests 5."""

    attribute: str = Field(min_length=1)
    values: dict[str, SLA] = Field(min_length=1)


class TargetFrom(_Strict):
    """A target and the local day it took effect (targets change over the years)."""

    from_: date = Field(validation_alias=AliasChoices("from", "from_"), serialization_alias="from")
    target: PositiveFloat


class Metric(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
    name: str = Field(min_length=1)
    description: str = ""
    kind: Kind
    # A number, or the targets over time: [{from: 2016-01-01, target: 0.8}, {from: 2019-07-01, target: 0.85}].
    target: PositiveFloat | tuple[TargetFrom, ...] | None = None
    department: str = Field(min_length=1)
    feed: Feed
    threshold: float | None = None
    min_value: float | None = None
    max_value: float | None = None
    unit: str | None = None
    sla: SLA | None = None
    sla_by_attribute: SLAByAttribute | None = None
    # true: the catalog sets no SLA for this metric; each case carries its own due time (`due_at`),
    # which its source decides (Philly311 states each request's SLA in its `service_notice`). A
    # case event without one is refused (docs/contract.md).
    due_from_case: bool = False
    case_types: tuple[str, ...] = ()
    # The case attributes a case list may show (e.g. [neighborhood]); the others stay out of lists,
    # which may reach the public pages (docs/scoring.md §5a). Unset: a list shows ids and times only.
    public_attributes: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    # The case attributes on-time shares may be broken down by (e.g. [neighborhood]; docs/scoring.md
    # §5a). Kept on each case whether public or not: a breakdown shows groups and their counts,
    # never a case. Unset: no breakdown.
    breakdowns: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    # Whether the case lists behind this metric's scores may reach the public: the read API's
    # case lists and the public metric page (docs/scoring.md §5a). false: they appear only in
    # Slack, to the department ("Show cases"); counts (the backlog, breakdowns) stay public.
    public_case_lists: bool = True
    # The first local day this metric's data can plausibly fall on (the catalog's
    # history_start when unset): an event dated earlier is a department's mistake, and
    # one such event would move a trend metric's baseline years for good.
    history_start: date | None = None
    # A ratio window pooling a smaller denominator (fewer cases closed, say) is insufficient
    # data rather than a score (docs/scoring.md §4a). Unset: any denominator above 0 scores.
    min_denominator: PositiveFloat | None = None
    # How often data should arrive: "daily" or a number of hours (shared/core/staleness.py,
    # docs/scoring.md §4c). Unset: never judged stale (a trend's quiet day can be a good day).
    expect_data: Literal["daily"] | int | None = None

    @field_validator("expect_data", mode="before")
    @classmethod
    def _expect_data(cls, value: object) -> object:
        if value is None or value == "daily":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{value!r}: give 'daily' or a whole number of hours above 0 (e.g. 48)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Metric":
        if self.min_denominator is not None and self.kind is not Kind.RATIO:
            raise ValueError("min_denominator only applies to kind 'ratio' (the denominator it pools)")
        if self.feed not in _FEEDS_BY_KIND[self.kind]:
            allowed = ", ".join(sorted(f.value for f in _FEEDS_BY_KIND[self.kind]))
            raise ValueError(f"feed {self.feed.value!r} does not fit kind {self.kind.value!r} (use one of: {allowed})")
        if self.kind.is_trend:
            if self.target is not None:
                raise ValueError("trend metrics compare with past years and take no target")
        elif self.target is None:
            raise ValueError(f"target is required for kind {self.kind.value!r}")
        if self.feed is Feed.THRESHOLD and self.threshold is None:
            raise ValueError("threshold is required for feed 'threshold'")
        if self.feed is not Feed.THRESHOLD and self.threshold is not None:
            raise ValueError("threshold only applies to feed 'threshold'")
        if self.feed is Feed.CASES:
            if self.due_from_case:
                if self.sla is not None or self.sla_by_attribute is not None:
                    raise ValueError("due_from_case: give either an sla (the default when a case has no due_at) "
                                     "or due_from_case: true (every case carries its due_at), not both")
            elif self.sla is None:
                raise ValueError("sla is required for feed 'cases' (the default when a case has no due_at), "
                                 "unless due_from_case: true says every case carries its own due_at")
        elif self.sla is not None or self.sla_by_attribute is not None or self.case_types or self.due_from_case:
            raise ValueError("sla, sla_by_attribute, due_from_case and case_types only apply to feed 'cases'")
        if self.public_attributes and self.feed is not Feed.CASES:
            raise ValueError("public_attributes only applies to feed 'cases' (the attributes a case list shows)")
        if len(set(self.public_attributes)) != len(self.public_attributes):
            raise ValueError("public_attributes: name each attribute once")
        if not self.public_case_lists and self.feed is not Feed.CASES:
            raise ValueError("public_case_lists only applies to feed 'cases' (whether its case lists are public)")
        if self.breakdowns and self.feed is not Feed.CASES:
            raise ValueError("breakdowns only applies to feed 'cases' (on-time shares by a case attribute)")
        if len(set(self.breakdowns)) != len(self.breakdowns):
            raise ValueError("breakdowns: name each attribute once")
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            raise ValueError("min_value is above max_value")
        if isinstance(self.target, tuple):
            if not self.target:
                raise ValueError("target: give a number or at least one {from: DATE, target: NUMBER}")
            starts = [change.from_ for change in self.target]
            if starts != sorted(set(starts)):
                raise ValueError("target: the dates each target took effect must be in order, each once")
        return self

    @property
    def targets(self) -> tuple[TargetFrom, ...]:
        """Every target with the day it took effect; a plain number has been in force always."""
        if self.target is None:
            return ()
        if isinstance(self.target, tuple):
            return self.target
        return (TargetFrom(from_=date.min, target=self.target),)

    def target_on(self, day: date) -> float | None:
        """The target in force on local day `day` (a window is scored with the one of its last day).

        Before the first listed date the first target applies: it is the oldest one known.
        """
        targets = self.targets
        if not targets:
            return None
        chosen = targets[0].target
        for change in targets:
            if change.from_ > day:
                break
            chosen = change.target
        return chosen

    @property
    def latest_target(self) -> float | None:
        """The newest target (what the metric aims at now, whatever day is shown)."""
        return self.targets[-1].target if self.targets else None

    @property
    def event_types(self) -> tuple[str, ...]:
        """The contract's event types this metric accepts."""
        return _EVENT_TYPES_BY_FEED[self.feed]

    def sla_for(self, attributes: dict[str, str] | None) -> SLA:
        """The SLA that applies to a case with these attributes."""
        if self.sla_by_attribute is not None and attributes:
            chosen = self.sla_by_attribute.values.get(attributes.get(self.sla_by_attribute.attribute, ""))
            if chosen is not None:
                return chosen
        if self.sla is None:
            # Only a metric with due_from_case has none, and the contract refuses its cases
            # without a due_at: reaching here is a bug, said plainly rather than a None SLA.
            raise ValueError(f"{self.id} has no SLA in the catalog (due_from_case): a case needs its own due_at")
        return self.sla


class Department(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
    name: str = Field(min_length=1)


class Cabinet(_Strict):
    """A group of departments under one chief (Boston's cabinets), reviewed together at a Stat meeting."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
    name: str = Field(min_length=1)
    departments: tuple[Annotated[str, Field(min_length=1)], ...] = Field(min_length=1)


class BusinessHours(_Strict):
    weekdays: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = ("mon", "tue", "wed", "thu", "fri")
    opens: time = time(8, 30)
    closes: time = time(17, 0)

    @model_validator(mode="after")
    def _order(self) -> "BusinessHours":
        if self.opens >= self.closes:
            raise ValueError("opens must be before closes")
        if not self.weekdays:
            raise ValueError("at least one weekday is needed")
        return self

    @property
    def weekday_numbers(self) -> frozenset[int]:
        return frozenset(_WEEKDAYS.index(d) for d in self.weekdays)


class HolidayCalendar(_Strict):
    """Which public holidays stop the business clock (the `holidays` package's codes)."""

    country: str = "US"
    subdivision: str | None = None


# -- feeds: how a city's 311 export becomes case events (docs/feeds.md) -----------------------

# One column name, or several in order of preference (an export's older files may name it
# differently): the first one the file has is read. Names are compared without regard to case.
def _names(value: object) -> object:
    return (value,) if isinstance(value, str) else value


ColumnNames = Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1),
                        BeforeValidator(_names)]


class FeedColumn(_Strict):
    """A column of the export (case id, type, status)."""

    column: ColumnNames


class FeedTime(_Strict):
    """A time column: its format and the time zone its times are written in.

    `format` is `auto` (ISO 8601 like 2019-01-01 00:25:23[.5][+00:00], or US month/day/year
    like 01/31/2024 11:05:07 PM, with or without seconds) or a strptime pattern. A time
    with an offset is the instant it names; one without is local time in `timezone` (the
    feed's, else the catalog's). `date_only`: the column holds a due *day* (any time or
    offset written with it is ignored); the case is due by the end of that day in the
    catalog's zone (23:59:59). `when_status_closed` (closed time only): the column is the
    close time only on rows whose status is closed, and is ignored on the others (Open311's
    `updated_datetime`: the time of any change to an open request, the close of a closed one).
    """

    column: ColumnNames
    format: str = Field(default="auto", min_length=1)
    timezone: str | None = None
    date_only: bool = False
    when_status_closed: bool = False

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _known_zone(value) if value is not None else None

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value != "auto" and "%" not in value:
            raise ValueError(f"{value!r}: give auto or a strptime pattern such as '%m/%d/%Y %I:%M:%S %p'")
        return value


class FeedStatus(_Strict):
    """The status column and the values (any case) that mean the case is closed."""

    column: ColumnNames
    closed: tuple[Annotated[str, Field(min_length=1)], ...] = Field(min_length=1)


class FeedSkip(_Strict):
    """Rows that are not cases to score, counted under `reason` (e.g. information requests).

    Exactly one test: the column's value `equals` one of the values, or `contains` one of
    them (both without regard to case or surrounding spaces), or is `not_blank` (e.g. a
    parent request id: the row is a duplicate of another), or `repeated`: the value was on
    an earlier imported row of the file (a request exported twice).
    """

    reason: str = Field(min_length=1)
    column: ColumnNames
    equals: tuple[str, ...] = ()
    contains: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    not_blank: bool = False
    repeated: bool = False

    @model_validator(mode="after")
    def _one_test(self) -> "FeedSkip":
        given = [name for name in ("equals", "contains", "not_blank", "repeated") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("give exactly one of equals, contains, not_blank, repeated")
        return self


class FeedRecognition(_Strict):
    """How a file's header tells this layout apart from other feeds of the same source."""

    # Any of these columns (any case) in the header.
    any_column: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    # Any of these columns written in capitals (Boston's old exports: CASE_ENQUIRY_ID).
    upper_case_column: tuple[Annotated[str, Field(min_length=1)], ...] = ()

    @model_validator(mode="after")
    def _something(self) -> "FeedRecognition":
        if not self.any_column and not self.upper_case_column:
            raise ValueError("name at least one column in any_column or upper_case_column")
        return self


class CaseFeed(_Strict):
    """A named feed: how the rows of a city's 311 export become case events.

    Columns are named as the export writes them (compared without regard to case). The
    case id, opened, closed and type columns must be in the file; the status, due and
    attribute columns are read when present.
    """

    # What the export is called ("Boston 311"): "not a Boston 311 export".
    title: str = Field(min_length=1)
    # Event ids are <source>-<case id>-<open|closed>-<digest>; several feeds (layouts) may
    # share a source, and `cityscore import csv --feed SOURCE` picks among them by header.
    source: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=40)] | None = None
    layout: str | None = None  # a short name for the summary ("old"); the feed's name when unset
    description: str | None = None  # e.g. "old 2015-2018 layout", shown in the summary
    recognised_by: FeedRecognition | None = None
    timezone: str | None = None  # of times without an offset; the catalog's when unset
    case_id: FeedColumn
    opened: FeedTime
    closed: FeedTime
    due: FeedTime | None = None
    # When the row's case last changed (Open311's updated_datetime, New York's "Resolution
    # Action Updated Date"): part of the event id, so a case reopened to an earlier state is a
    # new version, not a duplicate of that state's event.
    version: FeedTime | None = None
    status: FeedStatus | None = None
    type: FeedColumn
    # Type as written in the export -> metric id; unset: the metrics' case_types.
    types: dict[Annotated[str, Field(min_length=1)], str] | None = None
    # Rows skipped before anything else is read from them (see FeedSkip).
    skip: tuple[FeedSkip, ...] = ()
    # Case attribute -> column (e.g. {neighborhood: neighborhood, zip: zipcode}); blank values are left out.
    attributes: dict[Annotated[str, Field(min_length=1)], ColumnNames] = {}
    # The SLA by type (as written in the export) for rows without a due time; a type not
    # listed takes its metric's SLA from the catalog (sla, sla_by_attribute).
    sla: dict[Annotated[str, Field(min_length=1)], SLA] = {}
    # A column stating each row's SLA in words ("5 Business Days", "3 Calendar Days", "48 Hours":
    # Philly311's and Open311's service_notice): a row without a due time is due that long after
    # it opened, before the SLA by type and the metric's. Blank or unreadable: the next rule.
    sla_notice: FeedColumn | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _known_zone(value) if value is not None else None

    @model_validator(mode="after")
    def _times(self) -> "CaseFeed":
        for name in ("opened", "closed"):
            if getattr(self, name).date_only:
                raise ValueError(f"{name}.date_only: only a due time may be a date (an {name} time is an instant)")
        if self.version is not None and self.version.date_only:
            raise ValueError("version.date_only: only a due time may be a date (a version is an instant)")
        for name in ("opened", "due", "version"):
            column = getattr(self, name)
            if column is not None and column.when_status_closed:
                raise ValueError(f"{name}.when_status_closed: only the closed time may depend on the status")
        if self.closed.when_status_closed and self.status is None:
            raise ValueError("closed.when_status_closed: give status (its column and the values that mean closed)")
        return self


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as America/New_York)") from None
    return value


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    city: str = Field(min_length=1)
    timezone: str
    # Trailing days (`week: 7`) or calendar periods (`week: {period: week, starts: monday}`), per
    # window (shared/core/windows.py).
    windows: dict[str, Window] = Field(default_factory=lambda: {
        name: Window(days=days) for name, days in (("day", 1), ("week", 7), ("month", 30), ("quarter", 90))})
    business_hours: BusinessHours = BusinessHours()
    holidays: HolidayCalendar = HolidayCalendar()
    # The first local day any metric's data can plausibly fall on (see Metric.history_start).
    history_start: date = date(2000, 1, 1)
    departments: tuple[Department, ...] = Field(min_length=1)
    metrics: tuple[Metric, ...] = Field(min_length=1)
    # Named feeds: how the city's 311 exports become case events (docs/feeds.md).
    feeds: dict[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=40)], CaseFeed] = {}
    # Departments grouped under their cabinet chiefs: each cabinet has its page and its scorecard
    # (docs/architecture.md). A department belongs to one cabinet at most. Unset: no cabinets.
    cabinets: tuple[Cabinet, ...] = ()
    # The near-target band (docs/scoring.md §1): a shown score from this value up to below 1 is
    # "near target", a mark of its own between "on target" and "below target" (Louisville's
    # LouieStat marks within 10 % of target). Unset: no band, a score is below, at or above.
    near_target: float | None = Field(default=None, gt=0, lt=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as America/New_York)") from None
        return value

    @field_validator("near_target")
    @classmethod
    def _near_target(cls, value: float | None) -> float | None:
        # Compared with the score as shown (two decimals), so a third decimal could never matter.
        if value is not None and round(value, 2) != value:
            raise ValueError(f"{value!r}: give a score with at most two decimals, e.g. 0.9 (the band is "
                             "judged on the score as shown)")
        return value

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: dict[str, Window]) -> dict[str, Window]:
        if "week" not in value:
            # Trend day scores use the week's historical mean as their baseline (docs/scoring.md §3).
            raise ValueError("a 'week' window is required")
        return value

    @model_validator(mode="after")
    def _references(self) -> "Catalog":
        seen: set[str] = set()
        departments = {d.id for d in self.departments}
        case_types: dict[str, str] = {}
        for index, metric in enumerate(self.metrics):
            where = f"metrics[{index}] ({metric.id})"
            if metric.id in seen:
                raise ValueError(f"{where}: id is used twice")
            seen.add(metric.id)
            if metric.department not in departments:
                raise ValueError(f"{where}.department: unknown department {metric.department!r}")
            for case_type in metric.case_types:
                if case_type in case_types:
                    raise ValueError(f"{where}.case_types: {case_type!r} already maps to {case_types[case_type]}")
                case_types[case_type] = metric.id
        return self

    @model_validator(mode="after")
    def _cabinets(self) -> "Catalog":
        problems = []
        departments = {d.id for d in self.departments}
        seen_ids: set[str] = set()
        member_of: dict[str, str] = {}
        for index, cabinet in enumerate(self.cabinets):
            where = f"cabinets[{index}] ({cabinet.id})"
            if cabinet.id in seen_ids:
                problems.append(f"{where}.id: used twice")
            seen_ids.add(cabinet.id)
            for department in cabinet.departments:
                if department not in departments:
                    problems.append(f"{where}.departments: unknown department {department!r}")
                elif department in member_of:
                    problems.append(f"{where}.departments: {department!r} is already in cabinet "
                                    f"{member_of[department]!r} (a department belongs to one cabinet)")
                else:
                    member_of[department] = cabinet.id
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _feed_references(self) -> "Catalog":
        problems = []
        for name, feed in self.feeds.items():
            where = f"feeds.{name}"
            types = feed.types if feed.types is not None else self.case_type_map
            # An empty `types` is a mistake; a feed relying on case_types may map nothing in a
            # catalog that extends another with fewer metrics (it then imports no row).
            if feed.types is not None and not feed.types:
                problems.append(f"{where}.types: map at least one type to a metric, or leave types out "
                                "to use the metrics' case_types")
            for case_type, metric_id in (feed.types or {}).items():
                metric = self.by_id.get(metric_id)
                if metric is None:
                    problems.append(f"{where}.types[{case_type!r}]: unknown metric {metric_id!r}")
                elif metric.feed is not Feed.CASES:
                    problems.append(f"{where}.types[{case_type!r}]: metric {metric_id!r} is fed "
                                    f"{metric.feed.value!r}, not cases")
            for case_type in feed.sla:
                if case_type not in types:
                    problems.append(f"{where}.sla[{case_type!r}]: not a type this feed maps to a metric "
                                    "(give it under types, or the metric's case_types)")
            if feed.due is None and feed.sla_notice is None:
                # Such a type's rows could never be imported: say so at `catalog check`, not as
                # every row skipped at the first import.
                for case_type, metric_id in types.items():
                    metric = self.by_id.get(metric_id)
                    if metric is not None and metric.due_from_case and case_type not in feed.sla:
                        problems.append(f"{where}.types[{case_type!r}]: metric {metric_id!r} takes each case's "
                                        "due time (due_from_case), but this feed names no due column, no "
                                        "sla_notice and no sla for the type")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def by_id(self) -> dict[str, Metric]:
        return {m.id: m for m in self.metrics}

    @cached_property
    def case_type_map(self) -> dict[str, str]:
        """Case type as written in the city's 311 export -> metric id."""
        return {t: m.id for m in self.metrics for t in m.case_types}

    @cached_property
    def departments_by_id(self) -> dict[str, Department]:
        return {d.id: d for d in self.departments}

    @cached_property
    def cabinets_by_id(self) -> dict[str, Cabinet]:
        return {c.id: c for c in self.cabinets}

    def cabinet_of(self, department: str) -> Cabinet | None:
        """The cabinet the department belongs to, if the catalog groups it in one."""
        return next((c for c in self.cabinets if department in c.departments), None)

    def metric(self, metric_id: str) -> Metric:
        return self.by_id[metric_id]

    def metrics_of(self, department: str) -> list[Metric]:
        return [m for m in self.metrics if m.department == department]

    def history_start_of(self, metric: Metric) -> date:
        """The first local day the metric's data can plausibly fall on."""
        return metric.history_start or self.history_start


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message lists every problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def _location(catalog_data: object, loc: tuple) -> str:
    """Render a pydantic error location, naming the metric by its id where possible."""
    parts: list[str] = []
    node = catalog_data
    for step in loc:
        if isinstance(step, int):
            label = f"[{step}]"
            if isinstance(node, list) and 0 <= step < len(node):
                node = node[step]
                if isinstance(node, dict) and isinstance(node.get("id"), str):
                    label += f" ({node['id']})"
            else:
                node = None
            parts.append(label)
        else:
            # A name the file itself uses (a feed called "streets") is never pydantic's.
            if not (isinstance(node, dict) and step in node) and step.startswith(("function-", "constrained-", "literal[", "int", "float", "str")) or step in (
                "function-after",
            ):
                continue  # pydantic's internal validator names say nothing to a catalog author
            node = node.get(step) if isinstance(node, dict) else None
            parts.append(("." if parts else "") + str(step))
    return "".join(parts) or "(top level)"


def parse_catalog(data: object, source: str = "<catalog>") -> Catalog:
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_location(data, err['loc'])}: {message}")
        raise CatalogError(source, problems) from None


# A catalog may start from another and replace some of its top-level keys
# (`extends: boston.yaml` then `windows: ...`): Boston's calendar catalog is its rolling one
# with other windows, and a copy of the 23 metrics would drift from the original.
EXTENDS = "extends"
# A few fields of a few metrics, by id (`metric_overrides: {311-call-center: {target: [...]}}`):
# a target history or an SLA changed without copying the metric.
METRIC_OVERRIDES = "metric_overrides"


def shipped_catalogs() -> list[str]:
    """The names of the catalogs that ship with the code (shared/catalogs), e.g. boston.yaml."""
    return sorted(entry.name for entry in resources.files("shared.catalogs").iterdir()
                  if entry.name.endswith(".yaml"))


def _is_shipped(name: str) -> bool:
    # Only a bare file name can name a shipped catalog; a path always means a file.
    return name == Path(name).name and name in shipped_catalogs()


def _shipped_names() -> str:
    return ", ".join(shipped_catalogs())


@dataclass(frozen=True)
class _Found:
    """One catalog file found: how errors name it, what a cycle is told by, and its text."""

    label: str
    key: str
    text: str
    # Where the file's own `extends` is looked for; None for a shipped catalog, whose
    # `extends` can only name another shipped catalog.
    folder: Path | None


def _shipped(name: str, label: str | None = None) -> _Found:
    text = resources.files("shared.catalogs").joinpath(name).read_text(encoding="utf-8")
    return _Found(label or f"shipped catalog ({name})", f"shipped:{name}", text, None)


def _file(path: Path) -> _Found:
    """Read a catalog file; OSError is left to the caller, which knows how the file was named."""
    return _Found(str(path), str(path.resolve()), path.read_text(encoding="utf-8"), path.parent)


def _top(path: str | Path | None) -> _Found:
    """The catalog load_catalog was asked for: a file, or else a shipped catalog's bare name."""
    if path is None:
        return _shipped(DEFAULT_CATALOG, f"default catalog ({DEFAULT_CATALOG})")
    given = str(path)  # as written: Path would turn ./boston.yaml, a path, into a bare name
    path = Path(path)
    try:
        return _file(path)
    except FileNotFoundError:
        if _is_shipped(given):
            return _shipped(given)
        if given == path.name:
            raise CatalogError(str(path), [f"cannot read: no such file, and no catalog shipped with CityScore "
                                           f"has that name (shipped: {_shipped_names()})"]) from None
        raise CatalogError(str(path), ["cannot read: No such file or directory"]) from None
    except OSError as exc:
        raise CatalogError(str(path), [f"cannot read: {exc.strerror}"]) from None


def _base(found: _Found, reference: object) -> _Found:
    """The catalog that `found` extends: a file relative to it if there is one, else a shipped one."""
    if not isinstance(reference, str) or not reference.strip():
        raise CatalogError(found.label, [f"{EXTENDS}: give the name of a shipped catalog ({_shipped_names()}) "
                                         f"or a path relative to this file, not {reference!r}"])
    if found.folder is None:
        if _is_shipped(reference):
            return _shipped(reference)
        raise CatalogError(found.label, [f"{EXTENDS}: {reference!r} is not a shipped catalog "
                                         f"(shipped: {_shipped_names()})"])
    path = found.folder / reference
    try:
        return _file(path)
    except FileNotFoundError:
        if _is_shipped(reference):
            return _shipped(reference)
        if reference == Path(reference).name:
            raise CatalogError(found.label, [f"{EXTENDS}: {reference!r} is neither a file beside this one "
                                             f"nor a shipped catalog (shipped: {_shipped_names()})"]) from None
        raise CatalogError(found.label, [f"{EXTENDS}: {reference!r}: cannot read {path}: "
                                         "No such file or directory"]) from None
    except OSError as exc:
        raise CatalogError(found.label, [f"{EXTENDS}: {reference!r}: cannot read {path}: {exc.strerror}"]) from None


def _mapping(found: _Found) -> dict:
    try:
        data = yaml.safe_load(found.text)
    except yaml.YAMLError as exc:
        raise CatalogError(found.label, [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise CatalogError(found.label, ["the file must hold a mapping with city, timezone, departments and metrics"])
    return data


def _merged(found: _Found, chain: tuple[_Found, ...] = ()) -> tuple[dict, list[str]]:
    """The catalog's data with every `extends` applied, and the bases' names as written.

    Each top-level key of the extending file replaces the base's value as a whole (the
    extending file's `windows:` are all the windows; its `metrics:` all the metrics); then
    its `metric_overrides` change single fields of single metrics. Only the final result
    must be a complete catalog, so a base may be a partial one.
    """
    data = _mapping(found)
    has_overrides = METRIC_OVERRIDES in data
    overrides = data.pop(METRIC_OVERRIDES, None)
    bases: list[str] = []
    if EXTENDS in data:
        reference = data.pop(EXTENDS)
        base = _base(found, reference)
        seen = chain + (found,)
        if any(earlier.key == base.key for earlier in seen):
            loop = " -> ".join([earlier.label for earlier in seen] + [base.label])
            raise CatalogError(found.label, [f"{EXTENDS}: {reference!r} leads back to {base.label} "
                                             f"(a cycle: {loop})"])
        base_data, base_bases = _merged(base, seen)
        if "departments" in data and "cabinets" not in data:
            # Cabinets group the base's departments: a file with departments of its own has none
            # of them unless it gives its own (a city extending Boston's catalog has no Boston cabinets).
            base_data.pop("cabinets", None)
        data = {**base_data, **data}
        bases = [reference, *base_bases]
    if has_overrides:
        data["metrics"] = _overridden(found, data.get("metrics"), overrides)
    return data, bases


def _overridden(found: _Found, metrics: object, overrides: object) -> list:
    """The metrics with `metric_overrides` applied: each given field replaces the metric's own."""
    shape = (f"{METRIC_OVERRIDES}: give a mapping of metric id to the fields to change, "
             "e.g. {311-call-center: {target: 0.9}}")
    if not isinstance(overrides, dict):
        raise CatalogError(found.label, [shape])
    if not isinstance(metrics, list):
        raise CatalogError(found.label, [f"{METRIC_OVERRIDES}: there are no metrics to change"])
    changed = list(metrics)
    index = {metric.get("id"): at for at, metric in enumerate(metrics) if isinstance(metric, dict)}
    problems = []
    for metric_id, fields in overrides.items():
        where = f"{METRIC_OVERRIDES}.{metric_id}"
        if not isinstance(fields, dict):
            problems.append(f"{where}: give a mapping of the fields to change, e.g. {{target: 0.9}}")
        elif metric_id not in index:
            problems.append(f"{where}: no metric has this id")
        elif "id" in fields:
            problems.append(f"{where}.id: a metric's id cannot be overridden "
                            "(give the whole metric under metrics: instead)")
        else:
            changed[index[metric_id]] = {**changed[index[metric_id]], **fields}
    if problems:
        raise CatalogError(found.label, problems)
    return changed


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate a catalog; None loads Boston's shipped default.

    `path` is a file, or the bare name of a shipped catalog (boston-calendar.yaml) when no
    file of that name is there. A catalog may extend another (`extends: boston.yaml`).
    """
    found = _top(path)
    data, bases = _merged(found)
    source = found.label if not bases else f"{found.label} (extends {' -> '.join(bases)})"
    return parse_catalog(data, source)
