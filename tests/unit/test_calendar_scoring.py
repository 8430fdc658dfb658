"""Scoring over calendar windows (docs/scoring.md §3, the spec's §3b) and with targets that
changed over time: trend means over a period's real length, baselines over the same calendar
period of past years, ratios pooled over the period, the target in force on a window's last day."""

from datetime import date, timedelta
from math import isclose

import pytest

from shared.core.catalog import load_catalog, parse_catalog
from shared.core.scoring import DayTotals, score_city, score_metric
from shared.core.windows import Period, Window

BOSTON = load_catalog()
CALENDAR = {"day": Window(period=Period.DAY), "week": Window(period=Period.WEEK, starts="monday"),
            "month": Window(period=Period.MONTH), "quarter": Window(period=Period.MONTH, count=3)}
TRAILING = BOSTON.windows
LOWER = BOSTON.metric("bfd-incidents")   # trend, fewer is better: score = historical / current
HIGHER = BOSTON.metric("library-users")  # trend, more is better: score = current / historical


def totals(numerator=0.0, denominator=0.0, count=0.0, values=()):
    return DayTotals(numerator, denominator, count, list(values))


def every_day(first: date, last: date):
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


# -- trend metrics ----------------------------------------------------------------


@pytest.mark.parametrize("as_of, first, length", [
    (date(2025, 3, 10), date(2025, 2, 1), 28),
    (date(2024, 3, 10), date(2024, 2, 1), 29),
    (date(2025, 4, 30), date(2025, 4, 1), 30),
    (date(2025, 2, 27), date(2025, 1, 1), 31),
])
def test_a_trend_month_divides_by_the_month_s_real_length(as_of, first, length):
    days = {first: totals(count=60)}
    days[first - timedelta(days=1)] = totals(count=500)  # the day before the month: not in it
    for day in every_day(date(first.year - 1, first.month, 1), date(first.year - 1, first.month, 28)):
        days[day] = totals(count=1)  # a year of history, so the month has a score
    month = score_metric(HIGHER, days, as_of, CALENDAR, date(first.year - 2, 12, 1))["month"]
    assert isclose(month.numerator, 60 / length)  # the current mean, for more-is-better


def test_a_trend_month_compares_with_the_same_month_of_every_prior_year_across_leap_years():
    days = {}
    for day in every_day(date(2024, 2, 1), date(2024, 2, 29)):
        days[day] = totals(count=1)
    for day in every_day(date(2023, 2, 1), date(2023, 2, 28)):
        days[day] = totals(count=3)
    for outside in (date(2024, 1, 31), date(2024, 3, 1), date(2023, 1, 31), date(2023, 3, 1)):
        days[outside] = totals(count=1000)  # the neighbouring days are not February
    days[date(2025, 2, 14)] = totals(count=28)  # February 2025: 28 over 28 days
    first_day = date(2023, 1, 31)

    feb_2025 = score_metric(LOWER, days, date(2025, 3, 10), CALENDAR, first_day)["month"]
    # 2024's 29 days of 1 and 2023's 28 days of 3, over 57 days
    assert isclose(feb_2025.numerator, (29 + 84) / 57)
    assert feb_2025.denominator == 1.0
    assert isclose(feb_2025.score, (113 / 57) / 1.0)

    feb_2024 = score_metric(LOWER, days, date(2024, 3, 10), CALENDAR, first_day)["month"]
    assert feb_2024.numerator == 3.0  # February 2023 alone, over its 28 days
    assert isclose(feb_2024.denominator, 29 / 29)

    # a year counts only when its whole month has data: from 2 February 2023, 2023 does not
    later_start = score_metric(LOWER, days, date(2025, 3, 10), CALENDAR, date(2023, 2, 2))["month"]
    assert later_start.numerator == 1.0


def test_a_trend_quarter_across_a_leap_february_divides_by_its_own_days():
    # As of 1 March 2025 the quarter is December 2024 - February 2025 (90 days); a year
    # earlier it is December 2023 - February 2024 (91 days).
    days = {day: totals(count=1) for day in every_day(date(2023, 12, 1), date(2024, 2, 29))}
    days[date(2025, 1, 15)] = totals(count=45)
    quarter = score_metric(LOWER, days, date(2025, 3, 1), CALENDAR, date(2023, 12, 1))["quarter"]
    assert quarter.numerator == 1.0  # 91 over 91 days, not 91 over 90
    assert isclose(quarter.denominator, 45 / 90)


def test_the_day_score_of_a_trend_keeps_the_calendar_week_s_baseline():
    # As of Saturday 15 February 2025 the week is Monday 3 to Sunday 9 February.
    days = {date(2024, 1, 1): totals(count=0)}
    for day in every_day(date(2024, 2, 3), date(2024, 2, 9)):
        days[day] = totals(count=7)   # the same week a year before: mean 7
    for day in every_day(date(2024, 2, 10), date(2024, 2, 16)):
        days[day] = totals(count=70)  # the seven days up to 15 February 2024: not the week
    days[date(2025, 2, 15)] = totals(count=4)
    days[date(2025, 2, 9)] = totals(count=14)
    scores = score_metric(LOWER, days, date(2025, 2, 15), CALENDAR)
    assert (scores["day"].numerator, scores["day"].denominator, scores["day"].score) == (7.0, 4.0, 7 / 4)
    assert (scores["week"].numerator, scores["week"].denominator, scores["week"].score) == (7.0, 2.0, 7 / 2)


# -- ratios -------------------------------------------------------------------------


