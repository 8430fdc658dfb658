"""Where today's score stands in the metric's own past year: the percentile of Boston's 2016 toolkit.

Boston's open-source CityScore toolkit (2016) showed, beside each metric's score, a
"percentile": where today's score ranks among the metric's past scores. Ours
(docs/scoring.md §4b): the share, 0 to 100, of the metric's `day` scores as of
each of the 365 dates before the as-of date (the dates with a score) that are at or below
the as-of date's own day score. Null when the as-of date has no day score, when none of
those dates has one, or when the catalog has no `day` window.

Pure: it scores each past date from the same day totals with the same core as the board.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Iterable, Mapping

from shared.core.catalog import Catalog, Metric
from shared.core.scoring import (
    DaysOf,
    Scoreboard,
    current_mean,
    historical_mean,
    insufficient_if_data,
    score_target_window,
    score_trend,
)
from shared.core.windows import Period, Window, earliest_start, years_back

# A year of as-of dates: every season once, a cost that does not grow with the metric's age,
# and a ranking against today's operations rather than those of a decade ago.
HISTORY_DAYS = 365
DAY = "day"
# Scores equal to nine significant digits are ties: the database adds a day's parts in
# another order than memory does, and a tie must not rank differently in the two.
REL_TOL = 1e-9


def percentile_rank(score: float | None, past: Iterable[float]) -> float | None:
    """The share (0–100) of `past` scores at or below `score`; None with no score or no past."""
    past = list(past)
    if score is None or not past:
        return None
    at_or_below = sum(1 for value in past if value <= score or math.isclose(value, score, rel_tol=REL_TOL))
    return 100.0 * at_or_below / len(past)


def history_dates(as_of: date) -> list[date]:
    """The as-of dates ranked against: the HISTORY_DAYS dates before `as_of`, oldest first."""
    return [as_of - timedelta(days=back) for back in range(HISTORY_DAYS, 0, -1)]


def reach(windows: Mapping[str, Window], as_of: date) -> date:
    """The first local day the percentile as of `as_of` reads (trends also read past years of it)."""
    wanted = {name: windows[name] for name in (DAY, "week") if name in windows}
    return earliest_start(wanted, as_of - timedelta(days=HISTORY_DAYS))


def day_scores(metric: Metric, days: DaysOf, as_of_dates: Iterable[date], windows: Mapping[str, Window],
               first_day: date | None) -> dict[date, float | None]:
    """The `day` window's score as of each date, as `scoring.score_metric` gives it.

    A trend's day score keeps the week's baseline (docs/scoring.md §3), computed once per
    distinct week: a calendar week's baseline is the same for its seven as-of dates.
    """
    window = windows[DAY]
    scores: dict[date, float | None] = {}
    if metric.kind.is_trend:
        as_of_dates = list(as_of_dates)
        week = windows["week"]
        baselines = week_baselines(days, week, as_of_dates, first_day)
        for as_of in as_of_dates:
            dates = window.dates(as_of)
            result = score_trend(metric.kind, current_mean(days, dates), baselines[week.span(as_of)])
            scores[as_of] = insufficient_if_data(result, days, dates).score
        return scores
    for as_of in as_of_dates:
        scores[as_of] = score_target_window(metric, days, window.dates(as_of)).score
    return scores


def week_baselines(days: DaysOf, week: Window, as_of_dates: list[date],
                   first_day: date | None) -> dict[tuple[date, date], float | None]:
    """`scoring.historical_mean` of `week` as of each date, keyed by the week's span (first, last day).

    A year of trailing weeks would move 7 days back to every past year 365 times over; instead
    each past year's counts are moved once, for the whole run of days, and each week is a
    difference of running sums: the same means, a fraction of the work. Calendar months (whole
    months of each year, not moved days) are few in a year and computed as they are.
    """
    if first_day is None:
        return {week.span(as_of): None for as_of in as_of_dates}
    if week.period is Period.MONTH:
        found: dict[tuple[date, date], float | None] = {}
        for as_of in as_of_dates:
            span = week.span(as_of)
            if span not in found:
                found[span] = historical_mean(days, week, as_of, first_day)
        return found
    spans = {week.span(as_of) for as_of in as_of_dates}
    first = min(start for start, _ in spans)
    length = (max(end for _, end in spans) - first).days + 1
    run = [first + timedelta(days=offset) for offset in range(length)]
    latest_start = max(start for start, _ in spans)
    running: list[list[float]] = []  # per past year y (index y-1): running sums of the moved counts
    while years_back(latest_start, len(running) + 1) >= first_day:
        total, sums = 0.0, [0.0]
        for day in run:
            totals = days.get(years_back(day, len(running) + 1))
            if totals is not None:
                total += totals.count
            sums.append(total)
        running.append(sums)
    found = {}
    for start, end in spans:
        # As historical_mean: a year counts when the window's earliest moved date is on or after
        # the first day with data.
        years = 0
        while years < len(running) and years_back(start, years + 1) >= first_day:
            years += 1
        if years == 0:
            found[(start, end)] = None
            continue
        low, high = (start - first).days, (end - first).days + 1
        total = sum(sums[high] - sums[low] for sums in running[:years])
        found[(start, end)] = total / ((high - low) * years)
    return found


def percentile(metric: Metric, days: DaysOf, as_of: date, windows: Mapping[str, Window],
               first_day: date | None = None) -> float | None:
    """Where the as-of date's day score ranks among the day scores of the year before it (0–100)."""
    if DAY not in windows:
        return None
    if first_day is None and days:
        first_day = min(days)
    if first_day is None or as_of < first_day:
        return None
    # Dates before the first day with data have no score of any kind: not worth scoring.
    wanted = [day for day in history_dates(as_of) if day >= first_day] + [as_of]
    scores = day_scores(metric, days, wanted, windows, first_day)
    today = scores.pop(as_of)
    return percentile_rank(today, (score for score in scores.values() if score is not None))


def percentiles(catalog: Catalog, days_of: Mapping[str, DaysOf], as_of: date,
                first_days: Mapping[str, date] | None = None) -> dict[str, float | None]:
    """Every catalog metric's percentile as of `as_of`, in catalog order."""
    empty: dict = {}
    return {metric.id: percentile(metric, days_of.get(metric.id, empty), as_of, catalog.windows,
                                  (first_days or {}).get(metric.id))
            for metric in catalog.metrics}


def with_percentiles(board: Scoreboard, catalog: Catalog, days_of: Mapping[str, DaysOf],
                     first_days: Mapping[str, date] | None = None) -> Scoreboard:
    """The board with each metric's percentile beside its scores."""
    return board._replace(percentiles=percentiles(catalog, days_of, board.as_of, first_days))
