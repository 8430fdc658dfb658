"""The scoring core: pure functions from daily totals to window scores (docs/scoring.md).

No Kafka, no SQL, no clock. The scorer, the offline `cityscore score` command and
the tests all call these same functions, so a score means the same thing wherever
it is computed. State is one `DayTotals` per metric and local day.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Container, Iterable, Mapping, NamedTuple

from shared.core.catalog import Catalog, Kind, Metric
from shared.core.staleness import feed_statuses
from shared.core.windows import Window, spans, years_back


@dataclass(slots=True)
class DayTotals:
    """Everything a metric needs from one local day.

    `numerator`/`denominator` feed ratio kinds, `count` feeds trends, and `values`
    keeps raw measurements for medians (a median cannot be pooled from sums).
    """

    numerator: float = 0.0
    denominator: float = 0.0
    count: float = 0.0
    values: list[float] = field(default_factory=list)


# A window's state beside its score (docs/scoring.md §4a): scored; no data at all in the window;
# or data the kind cannot score (a trend with no past year to compare with, a median of 0, days
# whose denominators are all 0, a ratio below the metric's min_denominator).
SCORED, NO_DATA, INSUFFICIENT_DATA = "scored", "no_data", "insufficient_data"


class WindowScore(NamedTuple):
    """A score with the numerator and denominator Boston publishes beside it."""

    score: float | None
    numerator: float | None
    denominator: float | None
    # A null score whose window has data, just not enough to score: "insufficient data", which a
    # reader must not take for "nothing happened". Ignored when there is a score.
    insufficient: bool = False

    @property
    def state(self) -> str:
        if self.score is not None:
            return SCORED
        return INSUFFICIENT_DATA if self.insufficient else NO_DATA

    def as_dict(self) -> dict[str, float | str | None]:
        return {"score": self.score, "numerator": self.numerator, "denominator": self.denominator,
                "state": self.state}


NULL = WindowScore(None, None, None)
INSUFFICIENT = WindowScore(None, None, None, True)

DaysOf = Mapping[date, DayTotals]


def standing(score: float | None, near_target: float | None = None) -> str:
    """'below', 'at' or 'above' target as the score is shown (two decimals), or 'none'.

    The board, the console table and the follow-up alerts all judge the shown figure,
    so a score of 0.996 reads 1.00, is on target, and asks nobody to follow up.
    `near_target` (the catalog's band, e.g. 0.9): a shown score from it up to below 1 is
    'near' instead of 'below', a mark of its own on the pages and in Slack. Only what is
    shown passes it: a near-target score is still below target, and the follow-up alerts,
    which never pass it, still fire for it (docs/scoring.md §1).
    """
    if score is None or not math.isfinite(score):
        return "none"
    shown = round(score, 2)
    if shown < 1:
        return "near" if near_target is not None and shown >= near_target else "below"
    return "above" if shown > 1 else "at"


def as_of_at(instant: datetime, catalog: Catalog) -> date:
    """The day scores are as of at `instant`: the last complete local day, yesterday in the
    city's time zone (docs/scoring.md §3); it moves on at local midnight, events or not."""
    if instant.tzinfo is None:
        raise ValueError("instant: a naive datetime has no place in the city's time zone; give an aware one")
    return instant.astimezone(catalog.zone).date() - timedelta(days=1)


# -- the five kinds ---------------------------------------------------------


def score_ratio(days: DaysOf, dates: Iterable[date], target: float) -> WindowScore:
    """(Σ numerator ÷ Σ denominator) ÷ target, pooled over the window."""
    numerator = denominator = 0.0
    seen = False
    for day in dates:
        totals = days.get(day)
        if totals is not None:
            seen = True
            numerator += totals.numerator
            denominator += totals.denominator
    if denominator == 0:
        return INSUFFICIENT if seen else NULL  # days of 0 of 0 (a tally) are data, but no share
    return WindowScore(numerator / denominator / target, numerator, denominator)


def score_mean_daily_ratio(days: DaysOf, dates: Iterable[date], target: float) -> WindowScore:
    """Mean over days with data of (day numerator ÷ day denominator), ÷ target."""
    rates = []
    seen = False
    for day in dates:
        totals = days.get(day)
        if totals is not None:
            seen = True
            if totals.denominator > 0:
                rates.append(totals.numerator / totals.denominator)
    if not rates:
        return INSUFFICIENT if seen else NULL  # e.g. a school's days with nobody enrolled
    mean = sum(rates) / len(rates)
    return WindowScore(mean / target, mean, target)


def score_target_over_median(days: DaysOf, dates: Iterable[date], target: float) -> WindowScore:
    """Target ÷ median of every value in the window (lower values are better)."""
    values: list[float] = []
    for day in dates:
        totals = days.get(day)
        if totals is not None:
            values.extend(totals.values)
    if not values:
        return NULL
    median = statistics.median(values)
    if median == 0:
        return INSUFFICIENT  # measurements, but target ÷ 0 is no score
    return WindowScore(target / median, target, median)


def historical_mean(days: DaysOf, window: Window, as_of: date, first_day: date | None) -> float | None:
    """Mean daily count over the same window of every prior year with data.

    A prior year counts when the metric's first day with data is on or before the
    earliest date of the window moved back to that year; None when no year counts. A
    calendar month is that year's whole month, so a February divides by 28 or 29 days.
    """
    if first_day is None:
        return None
    total = 0.0
    length = 0
    for moved in window.past_years(as_of):
        if moved[0] < first_day:  # the oldest day of that year's window
            break
        length += len(moved)
        for day in moved:
            totals = days.get(day)
            if totals is not None:
                total += totals.count
    if length == 0:
        return None
    return total / length


def current_mean(days: DaysOf, dates: list[date]) -> float:
    """Mean daily count over the window; days with no events count as 0."""
    total = 0.0
    for day in dates:
        totals = days.get(day)
        if totals is not None:
            total += totals.count
    return total / len(dates)


def score_trend(kind: Kind, current: float, historical: float | None) -> WindowScore:
    if historical is None:
        return NULL
    if kind is Kind.TREND_LOWER_BETTER:
        if current == 0:
            return NULL
        return WindowScore(historical / current, historical, current)
    if historical == 0:
        return NULL
    return WindowScore(current / historical, current, historical)


# -- a metric, and the whole city -------------------------------------------


def score_metric(
    metric: Metric,
    days: DaysOf,
    as_of: date,
    windows: Mapping[str, Window],
    first_day: date | None = None,
) -> dict[str, WindowScore]:
    """Every window's score for one metric, as of the local date `as_of`.

    `days` maps local dates to that metric's totals; `first_day` is the first date
    the metric had data (found from `days` when not given). A window is scored with the
    target in force on its last day.
    """
    scores: dict[str, WindowScore] = {}
    if metric.kind.is_trend:
        if first_day is None and days:
            first_day = min(days)
        # The day score compares the as-of day with the week's historical baseline (Boston's rule).
        week_baseline = historical_mean(days, windows["week"], as_of, first_day)
        for name, window in windows.items():
            baseline = week_baseline if name in ("day", "week") else historical_mean(days, window, as_of, first_day)
            dates = window.dates(as_of)
            scores[name] = insufficient_if_data(score_trend(metric.kind, current_mean(days, dates), baseline), days, dates)
        return scores

    for name, window in windows.items():
        scores[name] = score_target_window(metric, days, window.dates(as_of))
    return scores


def score_target_window(metric: Metric, days: DaysOf, dates: list[date]) -> WindowScore:
    """One window of a metric with a target, scored with the target in force on its last day; a
    ratio pooling less than the metric's `min_denominator` is insufficient data (§4a), and keeps the
    numerator and denominator it pooled: Boston publishes them beside a blank score, and a reader
    needs them to see how far the window was from enough to judge by."""
    result = TARGET_KINDS[metric.kind](days, dates, metric.target_on(dates[-1]))
    minimum = metric.min_denominator
    if minimum is not None and result.denominator is not None and result.denominator < minimum:
        return WindowScore(None, result.numerator, result.denominator, True)
    return result


def unscored(days_with_data: Container[date], dates: Iterable[date], published: WindowScore = NULL) -> WindowScore:
    """A window without a score: insufficient data when one of its days has data, else no data.

    The rule of every kind (docs/scoring.md §4a); the read API uses it to give a published null
    its state from which days have data, keeping the `published` numerator and denominator (a
    ratio below its min_denominator has them).
    """
    return published._replace(insufficient=any(day in days_with_data for day in dates))


def insufficient_if_data(result: WindowScore, days: DaysOf, dates: Iterable[date]) -> WindowScore:
    """A trend's null score is insufficient data when the window has data (no past year to compare
    with, nothing counted to divide by), and no data when it has none."""
    return unscored(days, dates) if result.score is None else result


TARGET_KINDS = {
    Kind.RATIO: score_ratio,
    Kind.MEAN_DAILY_RATIO: score_mean_daily_ratio,
    Kind.TARGET_OVER_MEDIAN: score_target_over_median,
}


def overall(metric_scores: Iterable[Mapping[str, WindowScore]], windows: Iterable[str]) -> dict[str, float | None]:
    """The CityScore: per window, the plain mean of the metrics' non-null scores."""
    sums: dict[str, list[float]] = {name: [] for name in windows}
    for scores in metric_scores:
        for name, values in sums.items():
            score = scores[name].score
            if score is not None:
                values.append(score)
    return {name: (sum(values) / len(values) if values else None) for name, values in sums.items()}


class Scoreboard(NamedTuple):
    """Every metric's window scores and the overall CityScore for one as-of date."""

    as_of: date
    cityscore: dict[str, float | None]
    metrics: dict[str, dict[str, WindowScore]]
    # Each metric's percentile (shared/core/percentile.py), when it was asked for: None when not.
    percentiles: dict[str, float | None] | None = None
    # Each metric's last local day with data up to as_of (None: none), when it was read: then each
    # metric with expect_data gains its "feed" (shared/core/staleness.py).
    last_data: dict[str, date | None] | None = None

    def as_dict(self, catalog: Catalog) -> dict:
        """The JSON shape of docs/contract.md ("Scores"): each window with the dates it covers and
        its state; each metric's "percentile" too when the board has them, and its "feed" when the
        board knows its last day with data and the catalog says how often data should arrive."""
        days = spans(catalog.windows, self.as_of)
        ranked = {} if self.percentiles is None else self.percentiles
        feeds = {} if self.last_data is None else feed_statuses(catalog.metrics, self.last_data, self.as_of)
        return {
            "as_of": self.as_of.isoformat(),
            "cityscore": dict(self.cityscore),
            "windows": {name: span_fields(span) for name, span in days.items()},
            "metrics": {
                metric_id: {
                    "name": catalog.by_id[metric_id].name,
                    "target": catalog.by_id[metric_id].target_on(self.as_of),
                    **({"percentile": ranked.get(metric_id)} if self.percentiles is not None else {}),
                    **({"feed": feeds[metric_id].as_dict()} if metric_id in feeds else {}),
                    **{window: {**score.as_dict(), **span_fields(days[window]),
                                "target": window_target(catalog.by_id[metric_id], days[window])}
                       for window, score in scores.items()},
                }
                for metric_id, scores in self.metrics.items()
            },
        }


def span_fields(span: tuple[date, date]) -> dict[str, str]:
    """{"start": …, "end": …}: a window's first and last local day (inclusive) in the JSON."""
    start, end = span
    return {"start": start.isoformat(), "end": end.isoformat()}


def window_target(metric: Metric, span: tuple[date, date]) -> float | None:
    """The target a window was scored with: the one in force on its last day."""
    return metric.target_on(span[1])


def score_city(
    catalog: Catalog,
    days_of: Mapping[str, DaysOf],
    as_of: date,
    first_days: Mapping[str, date] | None = None,
) -> Scoreboard:
    """Score every catalog metric from its daily totals; metrics with no data score null."""
    empty: dict[date, DayTotals] = {}
    metrics = {
        metric.id: score_metric(
            metric,
            days_of.get(metric.id, empty),
            as_of,
            catalog.windows,
            (first_days or {}).get(metric.id),
        )
        for metric in catalog.metrics
    }
    return Scoreboard(as_of, overall(metrics.values(), catalog.windows), metrics)


def needing_follow_up(board: Scoreboard, catalog: Catalog, window: str) -> list[Metric]:
    """The metrics below 1 in `window` as shown (someone must follow up), lowest first, ties in
    catalog order: the order of the Slack board and the terminal's list."""
    below = [(board.metrics[metric.id][window].score, index, metric) for index, metric in enumerate(catalog.metrics)
             if standing(board.metrics[metric.id][window].score) == "below"]
    return [metric for _, _, metric in sorted(below, key=lambda item: item[:2])]
