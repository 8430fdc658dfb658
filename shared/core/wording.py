"""A metric, its target and a window's score in words: one wording for the page, Slack and the terminal.

Every kind is described in the words of its feed (docs/scoring.md §2): a survey metric's
week reads "average rating 3.55 from 143 surveys", never its sum of ratings "of" a count;
a trend reads its daily averages against past years'. The public page, the notifier's
Slack messages and the `cityscore` command only lay these words out, so they cannot drift
apart. The numerator and denominator themselves stay as Boston publishes them (the audit
columns, the JSON); these words are how a person reads them.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, tzinfo

from shared.core.catalog import SLA, Feed, Kind, Metric
from shared.core.scoring import INSUFFICIENT_DATA, WindowScore, standing

# -- a score and its standing ----------------------------------------------------------------

# Marks that read without colour, and what each standing means (docs/scoring.md §1).
# "near" only where the catalog sets a near-target band (Catalog.near_target): below target, but close.
MARKS = {"below": "▼", "near": "▽", "at": "=", "above": "▲", "none": ""}
STANDING_WORDS = {"below": "below target", "near": "near target", "at": "on target", "above": "above target",
                  "none": "no score"}
FOLLOW_UP = "needs follow-up"
# A null score whose window has data, just not enough to score it (docs/scoring.md §4a): shown
# apart from "no score", which means nothing came in.
INSUFFICIENT = "insufficient data"


def no_score_words(state: str | None) -> str:
    """What a window without a score shows: 'insufficient data', or 'no score'."""
    return INSUFFICIENT if state == INSUFFICIENT_DATA else STANDING_WORDS["none"]


def score_text(score: float | None, none: str = "—") -> str:
    """A score as shown: two decimals (full precision stays in the data), or `none`."""
    return none if standing(score) == "none" else f"{score:.2f}"


def legend(near_target: float | None = None) -> str:
    """How to read the marks, in one line; with the catalog's near-target band when it has one."""
    near = f"{MARKS['near']} {near_band_words(near_target)}   " if near_target is not None else ""
    return (f"{MARKS['below']} {STANDING_WORDS['below']}, {FOLLOW_UP}   {near}{MARKS['at']} {STANDING_WORDS['at']}   "
            f"{MARKS['above']} {STANDING_WORDS['above']}   blank: {STANDING_WORDS['none']}")


def near_band_words(near_target: float) -> str:
    """The band in words: 'near target (0.90 to 0.99)'."""
    return f"{STANDING_WORDS['near']} ({near_target:.2f} to 0.99)"


# -- numbers in a sentence -------------------------------------------------------------------


def amount(value: float) -> str:
    """A count or an average in a sentence: whole numbers plain, others to two places, with thousands."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def percent(fraction: float) -> str:
    """A share as a percentage to one place at most: 0.95 is '95%', 9/14 is '64.3%'."""
    return f"{fraction * 100:.1f}".removesuffix(".0") + "%"


def _plural(count: float, noun: str) -> str:
    return noun if count == 1 else noun + "s"


def _unit(metric: Metric) -> str:
    return f" {metric.unit}" if metric.unit else ""


# -- the metric: target, threshold, service level, how it is scored ----------------------------


def _is_share(metric: Metric) -> bool:
    """A target that is a share of something (on time, within the threshold, present), not a rating."""
    return metric.kind in (Kind.RATIO, Kind.MEAN_DAILY_RATIO) and metric.feed is not Feed.RATING


def _target(metric: Metric, on: date | None) -> float | None:
    """The target in force on `on` (the newest when no day is given)."""
    return metric.latest_target if on is None else metric.target_on(on)


def target_short(metric: Metric, on: date | None = None) -> str:
    """The target after 'target' in a line: '80%', '4', '6 minutes', 'fewer than in past years'.

    `on`: the window's last day, whose target the score was computed with (the newest when None).
    """
    if metric.kind is Kind.TREND_LOWER_BETTER:
        return "fewer than in past years"
    if metric.kind is Kind.TREND_HIGHER_BETTER:
        return "more than in past years"
    target = _target(metric, on)
    assert target is not None
    if _is_share(metric) and target <= 1:
        return percent(target)
    return f"{target:g}{_unit(metric)}"


def earlier_target(metric: Metric, span: tuple[date, date], as_of: date, year: bool = False) -> str | None:
    """The target a window was scored with, when it is not the one in force on `as_of` (the one a
    page or message states once): 'target 80% (in force on 28 June)'. None when it is the same.

    A window is scored with the target of its last day, so a calendar week that ended before a
    target changed keeps the old one while the as-of date has the new.
    """
    end = span[1]
    if metric.target_on(end) == metric.target_on(as_of):
        return None
    return f"target {target_short(metric, on=end)} (in force on {day_in_words(end, year=year)})"


def target_sentence(metric: Metric, on: date | None = None) -> str:
    """The target as the metric's page states it: '80% of cases closed on time'."""
    target = _target(metric, on)
    if metric.kind.is_trend or target is None:
        return "Compared with past years (no fixed target)"
    if metric.kind is Kind.TARGET_OVER_MEDIAN:
        return f"A median of {target:g}{_unit(metric)}"
    if metric.feed is Feed.RATING:
        top = f" out of {metric.max_value:g}" if metric.max_value is not None else ""
        return f"An average rating of {target:g}{top}"
    share = f"{target * 100:g}%"
    if metric.kind is Kind.MEAN_DAILY_RATIO:
        return f"{share} on an average day"
    if metric.feed is Feed.CASES:
        return f"{share} of cases closed on time"
    if metric.feed is Feed.THRESHOLD:
        return f"{share} of measurements within the threshold"
    return share


