"""A metric and a window's figures in words, for every kind and feed (shared.core.wording).

The page, the notifier's Slack messages and the terminal board all take their words from
here; the survey line is the one a new user found reading "508 of 143" (issue 14, item 9).
"""

from __future__ import annotations

from datetime import date

import pytest
from rich.console import Console

from services.cli.terminal_board import render_table
from services.notifier.blocks import AlertView, alert_message, metric_scores_message
from shared.core import wording
from shared.core.catalog import Metric, load_catalog
from shared.core.scoring import NULL, Scoreboard, WindowScore, overall
from tests.helpers.catalogs import CALENDAR_WINDOWS, variant

CATALOG = load_catalog()
BY_ID = CATALOG.by_id


def metric(**fields) -> Metric:
    """A metric of a kind and feed Boston's catalog does not have."""
    base = {"id": "m", "name": "M", "department": "public-works"}
    return Metric.model_validate({**base, **fields})


SURVEY_WEEK = WindowScore(508 / 143 / 4, 508.0, 143.0)  # 143 ratings summing to 508: average 3.55


def test_a_survey_reads_as_an_average_rating_from_its_surveys():
    survey = BY_ID["311-surveys"]
    assert wording.figures(survey, SURVEY_WEEK) == "average rating 3.55 from 143 surveys"
    assert wording.target_short(survey) == "4"
    assert wording.score_line(survey, "week", SURVEY_WEEK) == \
        "week score 0.89 (average rating 3.55 from 143 surveys; target 4)"
    assert wording.figures(survey, WindowScore(5 / 4, 5.0, 1.0)) == "average rating 5.00 from 1 survey"


def test_the_survey_alert_in_slack_reads_the_same_words():
    view = AlertView(1, BY_ID["311-surveys"], "week", "firing", SURVEY_WEEK.score, 508.0, 143.0, None, None,
                     "Boston 311", ())
    message = alert_message(view)
    assert message["text"] == ("311 Constituent Experience Surveys week score 0.89 "
                               "(average rating 3.55 from 143 surveys; target 4)")
    assert "508 of 143" not in repr(message)
    assert "average rating 3.55 from 143 surveys" in repr(message["blocks"])


@pytest.mark.parametrize("metric_id, result, words", [
    # ratio, cases: on time of closed, with the share
    ("pothole-on-time", WindowScore(39 / 60 / 0.8, 39.0, 60.0), "39 of 60 cases closed on time (65%)"),
    ("pothole-on-time", WindowScore(1 / 0.8, 1.0, 1.0), "1 of 1 case closed on time (100%)"),
    # ratio, threshold: within the threshold, in the metric's unit
    ("311-call-center", WindowScore(698 / 932 / 0.95, 698.0, 932.0),
     "698 of 932 measurements within 30 seconds (74.9%)"),
    ("bfd-response-time", WindowScore(9 / 14 / 0.9, 9.0, 14.0), "9 of 14 measurements within 4 minutes (64.3%)"),
    # mean daily ratio, tallies: the average day's share (the published denominator is the target)
    ("bps-attendance", WindowScore(0.937 / 0.95, 0.937, 0.95), "93.7% on an average day"),
    # target over median: the median, in the unit (the published numerator is the target)
    ("ems-response-time", WindowScore(6 / 6.49167, 6.0, 6.49167), "median 6.49 minutes"),
    # trends: the current daily average against past years', whichever way the score divides them
    ("bfd-incidents", WindowScore(225.935 / 241.857, 225.935, 241.857),
     "241.86 incidents a day against 225.94 a day in past years"),
    ("shootings", WindowScore(2.0, 2.0, 1.0), "1 incident a day against 2 a day in past years"),
    ("library-users", WindowScore(22378.86 / 15450.46, 22378.86, 15450.46),
     "22,378.86 a day against 15,450.46 a day in past years"),
])
def test_every_boston_kind_in_the_words_of_its_feed(metric_id, result, words):
    assert wording.figures(BY_ID[metric_id], result) == words


def test_kinds_and_feeds_boston_does_not_use():
    ratings_daily = metric(kind="mean_daily_ratio", feed="rating", target=4, min_value=1, max_value=5)
    assert wording.figures(ratings_daily, WindowScore(3.8 / 4, 3.8, 4.0)) == "average rating 3.80 on an average day"
    assert wording.target_short(ratings_daily) == "4"
    cases_daily = metric(kind="mean_daily_ratio", feed="cases", target=0.8, sla={"hours": 24})
    assert wording.figures(cases_daily, WindowScore(0.9, 0.72, 0.8)) == \
        "72% of cases closed on time on an average day"
    threshold_daily = metric(kind="mean_daily_ratio", feed="threshold", target=0.9, threshold=4, unit="minutes")
    assert wording.figures(threshold_daily, WindowScore(1.0, 0.9, 0.9)) == \
        "90% of measurements within 4 minutes on an average day"
    tally_ratio = metric(kind="ratio", feed="tallies", target=0.95)
    assert wording.figures(tally_ratio, WindowScore(0.98, 43120.0, 46012.0)) == "43,120 of 46,012 (93.7%)"
    counted_trend = metric(kind="trend_lower_better", feed="tallies")
    assert wording.figures(counted_trend, WindowScore(1.5, 3.0, 2.0)) == "2 a day against 3 a day in past years"


