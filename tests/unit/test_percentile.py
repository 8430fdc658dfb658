"""The percentile (docs/scoring.md §4b): where the as-of date's day score ranks among the
day scores of the 365 dates before it, 0-100, as Boston's 2016 toolkit showed beside each score."""

from datetime import date, timedelta

import pytest

from shared.core.catalog import load_catalog
from shared.core.folding import Ledger
from shared.core.percentile import HISTORY_DAYS, day_scores, percentile, percentile_rank, with_percentiles
from shared.core.scoring import DayTotals, score_metric, years_back
from shared.core.windows import Window

BOSTON = load_catalog()
D = date(2026, 7, 23)


def totals(numerator=0.0, denominator=0.0, count=0.0, values=()):
    return DayTotals(numerator, denominator, count, list(values))


def test_the_share_of_past_scores_at_or_below_today_ties_included():
    assert percentile_rank(0.8, [0.5, 0.8, 0.9, 1.0]) == 50.0
    assert percentile_rank(1.1, [0.5, 0.8]) == 100.0
    assert percentile_rank(0.1, [0.5, 0.8]) == 0.0
    # equal to nine significant digits is a tie (the database adds a day's parts in another order)
    assert percentile_rank(0.3, [0.1 + 0.2]) == 100.0


def test_no_score_today_or_no_past_score_is_no_percentile():
    assert percentile_rank(None, [0.5]) is None
    assert percentile_rank(0.5, []) is None
    metric = BOSTON.metric("311-call-center")
    assert percentile(metric, {}, D, BOSTON.windows) is None
    assert percentile(metric, {D: totals(9, 10)}, D, BOSTON.windows) is None  # its first day: no past
    assert percentile(metric, {D - timedelta(days=1): totals(9, 10)}, D, BOSTON.windows) is None  # none today


def test_a_ratio_ranks_today_among_the_365_days_before_it():
    metric = BOSTON.metric("311-call-center")
    days = {D - timedelta(days=back): totals(back % 10, 10) for back in range(1, HISTORY_DAYS + 1)}
    days[D] = totals(4, 10)
    # 365 past days: rates 0.0 .. 0.9, 37 of each of 0-4 (backs 1-365), so 0.0-0.4 = 5 groups at or below
    expected = 100 * sum(1 for back in range(1, HISTORY_DAYS + 1) if back % 10 <= 4) / HISTORY_DAYS
    assert percentile(metric, days, D, BOSTON.windows) == pytest.approx(expected)
    # a day 366 days back is outside the year: it changes nothing
    days[D - timedelta(days=HISTORY_DAYS + 1)] = totals(0, 10)
    assert percentile(metric, days, D, BOSTON.windows) == pytest.approx(expected)


def test_days_without_a_score_are_left_out_not_counted_as_zero():
    metric = BOSTON.metric("311-call-center")
    days = {D - timedelta(days=200): totals(5, 10), D - timedelta(days=100): totals(9, 10), D: totals(7, 10)}
    assert percentile(metric, days, D, BOSTON.windows) == 50.0


def test_each_past_day_is_scored_with_the_target_in_force_that_day():
    # Same rate every day; the target rises on D: today's score is lower than every past day's.
    catalog = load_catalog()
    metric = catalog.metric("311-call-center").model_copy(update={"target": (
        _target(date(2000, 1, 1), 0.5), _target(D, 1.0))})
    days = {D - timedelta(days=back): totals(8, 10) for back in range(0, 30)}
    assert percentile(metric, days, D, catalog.windows) == 0.0


def _target(from_, target):
    from shared.core.catalog import TargetFrom

    return TargetFrom.model_validate({"from": from_, "target": target})


def test_a_trend_day_score_keeps_the_week_baseline_and_matches_the_board():
    metric = BOSTON.metric("bfd-incidents")
    days = {}
    for back in range(0, 900):
        day = D - timedelta(days=back)
        days[day] = totals(count=float(3 + (back * 7) % 11))
    first = min(days)
    dates = [D - timedelta(days=back) for back in range(0, 400, 7)]
    found = day_scores(metric, days, dates, BOSTON.windows, first)
    for as_of in dates:
        assert found[as_of] == score_metric(metric, days, as_of, BOSTON.windows, first)["day"].score, as_of
    assert found[D] is not None
    past = [score_metric(metric, days, D - timedelta(days=back), BOSTON.windows, first)["day"].score
            for back in range(1, HISTORY_DAYS + 1)]
    today = score_metric(metric, days, D, BOSTON.windows, first)["day"].score
    expected = 100 * sum(1 for s in past if s is not None and s <= today) / sum(1 for s in past if s is not None)
    assert percentile(metric, days, D, BOSTON.windows, first) == pytest.approx(expected)


def test_calendar_weeks_share_one_baseline_and_still_match_the_board():
    metric = BOSTON.metric("library-users")
    windows = {"day": Window(period="day"), "week": Window(period="week", starts="monday"),
               "month": Window(period="month")}
    days = {D - timedelta(days=back): totals(count=float(100 + back % 13)) for back in range(0, 800)}
    first = min(days)
    dates = [D - timedelta(days=back) for back in range(0, 30)]
    found = day_scores(metric, days, dates, windows, first)
    assert all(found[d] == score_metric(metric, days, d, windows, first)["day"].score for d in dates)
    assert years_back(D, 2) >= first


def test_no_day_window_no_percentile():
    metric = BOSTON.metric("311-call-center")
    windows = {"week": Window(days=7)}
    assert percentile(metric, {D: totals(1, 2), D - timedelta(days=1): totals(1, 2)}, D, windows) is None


def test_the_board_carries_each_metric_percentile_in_its_json():
    ledger = Ledger(BOSTON)
    ledger.days["311-call-center"].update({D - timedelta(days=1): totals(5, 10), D: totals(9, 10)})
    ledger.first_day["311-call-center"] = D - timedelta(days=1)
    board = with_percentiles(ledger.scoreboard(D), BOSTON, ledger.days, ledger.first_day)
    shape = board.as_dict(BOSTON)
    assert shape["metrics"]["311-call-center"]["percentile"] == 100.0
    assert shape["metrics"]["homicides"]["percentile"] is None
    assert set(board.percentiles) == {m.id for m in BOSTON.metrics}


@pytest.mark.parametrize("week", [Window(days=7), Window(period="week", starts="monday"), Window(period="month")])
def test_week_baselines_of_a_year_equal_the_historical_mean_of_each_date(week):
    import random

    from shared.core.percentile import week_baselines
    from shared.core.scoring import historical_mean

    rng = random.Random(7)
    first = date(2021, 3, 3)  # a year's window counts only from the first day with data on
    days = {first + timedelta(days=k): totals(count=float(rng.randrange(0, 50))) for k in range(1400)
            if rng.random() < 0.9}
    dates = [date(2024, 1, 1) + timedelta(days=k) for k in range(366)]  # across 29 February 2024
    found = week_baselines(days, week, dates, first)
    for as_of in dates:
        expected = historical_mean(days, week, as_of, first)
        got = found[week.span(as_of)]
        assert (got is None and expected is None) or got == pytest.approx(expected, rel=1e-12), as_of
    assert week_baselines(days, week, dates, None) == {week.span(d): None for d in dates}