def target_history(metric: Metric) -> list[tuple[date, str]]:
    """Each target the metric has had, with the local day it took effect, oldest first:
    [(1 January 2016, '80% of cases closed on time'), …]. Empty for a trend (no fixed target)."""
    if metric.kind.is_trend:
        return []
    return [(change.from_, target_sentence(metric, on=change.from_)) for change in metric.targets]


def threshold_words(metric: Metric) -> str | None:
    """'30 seconds or less': what a measurement must be to count (feed 'threshold' only)."""
    if metric.threshold is None:
        return None
    return f"{metric.threshold:g}{_unit(metric)} or less"


def _span(sla: SLA) -> str:
    for amount_, unit in ((sla.hours, "hour"), (sla.calendar_days, "calendar day"),
                          (sla.business_days, "business day")):
        if amount_ is not None:
            return f"{amount_:g} {unit}" + ("" if amount_ == 1 else "s")
    return sla.describe()


def sla_words(metric: Metric) -> str | None:
    """The service-level agreement a case is judged against, e.g. 'Closed within 10 business days'."""
    if metric.due_from_case:
        return "Closed by the due time each case carries from its source"
    if metric.sla is None:
        return None
    if metric.sla_by_attribute is None:
        return f"Closed within {_span(metric.sla)}"
    choices = "; ".join(f"{value}: within {_span(sla)}" for value, sla in metric.sla_by_attribute.values.items())
    return f"By {metric.sla_by_attribute.attribute} — {choices}; other cases: within {_span(metric.sla)}"


_HOW_SCORED = {
    Kind.RATIO: "Pooled over the window: the total of the numerator divided by the total of the "
                "denominator, then divided by the target.",
    Kind.MEAN_DAILY_RATIO: "The average of each day's rate, over the days of the window that have data, "
                           "divided by the target.",
    Kind.TARGET_OVER_MEDIAN: "The target divided by the median of every measurement in the window. Lower "
                             "measurements are better, so a median under the target scores above 1.",
    Kind.TREND_LOWER_BETTER: "Compared with past years: the average daily count in the same weeks of "
                             "past years divided by the current average daily count. Fewer than in past "
                             "years scores above 1.",
    Kind.TREND_HIGHER_BETTER: "Compared with past years: the current average daily count divided by the "
                              "average daily count in the same weeks of past years. More than in past "
                              "years scores above 1.",
}
_HOW_RATINGS_ARE_SCORED = {
    Kind.RATIO: "Pooled over the window: the sum of the ratings divided by their number (the average "
                "rating), then divided by the target.",
    Kind.MEAN_DAILY_RATIO: "The average of each day's average rating, over the days of the window that have "
                           "ratings, divided by the target.",
}


def how_scored(metric: Metric) -> str:
    """How a window's score is computed, in a sentence or two (docs/scoring.md §2)."""
    if metric.feed is Feed.RATING:
        return _HOW_RATINGS_ARE_SCORED[metric.kind]
    return _HOW_SCORED[metric.kind]