def test_targets_in_a_line():
    assert wording.target_short(BY_ID["pothole-on-time"]) == "80%"
    assert wording.target_short(BY_ID["311-call-center"]) == "95%"
    assert wording.target_short(BY_ID["permit-reviews-on-time"]) == "100%"
    assert wording.target_short(BY_ID["bps-attendance"]) == "95%"
    assert wording.target_short(BY_ID["ems-response-time"]) == "6 minutes"
    assert wording.target_short(BY_ID["homicides"]) == "fewer than in past years"
    assert wording.target_short(BY_ID["library-users"]) == "more than in past years"


@pytest.mark.parametrize("metric_id, words", [
    ("pothole-on-time", "no cases closed in the window"),
    ("311-call-center", "no measurements in the window"),
    ("311-surveys", "no surveys in the window"),
    ("bps-attendance", "no day with data in the window"),
    ("ems-response-time", "no measurements in the window (or a median of 0)"),
    # A trend that fewer is better for has no score when nothing happened: say so, it is good news.
    ("shootings", "no incidents in the window, or no past years to compare with"),
    ("library-users", "no past years to compare with"),
])
def test_a_window_with_no_score_says_why_in_the_words_of_its_feed(metric_id, words):
    metric_ = BY_ID[metric_id]
    assert wording.figures(metric_, NULL) == words
    assert wording.score_line(metric_, "day", NULL) == f"day score — ({words}; target {wording.target_short(metric_)})"


def test_every_metric_of_the_catalog_has_words_for_every_result():
    for metric_ in CATALOG.metrics:
        for result in (NULL, WindowScore(0.9, 9.0, 10.0), WindowScore(1.2, 12.0, 10.0)):
            line = wording.score_line(metric_, "week", result)
            assert "None" not in line and "nan" not in line, (metric_.id, line)
        assert wording.how_scored(metric_) and wording.audit_terms(metric_)


def test_scores_and_standings():
    assert [wording.score_text(s) for s in (0.874, 0.996, 1.2, None, float("nan"))] == \
        ["0.87", "1.00", "1.20", "—", "—"]
    assert wording.score_text(None, none="") == ""
    assert wording.amount(1234567.0) == "1,234,567" and wording.amount(6.49167) == "6.49"
    assert wording.percent(0.95) == "95%" and wording.percent(9 / 14) == "64.3%"


def test_ratings_are_scored_in_words_of_ratings_on_the_page():
    assert "average rating" in wording.how_scored(BY_ID["311-surveys"])
    assert "divided by the target" in wording.how_scored(BY_ID["311-surveys"])
    assert wording.audit_terms(BY_ID["311-surveys"]) == ("sum of ratings", "ratings")


def test_trends_are_worded_alike_in_slack_and_on_the_page():
    """Slack said "past years' mean" where the page said "past years' daily average" (issue 14, item 2)."""
    shootings = BY_ID["shootings"]
    week = WindowScore(0.75, 3.0, 4.0)
    slack = repr(metric_scores_message(shootings, {"week": week}, date(2026, 7, 23)))
    assert "4 incidents a day against 3 a day in past years" in slack
    assert "mean" not in slack
    page_terms = wording.audit_terms(shootings)
    assert page_terms == ("past years' daily average", "current daily average")


def test_the_terminal_board_spells_out_the_weeks_follow_ups_in_the_same_words():
    metrics = {m.id: {w: NULL for w in CATALOG.windows} for m in CATALOG.metrics}
    metrics["311-surveys"]["week"] = SURVEY_WEEK
    metrics["pothole-on-time"]["week"] = WindowScore(39 / 60 / 0.8, 39.0, 60.0)
    metrics["shootings"]["week"] = WindowScore(1.25, 5.0, 4.0)  # above 1: no follow-up
    board = Scoreboard(date(2026, 7, 23), overall(metrics.values(), CATALOG.windows), metrics)
    console = Console(record=True, width=200)
    render_table(board, CATALOG, console)
    out = console.export_text()
    assert "0.89 ▼" in out and "1.25 ▲" in out
    lines = [line.strip() for line in out.splitlines()]
    follow_ups = lines[lines.index("Needs follow-up (below 1 in the week of 17–23 July), lowest first:") + 1:]
    assert [line for line in follow_ups if line] == [
        "POTHOLE ON-TIME %: week score 0.81 for 17–23 July (39 of 60 cases closed on time (65%); target 80%)",
        "311 CONSTITUENT EXPERIENCE SURVEYS: week score 0.89 for 17–23 July (average rating 3.55 from 143 surveys; "
        "target 4)",
    ]
    assert wording.legend() in out