def test_a_ratio_pools_the_calendar_period():
    call_center = BOSTON.metric("311-call-center")
    days = {
        date(2025, 1, 31): totals(5, 5), date(2025, 3, 1): totals(5, 5),  # outside February
        date(2025, 2, 1): totals(1, 1), date(2025, 2, 28): totals(1, 9),
        date(2025, 2, 2): totals(9, 9), date(2025, 2, 10): totals(9, 9),  # outside the week of 3-9 February
        date(2025, 2, 3): totals(1, 9), date(2025, 2, 9): totals(1, 1),
    }
    month = score_metric(call_center, days, date(2025, 3, 5), CALENDAR)["month"]
    assert (month.numerator, month.denominator) == (1 + 1 + 9 + 9 + 1 + 1, 1 + 9 + 9 + 9 + 9 + 1)
    week = score_metric(call_center, days, date(2025, 2, 15), CALENDAR)["week"]
    assert (week.numerator, week.denominator) == (2, 10)
    assert isclose(week.score, 0.2 / 0.95)  # pooled, not the mean of 1.0 and 0.111


def test_a_mean_daily_ratio_averages_the_days_of_the_period():
    attendance = BOSTON.metric("bps-attendance")
    days = {date(2025, 2, 3): totals(9, 10), date(2025, 2, 7): totals(7, 10),
            date(2025, 2, 10): totals(1, 10)}  # the next week
    week = score_metric(attendance, days, date(2025, 2, 15), CALENDAR)["week"]
    assert isclose(week.numerator, 0.8) and isclose(week.score, 0.8 / 0.95)


# -- target history -------------------------------------------------------------------

CHANGE = date(2025, 2, 10)  # a Monday: the new targets take effect


def catalog_with_target_history(windows):
    """Three metrics of the kinds with a target, each with a target that changed on CHANGE."""
    def metric(id_, kind, feed, targets, **extra):
        return {"id": id_, "name": id_.upper(), "kind": kind, "department": "d", "feed": feed,
                "target": [{"from": date(2016, 1, 1), "target": targets[0]}, {"from": CHANGE, "target": targets[1]}],
                **extra}

    return parse_catalog({
        "city": "Testville", "timezone": "America/New_York",
        "windows": {name: window.model_dump(exclude_none=True, exclude_defaults=True) for name, window in windows.items()},
        "departments": [{"id": "d", "name": "D"}],
        "metrics": [metric("calls", "ratio", "threshold", (0.8, 0.9), threshold=30),
                    metric("attendance", "mean_daily_ratio", "tallies", (0.8, 0.9)),
                    metric("response", "target_over_median", "values", (6.0, 5.0))],
    })


def a_constant_month():
    return {day: totals(8, 10, values=[4.0]) for day in every_day(date(2025, 1, 1), date(2025, 2, 28))}


def scored_with(catalog, as_of):
    """{metric: {window: target the window was scored with}}, read back from each score."""
    board = score_city(catalog, {m.id: a_constant_month() for m in catalog.metrics}, as_of)
    found = {}
    for metric_id, scores in board.metrics.items():
        found[metric_id] = {}
        for window, result in scores.items():
            if metric_id == "calls":
                found[metric_id][window] = round(0.8 / result.score, 9)
            elif metric_id == "attendance":
                assert isclose(result.score, 0.8 / result.denominator)
                found[metric_id][window] = result.denominator
            else:
                assert isclose(result.score, result.numerator / 4.0)
                found[metric_id][window] = result.numerator
    return board, found


@pytest.mark.parametrize("as_of, day, week, month", [
    (date(2025, 2, 9), "old", "old", "old"),    # Sunday: every window ends the day before the change
    (date(2025, 2, 10), "new", "old", "old"),   # Monday: the day ends on it; the week still ended on Sunday
    (date(2025, 2, 15), "new", "old", "old"),   # Saturday: the same complete week
    (date(2025, 2, 16), "new", "new", "old"),   # Sunday: the week of 10-16 February ends after the change
    (date(2025, 2, 27), "new", "new", "old"),   # the month shown is January
    (date(2025, 2, 28), "new", "new", "new"),   # February is complete: it ends after the change
])
def test_a_calendar_window_is_scored_with_the_target_in_force_on_its_last_day(as_of, day, week, month):
    catalog = catalog_with_target_history(CALENDAR)
    board, found = scored_with(catalog, as_of)
    targets = {"calls": {"old": 0.8, "new": 0.9}, "attendance": {"old": 0.8, "new": 0.9},
               "response": {"old": 6.0, "new": 5.0}}
    for metric_id, by_age in targets.items():
        expected = {"day": by_age[day], "week": by_age[week], "month": by_age[month],
                    "quarter": by_age[month]}  # the quarter ends with the month
        assert found[metric_id] == expected, metric_id
        shown = board.as_dict(catalog)["metrics"][metric_id]
        assert {window: shown[window]["target"] for window in CALENDAR} == expected, metric_id


@pytest.mark.parametrize("as_of, expected", [(CHANGE - timedelta(days=1), "old"), (CHANGE, "new")])
def test_a_trailing_window_ending_the_day_before_the_change_keeps_the_old_target(as_of, expected):
    catalog = catalog_with_target_history(TRAILING)
    _, found = scored_with(catalog, as_of)
    targets = {"calls": {"old": 0.8, "new": 0.9}, "attendance": {"old": 0.8, "new": 0.9},
               "response": {"old": 6.0, "new": 5.0}}
    for metric_id, by_age in targets.items():
        assert found[metric_id] == {window: by_age[expected] for window in TRAILING}, metric_id