# What the published numerator and denominator are: by kind, and for a ratio by its feed too.
_AUDIT_TERMS: dict[Kind | tuple[Kind, Feed], tuple[str, str]] = {
    (Kind.RATIO, Feed.CASES): ("cases closed on time", "cases closed"),
    (Kind.RATIO, Feed.THRESHOLD): ("within the threshold", "measurements"),
    (Kind.RATIO, Feed.RATING): ("sum of ratings", "ratings"),
    Kind.RATIO: ("numerator", "denominator"),
    Kind.MEAN_DAILY_RATIO: ("average daily rate", "target"),
    Kind.TARGET_OVER_MEDIAN: ("target", "median"),
    Kind.TREND_LOWER_BETTER: ("past years' daily average", "current daily average"),
    Kind.TREND_HIGHER_BETTER: ("current daily average", "past years' daily average"),
}


def audit_terms(metric: Metric) -> tuple[str, str]:
    """What the numerator and denominator published beside this metric's score are."""
    return _AUDIT_TERMS.get((metric.kind, metric.feed)) or _AUDIT_TERMS[metric.kind]


# -- a window's figures --------------------------------------------------------------------------


def _counted(metric: Metric) -> str:
    """What one unit of a trend metric's count is: 'incident' for incidents, nothing for a tally."""
    return "incident" if metric.feed is Feed.INCIDENTS else ""


def _within(metric: Metric) -> str:
    return f"within {metric.threshold:g}{_unit(metric)}"


def no_data(metric: Metric) -> str:
    """Why a window has no score, in the words of the metric's feed (docs/scoring.md §2, 'null when')."""
    kind, feed = metric.kind, metric.feed
    if kind is Kind.RATIO:
        return {Feed.CASES: "no cases closed in the window", Feed.THRESHOLD: "no measurements in the window",
                Feed.RATING: "no surveys in the window"}.get(feed, "nothing counted in the window")
    if kind is Kind.MEAN_DAILY_RATIO:
        return "no day with data in the window"
    if kind is Kind.TARGET_OVER_MEDIAN:
        return "no measurements in the window (or a median of 0)"
    if kind is Kind.TREND_LOWER_BETTER:
        none = "no incidents" if feed is Feed.INCIDENTS else "nothing counted"
        return f"{none} in the window, or no past years to compare with"
    return "no past years to compare with"


def insufficient_data(metric: Metric, result: WindowScore | None = None) -> str:
    """Why a window with data still has no score, in the words of the metric's kind; a ratio
    below the metric's min_denominator says so with the figures it pooled (`result`)."""
    kind, feed = metric.kind, metric.feed
    minimum = metric.min_denominator
    if kind is Kind.RATIO and minimum is not None and result is not None and result.denominator:
        counted = {Feed.CASES: "case", Feed.THRESHOLD: "measurement", Feed.RATING: "survey"}.get(feed)
        what = f" {_plural(minimum, counted)}" if counted else ""
        return f"{_ratio_figures(metric, result.numerator, result.denominator)}: fewer than {amount(minimum)}{what} to judge by"
    if kind is Kind.RATIO:
        return "data in the window, but nothing to take a share of (every denominator is 0)"
    if kind is Kind.MEAN_DAILY_RATIO:
        return "data in the window, but no day with a denominator above 0"
    if kind is Kind.TARGET_OVER_MEDIAN:
        return "measurements in the window, but their median is 0"
    if kind is Kind.TREND_LOWER_BETTER:
        none = "no incidents" if feed is Feed.INCIDENTS else "a count of 0"
        return f"data in the window, but no complete past year to compare with, or {none} to divide by"
    return "data in the window, but no complete past year to compare with, or past years that counted 0"


def percentile_words(value: float | None) -> str:
    """The percentile in a sentence (docs/scoring.md §4b): 'Percentile 87: the day score
    is at or above 87% of the day scores of the 365 days before.'"""
    if value is None:
        return "No percentile: no day score on this date, or none in the 365 days before to compare with."
    return f"Percentile {value:.0f}: the day score is at or above {value:.0f}% of the day scores of the 365 days before."


def figures(metric: Metric, result: WindowScore) -> str:
    """A window's numerator and denominator as a person reads them, e.g. 'average rating 3.55 from
    143 surveys', '39 of 60 cases closed on time (65%)', '2.43 incidents a day against 3.14 in past years'."""
    n, d = result.numerator, result.denominator
    if result.state == INSUFFICIENT_DATA:
        return insufficient_data(metric, result)
    if result.score is None or n is None or d is None or not (math.isfinite(n) and math.isfinite(d)):
        return no_data(metric)
    kind, feed = metric.kind, metric.feed
    if kind is Kind.RATIO:
        return _ratio_figures(metric, n, d)
    if kind is Kind.MEAN_DAILY_RATIO:  # the numerator is the average day's rate, the denominator the target
        if feed is Feed.RATING:
            return f"average rating {n:.2f} on an average day"
        what = (" of cases closed on time" if feed is Feed.CASES
                else f" of measurements {_within(metric)}" if feed is Feed.THRESHOLD else "")
        return f"{percent(n)}{what} on an average day"
    if kind is Kind.TARGET_OVER_MEDIAN:  # target ÷ median
        return f"median {amount(d)}{_unit(metric)}"
    current, past = (d, n) if kind is Kind.TREND_LOWER_BETTER else (n, d)
    noun = _counted(metric)
    each = f" {_plural(current, noun)}" if noun else ""
    return f"{amount(current)}{each} a day against {amount(past)} a day in past years"


