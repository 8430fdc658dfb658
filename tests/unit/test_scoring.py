"""The scoring core, rule by rule (docs/scoring.md §2–§4), with Boston's published examples."""

from datetime import date, timedelta
from math import isclose

import pytest

from shared.core.catalog import Kind, load_catalog
from shared.core.windows import Window, days_up_to
from shared.core.scoring import (
    DayTotals,
    overall,
    score_mean_daily_ratio,
    score_metric,
    score_ratio,
    score_target_over_median,
    standing,
    years_back,
)

WINDOWS = {name: Window(days=days) for name, days in (("day", 1), ("week", 7), ("month", 30), ("quarter", 90))}
BOSTON = load_catalog()
D = date(2026, 7, 23)


def totals(numerator=0.0, denominator=0.0, count=0.0, values=()):
    return DayTotals(numerator, denominator, count, list(values))


# -- windows -------------------------------------------------------------------


def test_windows_are_trailing_and_end_on_the_as_of_date():
    week = days_up_to(D, 7)
    assert week[0] == D - timedelta(days=6) and week[-1] == D and len(week) == 7
    assert days_up_to(D, 1) == [D]
    assert len(set(days_up_to(D, 90))) == 90


def test_years_back_turns_29_february_into_28_february():
    assert years_back(date(2024, 2, 29), 1) == date(2023, 2, 28)
    assert years_back(date(2024, 2, 29), 4) == date(2020, 2, 28)  # even into a leap year: one rule
    assert years_back(date(2024, 3, 1), 1) == date(2023, 3, 1)


# -- ratio -----------------------------------------------------------------------


def test_boston_311_call_center_day_example():
    result = score_ratio({D: totals(698, 932)}, [D], 0.95)
    assert (result.numerator, result.denominator) == (698, 932)
    assert round(result.score, 4) == 0.7883


def test_ratio_pools_the_window_rather_than_averaging_days():
    days = {D: totals(1, 1), D - timedelta(days=1): totals(1, 9)}
    result = score_ratio(days, days_up_to(D, 7), 0.8)
    # pooled: 2/10 = 0.2, not the mean of 1.0 and 0.111
    assert isclose(result.score, 0.2 / 0.8)
    assert (result.numerator, result.denominator) == (2, 10)


def test_ratio_is_never_capped():
    assert isclose(score_ratio({D: totals(10, 10)}, [D], 0.8).score, 1.25)


def test_ratio_is_null_without_a_denominator():
    assert score_ratio({}, [D], 0.8).score is None
    # the published fields are null; the state says the day had data (docs/scoring.md §4a)
    nothing = score_ratio({D: totals(0, 0, count=3)}, [D], 0.8)
    assert nothing[:3] == (None, None, None) and nothing.state == "insufficient_data"


def test_survey_ratio_against_target_4():
    # ratings 5, 4, 3 → mean 4 → score 1.0
    assert isclose(score_ratio({D: totals(12, 3)}, [D], 4.0).score, 1.0)


# -- mean of daily ratios --------------------------------------------------------


def test_mean_daily_ratio_averages_days_with_data():
    days = {
        D: totals(90, 100),  # 0.90
        D - timedelta(days=1): totals(500, 1000),  # 0.50: a big day counts the same as a small one
        D - timedelta(days=2): totals(0, 0),  # no school: left out, not a zero
    }
    result = score_mean_daily_ratio(days, days_up_to(D, 7), 0.95)
    assert isclose(result.numerator, 0.70)
    assert result.denominator == 0.95
    assert isclose(result.score, 0.70 / 0.95)


def test_mean_daily_ratio_is_null_without_a_day_with_denominator():
    assert score_mean_daily_ratio({D: totals(0, 0)}, days_up_to(D, 7), 0.95).score is None


# -- target over median ------------------------------------------------------------


