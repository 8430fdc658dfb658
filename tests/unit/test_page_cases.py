"""How the pages say a case-fed metric's backlog and its cases: pure formatting, no server."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.scorer.pages import attribute_heading, backlog_shown, case_time, lateness_words
from shared.core.catalog import load_catalog

CATALOG = load_catalog()


def fields(overdue: int, due_soon: int, projected: dict | None = None) -> dict:
    shown: dict = {"open": {"overdue": overdue, "due_soon": due_soon}}
    if projected is not None:
        shown["projected"] = projected
    return shown


def test_backlog_in_words_with_the_projected_alert_window_score():
    shown = backlog_shown(fields(14, 9, {"week": {"score": 92 / 152 / 0.8 * 1.2, "numerator": 92, "denominator": 152}}))
    assert shown.words == "14 overdue · 9 due within a day · projected week 0.91 if closed now"
    assert (shown.overdue, shown.due_soon) == (14, 9)
    (projection,) = shown.projections
    assert projection.window == "week" and projection.cell.standing == "below"
    assert (projection.numerator, projection.denominator) == (92, 152)


def test_backlog_with_nothing_overdue_does_not_repeat_the_score_as_a_projection():
    shown = backlog_shown(fields(0, 1, {"week": {"score": 1.05, "numerator": 84, "denominator": 100}}))
    assert shown.words == "none overdue · 1 due within a day"
    assert shown.projections == []
    assert backlog_shown(fields(0, 0)).words == "none overdue · none due within a day"


def test_backlog_of_thousands_and_of_several_alert_windows():
    shown = backlog_shown(fields(1234, 0, {
        "week": {"score": 0.5, "numerator": 10, "denominator": 1244},
        "month": {"score": 1.0, "numerator": 50, "denominator": 1284}}))
    assert shown.words == ("1,234 overdue · none due within a day · projected week 0.50 if closed now · "
                           "projected month 1.00 if closed now")


def test_a_projection_over_too_few_cases_says_insufficient_data():
    shown = backlog_shown(fields(2, 0, {"week": {"score": None, "numerator": 1.0, "denominator": 3.0}}))
    assert shown.words == "2 overdue · none due within a day · projected week insufficient data if closed now"
    assert shown.projections[0].cell.insufficient


@pytest.mark.parametrize("hours, words", [
    (0.0, ""), (0.004, ""), (0.01, "1 minute"), (0.67, "40 minutes"), (1.0, "1 hour"), (7.4, "7 hours"),
    (0.999, "1 hour"), (47.99, "47 hours"), (48.0, "2 days"), (49.0, "2 days 1 hour"), (686.5, "28 days 14 hours"),
])
def test_how_late_in_words(hours, words):
    assert lateness_words(hours) == words


def test_case_times_in_the_citys_local_time():
    assert case_time(datetime(2026, 6, 1, 14, 15, tzinfo=timezone.utc), CATALOG) == "1 June 2026, 10:15 AM"
    assert case_time(datetime(2026, 1, 2, 4, 30, tzinfo=timezone.utc), CATALOG) == "1 January 2026, 11:30 PM"
    assert case_time(datetime(2026, 6, 1, 4, 5, tzinfo=timezone.utc), CATALOG) == "1 June 2026, 12:05 AM"


def test_attribute_names_as_column_headings():
    assert attribute_heading("neighborhood") == "Neighborhood"
    assert attribute_heading("police_district") == "Police district"
    assert attribute_heading("request-type") == "Request type"
