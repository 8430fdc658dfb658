"""A window's state beside its score: scored, no data, or insufficient data, per kind.

docs/scoring.md §4a: a null score is "no data" when the window
has no day with data, and "insufficient data" when it has data the kind cannot score. The
scores themselves are the same as before (the oracle tests check them).
"""

from datetime import date, timedelta

import pytest

from shared.core.catalog import Kind, load_catalog
from shared.core.scoring import (
    INSUFFICIENT,
    INSUFFICIENT_DATA,
    NO_DATA,
    NULL,
    SCORED,
    DayTotals,
    Scoreboard,
    WindowScore,
    score_metric,
    years_back,
)
from shared.core.windows import Window, days_up_to

BOSTON = load_catalog()
WINDOWS = {name: Window(days=days) for name, days in (("day", 1), ("week", 7), ("month", 30), ("quarter", 90))}
D = date(2026, 7, 23)


def totals(numerator=0.0, denominator=0.0, count=0.0, values=()):
    return DayTotals(numerator, denominator, count, list(values))


def states(metric_id: str, days: dict, as_of: date = D) -> dict[str, str]:
    return {window: result.state for window, result in score_metric(BOSTON.metric(metric_id), days, as_of,
                                                                    WINDOWS).items()}


def test_a_score_is_scored_and_nothing_at_all_is_no_data_for_every_kind():
    for metric in BOSTON.metrics:
        assert set(states(metric.id, {}).values()) == {NO_DATA}, metric.id
    assert states("311-call-center", {D: totals(9, 10)})["day"] == SCORED


def test_ratio_days_of_nothing_out_of_nothing_are_insufficient_data():
    # A tally of 0 of 0 (nothing to count that day) is data, but no share of anything.
    found = states("311-call-center", {D: totals(0, 0), D - timedelta(days=10): totals(3, 4)})
    assert found == {"day": INSUFFICIENT_DATA, "week": INSUFFICIENT_DATA, "month": SCORED, "quarter": SCORED}


def test_mean_daily_ratio_with_no_day_that_has_a_denominator_is_insufficient_data():
    # School closed: the attendance tally says 0 present of 0 enrolled.
    found = states("bps-attendance", {D: totals(0, 0), D - timedelta(days=40): totals(90, 100)})
    assert found == {"day": INSUFFICIENT_DATA, "week": INSUFFICIENT_DATA, "month": INSUFFICIENT_DATA,
                     "quarter": SCORED}


def test_a_median_of_zero_is_insufficient_data_and_no_measurement_is_no_data():
    found = states("ems-response-time", {D: totals(count=3, values=[0.0, 0.0, 5.0]),
                                          D - timedelta(days=8): totals(count=1, values=[6.0])})
    assert found == {"day": INSUFFICIENT_DATA, "week": INSUFFICIENT_DATA, "month": SCORED, "quarter": SCORED}
    assert states("ems-response-time", {D - timedelta(days=8): totals(count=1, values=[6.0])})["week"] == NO_DATA


def test_a_trend_with_data_now_but_no_past_year_is_insufficient_data():
    for metric_id in ("bfd-incidents", "library-users"):
        found = states(metric_id, {D: totals(count=3)})
        assert set(found.values()) == {INSUFFICIENT_DATA}, metric_id


def test_a_trend_with_a_past_year_but_nothing_in_the_window_is_no_data():
    history = {day: totals(count=3) for day in days_up_to(years_back(D, 1), 90)}
    assert set(states("bfd-incidents", history).values()) == {NO_DATA}
    # a count of 0 sent for the day (a tally) is data: lower is better, and 0 cannot be divided by
    history[D] = totals(count=0)
    found = states("bfd-incidents", history)
    assert found["day"] == found["week"] == INSUFFICIENT_DATA


def test_a_higher_is_better_trend_whose_past_years_counted_nothing_is_insufficient_data():
    zero_history = {day: totals(count=0) for day in days_up_to(years_back(D, 1), 90)}
    zero_history[D] = totals(count=100)
    assert set(states("library-users", zero_history).values()) == {INSUFFICIENT_DATA}


def test_the_state_is_in_the_json_beside_the_existing_fields():
    assert WindowScore(0.5, 1.0, 2.0).as_dict() == {"score": 0.5, "numerator": 1.0, "denominator": 2.0,
                                                    "state": SCORED}
    assert NULL.as_dict()["state"] == NO_DATA and INSUFFICIENT.as_dict()["state"] == INSUFFICIENT_DATA
    # an insufficient window still publishes no numerator and denominator, as Boston does for a null
    assert INSUFFICIENT.as_dict() == {"score": None, "numerator": None, "denominator": None,
                                      "state": INSUFFICIENT_DATA}
    metric = BOSTON.metrics[0]
    board = Scoreboard(D, {w: None for w in BOSTON.windows},
                       {m.id: {w: (INSUFFICIENT if m is metric else NULL) for w in BOSTON.windows}
                        for m in BOSTON.metrics})
    shape = board.as_dict(BOSTON)
    assert shape["metrics"][metric.id]["week"]["state"] == INSUFFICIENT_DATA
    assert shape["metrics"][BOSTON.metrics[1].id]["week"]["state"] == NO_DATA
    assert "percentile" not in shape["metrics"][metric.id]  # only when the board has them


