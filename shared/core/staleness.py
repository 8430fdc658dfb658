"""Stale feeds: has a metric's data stopped arriving (docs/scoring.md §4c)?

A department's feed that goes quiet does not make a score fall: a ratio's window keeps its
older days, a trend's count drops and may read as a great week. So a metric whose catalog
entry says how often data should arrive (`expect_data`) is judged on the last local day
that has data for it, the same day totals every score is computed from.

Pure: no clock and no I/O; the caller gives the as-of date and the last day with data.
"""

from __future__ import annotations

from datetime import date
from typing import Iterable, Mapping, NamedTuple

from shared.core.catalog import Metric

HOURS_PER_DAY = 24


def expected_hours(metric: Metric) -> int | None:
    """The longest quiet the metric's feed may have, in hours: "daily" is 24; None: unchecked."""
    if metric.expect_data is None:
        return None
    return HOURS_PER_DAY if metric.expect_data == "daily" else metric.expect_data


def expected_words(metric: Metric) -> str | None:
    """"daily" or "every 48 hours", as the catalog says it (the JSON's "expected")."""
    if metric.expect_data is None:
        return None
    return "daily" if metric.expect_data == "daily" else f"every {metric.expect_data} hours"


class FeedStatus(NamedTuple):
    """Whether a metric's feed is stale as of a local day, and its last day with data."""

    last_data: date | None  # the last local day on or before the as-of day with data; None: none
    stale: bool
    expected: str  # "daily" or "every N hours"

    def as_dict(self) -> dict[str, str | bool | None]:
        return {"last_data": None if self.last_data is None else self.last_data.isoformat(),
                "stale": self.stale, "expected": self.expected}


def feed_status(metric: Metric, last_data: date | None, as_of: date) -> FeedStatus | None:
    """The metric's feed as of the end of local day `as_of`; None when it declares no expect_data.

    Quiet is counted in whole local days, the granularity of the day totals: from the end of
    the last day with data to the end of the as-of day is (as_of - last_data) days. The feed
    is stale when that is longer than `expect_data` hours. So "daily" (24 hours) forgives one
    quiet day, the as-of day (a feed sent each morning for the day before has not arrived yet
    when the board turns at midnight), and is stale when the as-of day and the day before it
    both have no data. No day with data at all is stale: the data was expected and never came.
    `last_data` after `as_of` is not this board's business: give the last day up to `as_of`.
    """
    hours = expected_hours(metric)
    if hours is None:
        return None
    if last_data is not None and last_data > as_of:
        raise ValueError(f"last_data {last_data} is after the as-of day {as_of}: give the last day up to it")
    stale = last_data is None or (as_of - last_data).days * HOURS_PER_DAY > hours
    return FeedStatus(last_data, stale, expected_words(metric) or "")


def last_day_with_data(days: Iterable[date], as_of: date) -> date | None:
    """The last of `days` on or before `as_of` (a metric's days with data), or None."""
    return max((day for day in days if day <= as_of), default=None)


def last_days(days_of: Mapping[str, Iterable[date]], as_of: date) -> dict[str, date | None]:
    """Each metric's last day with data up to `as_of`, from its days (the Ledger's `days`): what
    ScoreReader.last_data reads from day_totals."""
    return {metric_id: last_day_with_data(days, as_of) for metric_id, days in days_of.items()}


def feed_statuses(metrics: Iterable[Metric], last_data: Mapping[str, date | None],
                  as_of: date) -> dict[str, FeedStatus]:
    """Each metric that declares expect_data, with its feed as of `as_of`."""
    statuses = {}
    for metric in metrics:
        status = feed_status(metric, last_data.get(metric.id), as_of)
        if status is not None:
            statuses[metric.id] = status
    return statuses


def no_data_words(status: FeedStatus, as_of: date) -> str:
    """What the board says beside a stale metric: "no data since 3 February" (the last day with
    data; its year too when not the as-of day's), or "no data yet" when none ever came."""
    if status.last_data is None:
        return "no data yet"
    day = status.last_data
    return f"no data since {day.day} {day:%B}" + (f" {day.year}" if day.year != as_of.year else "")


def stale_marks(metrics: Iterable[Metric], last_data: Mapping[str, date | None] | None,
                as_of: date) -> dict[str, str]:
    """Each stale metric's words ("no data since 3 February"), by id; none when `last_data` was
    not read (a board without it says nothing about its feeds)."""
    if last_data is None:
        return {}
    return {metric_id: no_data_words(status, as_of)
            for metric_id, status in feed_statuses(metrics, last_data, as_of).items() if status.stale}