def test_boston_ems_week_example_with_an_even_count():
    # median of an even count is the mean of the middle two: (389 s + 390 s) / 2 = 6.49167 min
    days = {D: totals(values=[5.0, 389 / 60]), D - timedelta(days=3): totals(values=[390 / 60, 8.0])}
    result = score_target_over_median(days, days_up_to(D, 7), 6.0)
    assert result.numerator == 6.0
    assert round(result.denominator, 5) == 6.49167
    assert round(result.score, 4) == 0.9243


def test_median_of_an_odd_count_is_the_middle_value():
    result = score_target_over_median({D: totals(values=[9.0, 3.0, 5.0])}, [D], 6.0)
    assert result.denominator == 5.0 and isclose(result.score, 1.2)


def test_median_is_null_without_values_or_when_zero():
    assert score_target_over_median({D: totals(values=[])}, [D], 6.0).score is None
    assert score_target_over_median({D: totals(values=[0.0, 0.0, 1.0])}, [D], 6.0).score is None


# -- trends ----------------------------------------------------------------------------


def trend_metric(kind=Kind.TREND_LOWER_BETTER):
    return BOSTON.metric("bfd-incidents" if kind is Kind.TREND_LOWER_BETTER else "library-users")


def test_boston_bfd_incidents_week_example_eleven_years_of_history():
    # Boston published week 225.935 / 241.857 = 0.9342; the historical sum is 17397 / 77 = 7 days x 11 years.
    days = {}
    week = days_up_to(D, 7)
    current = [240, 250, 236, 244, 239, 241, 243]  # 1693 / 7 = 241.857
    for day, count in zip(week, current):
        days[day] = totals(count=count)
    history = 17397
    moved_days = [years_back(day, k) for k in range(1, 12) for day in week]
    for index, day in enumerate(moved_days):
        share = history // 77 + (1 if index < history % 77 else 0)
        days[day] = totals(count=share)
    first_day = min(moved_days)
    scores = score_metric(trend_metric(), days, D, WINDOWS, first_day)
    week_score = scores["week"]
    assert round(week_score.numerator, 3) == 225.935
    assert round(week_score.denominator, 3) == 241.857
    assert round(week_score.score, 4) == 0.9342