# -- the days a window covers, and the targets over time ------------------------------------------


@pytest.mark.parametrize("start, end, words, with_year", [
    (date(2025, 2, 9), date(2025, 2, 9), "9 February", "9 February 2025"),
    (date(2025, 2, 3), date(2025, 2, 9), "3–9 February", "3–9 February 2025"),
    (date(2025, 1, 27), date(2025, 2, 2), "27 January – 2 February", "27 January – 2 February 2025"),
    (date(2025, 2, 1), date(2025, 2, 28), "February 2025", "February 2025"),  # a whole month says its year
    (date(2024, 2, 1), date(2024, 2, 29), "February 2024", "February 2024"),
    (date(2026, 2, 1), date(2026, 4, 30), "February – April 2026", "February – April 2026"),
    (date(2024, 11, 1), date(2025, 1, 31), "November 2024 – January 2025", "November 2024 – January 2025"),
    (date(2024, 12, 29), date(2025, 1, 4), "29 December 2024 – 4 January 2025",
     "29 December 2024 – 4 January 2025"),  # across a year end, always both years
])
def test_the_days_a_window_covers_in_words(start, end, words, with_year):
    assert wording.span_in_words(start, end) == words
    assert wording.span_in_words(start, end, year=True) == with_year


def test_a_window_and_its_days_in_a_line():
    assert wording.window_in_words("week", date(2025, 2, 3), date(2025, 2, 9)) == "week of 3–9 February"
    assert wording.window_in_words("month", date(2025, 2, 1), date(2025, 2, 28)) == "month of February 2025"
    pothole = BY_ID["pothole-on-time"]
    result = WindowScore(39 / 60 / 0.8, 39.0, 60.0)
    assert wording.score_line(pothole, "week", result, span=(date(2025, 2, 3), date(2025, 2, 9))) == \
        "week score 0.81 for 3–9 February (39 of 60 cases closed on time (65%); target 80%)"


def test_targets_over_time_each_with_the_day_it_took_effect():
    raised = metric(kind="ratio", feed="cases", sla={"hours": 24},
                    target=[{"from": "2016-01-01", "target": 0.8}, {"from": "2019-07-01", "target": 0.85}])
    assert wording.target_history(raised) == [(date(2016, 1, 1), "80% of cases closed on time"),
                                              (date(2019, 7, 1), "85% of cases closed on time")]
    # The target of a line and of the page is the one in force on the day asked.
    assert wording.target_short(raised, on=date(2019, 6, 30)) == "80%"
    assert wording.target_short(raised, on=date(2019, 7, 1)) == "85%"
    assert wording.target_sentence(raised, on=date(2019, 6, 30)) == "80% of cases closed on time"
    assert wording.score_line(raised, "week", WindowScore(0.9, 9.0, 10.0),
                              span=(date(2019, 6, 24), date(2019, 6, 30))).endswith("target 80%)")
    assert wording.target_history(BY_ID["pothole-on-time"]) == [(date.min, "80% of cases closed on time")]
    assert wording.target_history(BY_ID["shootings"]) == []


@pytest.mark.parametrize("windows, days, week", [
    (None, "day 23 July · week 17–23 July · month 24 June – 23 July · quarter 25 April – 23 July", "17–23 July"),
    (CALENDAR_WINDOWS, "day 23 July · week 13–19 July · month June 2026 · quarter April – June 2026", "13–19 July"),
])
def test_the_terminal_board_says_the_days_of_each_window_as_the_catalog_defines_it(windows, days, week):
    catalog = variant(CATALOG, windows=windows)
    metrics = {m.id: {w: NULL for w in catalog.windows} for m in catalog.metrics}
    metrics["pothole-on-time"]["week"] = WindowScore(39 / 60 / 0.8, 39.0, 60.0)
    board = Scoreboard(date(2026, 7, 23), overall(metrics.values(), catalog.windows), metrics)
    console = Console(record=True, width=200)
    render_table(board, catalog, console)
    lines = [line.strip() for line in console.export_text().splitlines()]
    assert f"Days each window covers: {days}" in lines
    assert f"Needs follow-up (below 1 in the week of {week}), lowest first:" in lines
    assert f"POTHOLE ON-TIME %: week score 0.81 for {week} (39 of 60 cases closed on time (65%); target 80%)" in lines


def test_a_ratio_below_its_min_denominator_says_it_has_too_few_to_judge_by():
    from shared.core.scoring import INSUFFICIENT

    few = BY_ID["pothole-on-time"].model_copy(update={"min_denominator": 100})
    assert wording.figures(few, WindowScore(None, 5.0, 10.0, True)) == \
        "5 of 10 cases closed on time (50%): fewer than 100 cases to judge by"
    # days of 0 of 0 are still nothing to take a share of, minimum or not
    assert "every denominator is 0" in wording.figures(few, INSUFFICIENT)
