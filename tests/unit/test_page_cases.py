"""How the pages say a case-fed metric's backlog and its cases: the formatting (pure), and a few
hand-made cases through Flask's test client on SQLite (the figures against the core's are
tests/integration/test_metric_page_cases.py's, in Chromium over PostgreSQL)."""

from __future__ import annotations

import html
import re
from datetime import date, datetime, timezone

import pytest

from services.scorer.app import create_app
from services.scorer.pages import attribute_heading, backlog_shown
from shared.core.wording import case_time, lateness_words
from shared.core.catalog import load_catalog
from tests.fakes.clock import ManualClock
from tests.helpers.score_parts import sqlite_scores

CATALOG = load_catalog()
AS_OF = date(2026, 6, 30)
NOW = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)


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
    assert case_time(datetime(2026, 6, 1, 14, 15, tzinfo=timezone.utc), CATALOG.zone) == "1 June 2026, 10:15 AM"
    assert case_time(datetime(2026, 1, 2, 4, 30, tzinfo=timezone.utc), CATALOG.zone) == "1 January 2026, 11:30 PM"
    assert case_time(datetime(2026, 6, 1, 4, 5, tzinfo=timezone.utc), CATALOG.zone) == "1 June 2026, 12:05 AM"


def test_attribute_names_as_column_headings():
    assert attribute_heading("neighborhood") == "Neighborhood"
    assert attribute_heading("police_district") == "Police district"
    assert attribute_heading("request-type") == "Request type"


def case(case_id: str, opened: str, due: str, closed: str | None = None) -> dict:
    return {"event_id": case_id, "type": "case", "metric": "pothole-on-time", "case_id": case_id,
            "opened_at": opened, "due_at": due, "closed_at": closed}


@pytest.fixture
def app(tmp_path):
    # Two cases closed in June (one on time, one late), one overdue at the end of 30 June, one due the
    # next morning.
    engine = sqlite_scores(tmp_path / "scores.db", CATALOG, [
        case("P-1", "2026-06-29T08:00:00-04:00", "2026-06-30T08:00:00-04:00", "2026-06-29T15:00:00-04:00"),
        case("P-2", "2026-06-29T08:00:00-04:00", "2026-06-30T08:00:00-04:00", "2026-06-30T11:00:00-04:00"),
        case("P-3", "2026-06-05T09:00:00-04:00", "2026-06-08T09:00:00-04:00"),
        case("P-4", "2026-06-30T09:00:00-04:00", "2026-07-01T09:00:00-04:00"),
    ], publish_as_of=AS_OF)
    yield create_app(engine=engine, catalog=CATALOG, clock=ManualClock(NOW))
    engine.dispose()


def text_of(response) -> str:
    """The page's words, tags left out."""
    assert response.status_code == 200, response.data
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.data.decode())).split())


def test_the_pages_project_the_windows_the_app_alerts_on(app):
    # The week (default): 1 on time of 2 closed, plus 1 overdue: 1/3 / 0.8.
    week = "1 overdue · 1 due within a day · projected week 0.42 if closed now"
    assert week in text_of(app.test_client().get("/"))
    assert week in text_of(app.test_client().get("/metric/pothole-on-time"))
    # The month too (the app's projected_windows: NOTIFIER_ALERT_WINDOWS as the read API reads it).
    app.extensions["cityscore"]["projected_windows"] = ("week", "month")
    both = week + " · projected month 0.42 if closed now"
    assert both in text_of(app.test_client().get("/metric/pothole-on-time"))


def test_metric_page_lists_the_cases_and_says_how_late(app):
    page = text_of(app.test_client().get("/metric/pothole-on-time"))
    assert "1 case still open past its due time at the end of Tuesday 30 June 2026, oldest first" in page
    assert "P-3 5 June 2026, 9:00 AM 8 June 2026, 9:00 AM 22 days 15 hours" in page
    assert "1 case closed late in the week 24–30 June 2026, latest first" in page
    assert "P-2 29 June 2026, 8:00 AM 30 June 2026, 8:00 AM 30 June 2026, 11:00 AM 3 hours" in page
    assert "P-1" not in page  # on time: not a late case
    assert "(not given) 1 2 ▼ 50% below target" in page  # no neighbourhood given: one group
    day = text_of(app.test_client().get("/metric/pothole-on-time?window=day"))
    assert "No case closed late in the day 30 June 2026." not in day  # P-2 closed on 30 June, late
    assert "1 case closed late in the day" in day


def test_metric_pages_without_cases(app):
    streetlight = text_of(app.test_client().get("/metric/streetlight-on-time"))
    assert "No case was open past its due time at the end of Tuesday 30 June 2026." in streetlight
    assert "No case closed late in the week 24–30 June 2026." in streetlight
    assert "none overdue · none due within a day" in streetlight
    ems = text_of(app.test_client().get("/metric/ems-response-time"))  # not fed cases: no backlog, no lists
    assert "overdue" not in ems and "The cases behind" not in ems
    refused = app.test_client().get("/metric/ems-response-time?window=fortnight")
    assert refused.status_code == 200  # a metric without cases has no window to choose


def test_an_unknown_window_is_refused_with_its_name(app):
    refused = app.test_client().get("/metric/pothole-on-time?window=fortnight")
    assert refused.status_code == 400
    assert "The window “fortnight” is not one of the Boston catalog's windows: day, week, month, quarter." in \
        html.unescape(refused.data.decode())


@pytest.mark.parametrize("path", ["/v1/scoreboard", "/v1/scoreboard?as_of=2026-06-29", "/", "/?as_of=2026-06-29"])
def test_a_board_request_reads_on_one_connection(app, path):
    """The data's range, the board (published or scored on request), its nulls' states, the
    stale-feed days and the backlog: one connection from the pool per request, not one per read."""
    from sqlalchemy import event

    engine = app.extensions["cityscore"]["store"].engine
    taken = []

    def checked_out(*_):
        taken.append(1)
    event.listen(engine, "checkout", checked_out)
    try:
        answer = app.test_client().get(path)
    finally:
        event.remove(engine, "checkout", checked_out)
    assert answer.status_code == 200
    assert len(taken) == 1