def test_boston_library_users_week_example_higher_is_better():
    days = {}
    week = days_up_to(D, 7)
    for index, day in enumerate(week):
        days[day] = totals(count=156652 // 7 + (156652 % 7 if index == 0 else 0))
    moved = [years_back(day, k) for k in range(1, 6) for day in week]
    for index, day in enumerate(moved):
        days[day] = totals(count=540766 // 35 + (540766 % 35 if index == 0 else 0))
    week_score = score_metric(trend_metric(Kind.TREND_HIGHER_BETTER), days, D, WINDOWS, min(moved))["week"]
    assert round(week_score.numerator, 2) == 22378.86  # current mean first for higher-is-better
    assert round(week_score.denominator, 2) == 15450.46
    assert round(week_score.score, 4) == 1.4484


def test_trend_counts_only_prior_years_that_have_data_for_the_whole_moved_window():
    # Data from 2024-07-20: the 2025 window (07-17..07-23) is covered, the 2024 one is not.
    days = {date(2024, 7, 20): totals(count=999)}
    start = date(2025, 7, 17)
    for offset in range(7):
        days[start + timedelta(days=offset)] = totals(count=10)
    days[D] = totals(count=5)
    scores = score_metric(trend_metric(), days, D, WINDOWS)  # first day found from the data
    week = scores["week"]
    assert week.numerator == 10.0  # 70 over 7 days x 1 year; 2024's 999 is not part of a counted year
    assert isclose(week.denominator, 5 / 7)  # days without events count as 0
    assert isclose(week.score, 10 / (5 / 7))


def test_trend_history_across_29_february():
    # As of 2024-03-01 the week holds 29 Feb; in 2023 it becomes 28 Feb, so 28 Feb counts twice
    # and every year contributes exactly 7 days.
    as_of = date(2024, 3, 1)
    days = {}
    for day in days_up_to(as_of, 7):
        days[day] = totals(count=2)
    for k, per_day in ((1, 3), (2, 5)):
        for day in days_up_to(years_back(as_of, k), 8):
            days[day] = totals(count=per_day)
    days[date(2023, 2, 28)] = totals(count=10)
    moved_2023 = [years_back(day, 1) for day in days_up_to(as_of, 7)]
    assert moved_2023.count(date(2023, 2, 28)) == 2 and len(moved_2023) == 7
    first_day = date(2022, 2, 20)
    week = score_metric(trend_metric(), days, as_of, WINDOWS, first_day)["week"]
    # 2023: 23-28 Feb (28th twice, 10 each) + 1 Mar: 3*4 + 10*2 + 3 = 35; 2022: 5*7 = 35
    assert isclose(week.numerator, 70 / 14)
    assert isclose(week.denominator, 2.0)


def test_trend_day_score_uses_the_week_baseline():
    days = {D: totals(count=4)}
    for day in days_up_to(years_back(D, 1), 7):
        days[day] = totals(count=7)  # week mean 7
    days[years_back(D, 1)] = totals(count=14)  # but the same day last year was 14: not used
    days[years_back(D, 1) - timedelta(days=30)] = totals(count=0)  # data well before
    scores = score_metric(trend_metric(), days, D, WINDOWS)
    assert isclose(scores["day"].numerator, (7 * 6 + 14) / 7)
    assert scores["day"].denominator == 4
    assert isclose(scores["day"].score, 8 / 4)


def test_trend_null_rules():
    history = {day: totals(count=3) for day in days_up_to(years_back(D, 1), 90)}
    # lower is better: null when nothing happened in the current window
    lower = score_metric(trend_metric(), dict(history), D, WINDOWS)
    assert all(lower[w].score is None for w in WINDOWS)
    # no history at all: null
    only_now = score_metric(trend_metric(), {D: totals(count=3)}, D, WINDOWS)
    assert all(only_now[w][:3] == (None, None, None) and only_now[w].state == "insufficient_data" for w in WINDOWS)
    # higher is better: null when the historical mean is 0, even with current activity
    zero_history = {day: totals(count=0) for day in days_up_to(years_back(D, 1), 90)}
    zero_history[D] = totals(count=100)
    higher = score_metric(trend_metric(Kind.TREND_HIGHER_BETTER), zero_history, D, WINDOWS)
    assert higher["week"].score is None
    # ... and higher-is-better with history but nothing now scores 0, not null
    history[D - timedelta(days=400)] = totals(count=1)
    quiet = score_metric(trend_metric(Kind.TREND_HIGHER_BETTER), history, D, WINDOWS)
    assert quiet["week"].score == 0.0


# -- the overall CityScore ---------------------------------------------------------------


def test_cityscore_is_the_plain_mean_leaving_nulls_out():
    from shared.core.scoring import NULL, WindowScore

    a = {"day": WindowScore(1.2, 1, 1), "week": WindowScore(0.8, 1, 1)}
    b = {"day": NULL, "week": WindowScore(1.0, 1, 1)}
    c = {"day": WindowScore(0.9, 1, 1), "week": NULL}
    assert overall([a, b, c], ["day", "week"]) == pytest.approx({"day": 1.05, "week": 0.9})
    assert overall([b], ["day"]) == {"day": None}


def test_scores_are_not_rounded():
    result = score_ratio({D: totals(2, 3)}, [D], 1.0)
    assert result.score == 2 / 3


def test_standing_judges_the_score_as_shown():
    assert [standing(s) for s in (0.994, 0.995, 0.996, 1.0, 1.004, 1.006, 1.2, 0.5)] == [
        "below", "below", "at", "at", "at", "above", "above", "below"]
    assert standing(None) == "none" and standing(float("nan")) == "none"
