"""A catalog's windows: which local days a window of a score covers (docs/scoring.md §3).

Two forms, chosen per window in the catalog's `windows:`:

- trailing days (`week: 7`): the N local days ending on the as-of date, the 2016 system's
  and Boston's open-source toolkit's "rolling" windows;
- a calendar period (`week: {period: week, starts: monday}`, `month: {period: month}`,
  `quarter: {period: month, count: 3}`): the last complete period ending on or before the
  as-of date, as Boston publishes today. A Saturday as-of date still shows the week that
  ended the Sunday before; the last day of a month shows that month.

Pure: dates in, dates out.
"""

from __future__ import annotations

import calendar
import enum
from datetime import date, timedelta
import itertools
from functools import lru_cache
from typing import Iterator, Literal, Mapping

from pydantic import BaseModel, ConfigDict, PositiveInt, model_validator

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class Period(str, enum.Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


def years_back(day: date, years: int) -> date:
    """The same calendar date `years` earlier; 29 February becomes 28 February."""
    year = day.year - years
    if day.month == 2 and day.day == 29:
        return date(year, 2, 28)
    return day.replace(year=year)


def month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def months_before(year: int, month: int, months: int) -> tuple[int, int]:
    """(year, month) `months` calendar months before (year, month)."""
    index = year * 12 + (month - 1) - months
    return index // 12, index % 12 + 1


class Window(BaseModel):
    """One window: `days` trailing days, or `count` complete calendar `period`s."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: PositiveInt | None = None
    period: Period | None = None
    # The first day of a calendar week (Boston's weeks run Monday to Sunday).
    starts: Weekday | None = None
    count: PositiveInt = 1

    @model_validator(mode="before")
    @classmethod
    def _a_number_is_trailing_days(cls, value: object) -> object:
        # `week: 7` is today's form; keep it, and read it as trailing days.
        if isinstance(value, int) and not isinstance(value, bool):
            return {"days": value}
        if not isinstance(value, (dict, Window)):
            # pydantic would say "a valid dictionary or instance of Window": say what to write.
            raise ValueError("give a number of trailing days (week: 7) or a calendar period "
                             "(week: {period: week, starts: monday})")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> "Window":
        if (self.days is None) == (self.period is None):
            raise ValueError("give a number of trailing days (week: 7) or a calendar period "
                             "(week: {period: week, starts: monday}), not both or neither")
        # count: 1 is let through: it is the default, and a dumped catalog (model_dump) writes it.
        if self.days is not None and (self.starts is not None or self.count != 1):
            raise ValueError("starts and count only apply to a calendar period")
        if self.starts is not None and self.period is not Period.WEEK:
            raise ValueError("starts only applies to period: week")
        return self

    @property
    def is_calendar(self) -> bool:
        return self.period is not None

    @property
    def first_weekday(self) -> int:
        return WEEKDAYS.index(self.starts or "monday")

    @property
    def reach_days(self) -> int:
        """At most how many days before the as-of date (counting it) the window can start."""
        if self.days is not None:
            return self.days
        if self.period is Period.DAY:
            return self.count
        if self.period is Period.WEEK:
            return 7 * self.count + 6
        return 31 * (self.count + 1)

    def span(self, as_of: date) -> tuple[date, date]:
        """The first and last local day this window covers as of `as_of` (both inclusive)."""
        if self.days is not None:
            return as_of - timedelta(days=self.days - 1), as_of
        if self.period is Period.DAY:
            return as_of - timedelta(days=self.count - 1), as_of
        if self.period is Period.WEEK:
            # The last complete week ends on the weekday before the week's first day.
            last_weekday = (self.first_weekday - 1) % 7
            end = as_of - timedelta(days=(as_of.weekday() - last_weekday) % 7)
            return end - timedelta(days=7 * self.count - 1), end
        # Months: the as-of date's own month counts only once it is complete.
        if as_of == month_end(as_of.year, as_of.month):
            year, month = as_of.year, as_of.month
        else:
            year, month = months_before(as_of.year, as_of.month, 1)
        first_year, first_month = months_before(year, month, self.count - 1)
        return date(first_year, first_month, 1), month_end(year, month)

    def dates(self, as_of: date) -> list[date]:
        """Every local day of the window as of `as_of`, oldest first."""
        return list(window_dates(self, as_of))

    def past_year_dates(self, as_of: date, years: int) -> list[date]:
        """The same window `years` years earlier, for a trend's baseline.

        Calendar months are whole months of that year (a February of 28 or 29 days);
        other windows move each day back (29 February becomes 28 February).
        """
        return list(past_year_dates(self, as_of, years))

    def past_years(self, as_of: date) -> Iterator[tuple[date, ...]]:
        """past_year_dates for 1, 2, 3… years back, oldest dates first within each year."""
        for years in itertools.count(1):
            yield past_year_dates(self, as_of, years)

    def describe(self) -> str:
        """The window in words, for `catalog check` and the pages."""
        if self.days is not None:
            return "the as-of day" if self.days == 1 else f"the last {self.days} days up to the as-of day"
        if self.period is Period.DAY:
            return "the as-of day" if self.count == 1 else f"the last {self.count} days up to the as-of day"
        if self.period is Period.WEEK:
            first = (self.starts or "monday").capitalize()
            last = WEEKDAYS[(self.first_weekday - 1) % 7].capitalize()
            weeks = "week" if self.count == 1 else f"{self.count} weeks"
            return f"the last complete {weeks} ({first} to {last}) ending on or before the as-of day"
        months = "calendar month" if self.count == 1 else f"{self.count} calendar months"
        return f"the last complete {months} ending on or before the as-of day"


def spans(windows: Mapping[str, Window], as_of: date) -> dict[str, tuple[date, date]]:
    """Each window's first and last local day as of `as_of` (both inclusive), by the window's name:
    what the board, the read API, the pages, Slack and the terminal say each score covers."""
    return {name: window.span(as_of) for name, window in windows.items()}


def earliest_start(windows: Mapping[str, Window], as_of: date) -> date:
    """The first local day any of these windows covers as of `as_of` (what must be read)."""
    return min(start for start, _ in spans(windows, as_of).values())


def days_up_to(end: date, count: int) -> list[date]:
    """The `count` local days ending on `end`, oldest first: a run of as-of dates for a history,
    or the days of a trailing window. A catalog's window gives its own days (Window.dates)."""
    return [end - timedelta(days=offset) for offset in range(count - 1, -1, -1)]


# A board scores every trend metric's windows against the same past years, and a history or a
# percentile scores neighbouring dates with the same windows: the dates are worked out once
# (a past board spent a fifth of its scoring time making the same dates again). Tuples, so
# that no caller can change what the next one gets; a few MB at most.
@lru_cache(maxsize=2048)
def window_dates(window: Window, as_of: date) -> tuple[date, ...]:
    start, end = window.span(as_of)
    return tuple(days_up_to(end, (end - start).days + 1))


@lru_cache(maxsize=4096)
def past_year_dates(window: Window, as_of: date, years: int) -> tuple[date, ...]:
    if window.period is Period.MONTH:
        end = window.span(as_of)[1]
        return window_dates(window, month_end(end.year - years, end.month))
    return tuple(years_back(day, years) for day in window_dates(window, as_of))