def test_a_trend_kind_is_insufficient_whatever_the_window_form():
    calendar = {"day": Window(period="day"), "week": Window(period="week", starts="monday"),
                "month": Window(period="month")}
    result = score_metric(BOSTON.metric("homicides"), {D: totals(count=1)}, D, calendar)
    assert result["day"].state == INSUFFICIENT_DATA
    # the last complete week and month end before D and hold no day with data
    assert result["week"].state == NO_DATA and result["month"].state == NO_DATA
    assert Kind.TREND_LOWER_BETTER is BOSTON.metric("homicides").kind


def test_every_kind_follows_the_one_rule_the_read_api_uses_for_a_published_null():
    # The read API gives a published null its state from which days have data (scoring.unscored);
    # it must be the state scoring gives, for every kind and window, data or none.
    import random

    from shared.core.scoring import unscored

    rng = random.Random(3)
    for metric in BOSTON.metrics:
        for trial in range(40):
            days = {}
            for back in rng.sample(range(0, 800), rng.choice([0, 1, 3, 30])):
                zero = rng.random() < 0.5
                days[D - timedelta(days=back)] = totals(
                    0 if zero else 3, 0 if zero else 4, 0 if zero else 2,
                    [0.0] if zero else [0.0, 5.0, 6.0])
            for window, result in score_metric(metric, days, D, WINDOWS).items():
                if result.score is None:
                    assert result == unscored(days, WINDOWS[window].dates(D)), (metric.id, trial, window)


# -- a catalog's minimum denominator ---------------------------------------------------------------


def with_minimum(metric_id: str, minimum: float):
    return BOSTON.metric(metric_id).model_copy(update={"min_denominator": minimum})


def test_a_ratio_window_below_its_min_denominator_is_insufficient_data():
    metric = with_minimum("pothole-on-time", 30)
    days = {D: totals(9, 10), D - timedelta(days=3): totals(18, 20), D - timedelta(days=20): totals(1, 1)}
    found = score_metric(metric, days, D, WINDOWS)
    # 10 cases: no score, but the 9 of 10 it pooled are kept, as Boston publishes them beside a blank
    assert found["day"][:3] == (None, 9, 10) and found["day"].state == INSUFFICIENT_DATA
    assert found["week"].score == pytest.approx(27 / 30 / 0.8)  # 30 cases: enough
    assert found["month"].score == pytest.approx(28 / 31 / 0.8)
    # the same window without a minimum scores, as before
    assert score_metric(BOSTON.metric("pothole-on-time"), days, D, WINDOWS)["day"].score == pytest.approx(0.9 / 0.8)


def test_the_percentile_ranks_only_days_with_enough_cases():
    from shared.core.percentile import percentile

    metric = with_minimum("pothole-on-time", 5)
    days = {D - timedelta(days=2): totals(1, 1), D - timedelta(days=1): totals(9, 10), D: totals(9, 10)}
    # the day of 1 case (a score of 1.25 without a minimum) is not ranked: 9/10 ties with 9/10 only
    assert percentile(metric, days, D, WINDOWS) == 100.0
    assert percentile(BOSTON.metric("pothole-on-time"), days, D, WINDOWS) == 50.0
    days[D] = totals(1, 1)
    assert percentile(metric, days, D, WINDOWS) is None  # today's day is insufficient data
    assert percentile(BOSTON.metric("pothole-on-time"), days, D, WINDOWS) == 100.0


def test_the_catalog_takes_min_denominator_for_ratio_metrics_only():
    from pydantic import ValidationError

    from shared.core.catalog import Metric

    raw = BOSTON.metric("pothole-on-time").model_dump(by_alias=True)
    assert Metric.model_validate({**raw, "min_denominator": 30}).min_denominator == 30
    with pytest.raises(ValidationError, match="min_denominator"):
        Metric.model_validate({**raw, "min_denominator": 0})
    trend = BOSTON.metric("homicides").model_dump(by_alias=True)
    with pytest.raises(ValidationError, match="min_denominator only applies to kind 'ratio'"):
        Metric.model_validate({**trend, "min_denominator": 3})