def _ratio_figures(metric: Metric, n: float, d: float) -> str:
    """A ratio's pooled numerator and denominator: '39 of 60 cases closed on time (65%)'."""
    feed = metric.feed
    if feed is Feed.RATING:
        return f"average rating {n / d:.2f} from {amount(d)} {_plural(d, 'survey')}"
    of = f"{amount(n)} of {amount(d)}"
    if feed is Feed.CASES:
        return f"{of} {_plural(d, 'case')} closed on time ({percent(n / d)})"
    if feed is Feed.THRESHOLD:
        return f"{of} {_plural(d, 'measurement')} {_within(metric)} ({percent(n / d)})"
    return f"{of} ({percent(n / d)})"


def score_line(metric: Metric, window: str, result: WindowScore, span: tuple[date, date] | None = None) -> str:
    """One window in one line, as a notification reads:
    'week score 0.89 for 3–9 February (average rating 3.55 from 143 surveys; target 4)'.

    `span`: the window's first and last day; the target is the one in force on the last.
    """
    dates = f" for {span_in_words(*span)}" if span is not None else ""
    on = span[1] if span is not None else None
    return (f"{window} score {score_text(result.score)}{dates} "
            f"({figures(metric, result)}; target {target_short(metric, on)})")


# -- dates ------------------------------------------------------------------------------------


def day_in_words(day: date, year: bool = True) -> str:
    """'9 February 2025' (or '9 February')."""
    return f"{day.day} {day:%B}" + (f" {day.year}" if year else "")


def span_in_words(start: date, end: date, year: bool = False) -> str:
    """The days a window covers as a person says them: '9 February', '3–9 February',
    '27 January – 2 February', 'February 2025', 'February – April 2026',
    '29 December 2024 – 4 January 2025'. `year`: say the year even within one year."""
    if start == end:
        return day_in_words(start, year)
    whole_months = start.day == 1 and (end + timedelta(days=1)).day == 1
    if whole_months:
        if (start.year, start.month) == (end.year, end.month):
            return f"{start:%B} {start.year}"
        if start.year == end.year:
            return f"{start:%B} – {end:%B} {end.year}"
        return f"{start:%B} {start.year} – {end:%B} {end.year}"
    if start.year != end.year:
        return f"{day_in_words(start)} – {day_in_words(end)}"
    tail = f" {end.year}" if year else ""
    if start.month == end.month:
        return f"{start.day}–{end.day} {end:%B}{tail}"
    return f"{day_in_words(start, False)} – {day_in_words(end, False)}{tail}"


def window_in_words(window: str, start: date, end: date) -> str:
    """'week of 3–9 February', 'month of February 2025', 'day of 9 February': a window and its dates."""
    return f"{window} of {span_in_words(start, end)}"


def lateness_words(hours: float, under_a_minute: str = "") -> str:
    """How late a case is, as a manager says it: '40 minutes', '7 hours', '3 days 4 hours' (the whole
    hours gone by, to the nearest minute). Under half a minute: `under_a_minute` (a page's empty cell
    for a case on time; Slack's 'less than a minute' in a sentence). The page and Slack both say it so."""
    minutes = round(hours * 60)
    if minutes <= 0:
        return under_a_minute
    if minutes < 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    whole = minutes // 60
    if whole < 48:
        return f"{whole} hour{'s' if whole != 1 else ''}"
    days, rest = divmod(whole, 24)
    return f"{days} days" + (f" {rest} hour{'s' if rest != 1 else ''}" if rest else "")


def case_time(moment: datetime, zone: tzinfo) -> str:
    """A case's time in a list, in the city's local time: '23 June 2026, 9:05 AM' (page and Slack)."""
    local = moment.astimezone(zone)
    hour = local.hour % 12 or 12
    return f"{local.day} {local:%B %Y}, {hour}:{local:%M} {'AM' if local.hour < 12 else 'PM'}"
