"""A catalog's windows at every calendar edge (docs/scoring.md §3, the spec's §3b).

A calendar window is the last complete period ending on or before the as-of date; a trailing
window is the N days ending on it. Boston's published windows are Monday-Sunday weeks,
calendar months and the last three calendar months.
"""

from datetime import date, timedelta

import pytest
import yaml

from shared.core.catalog import CatalogError, parse_catalog
from shared.core.windows import Period, Window, days_up_to, earliest_start

WEEK = Window(period=Period.WEEK, starts="monday")
MONTH = Window(period=Period.MONTH)
QUARTER = Window(period=Period.MONTH, count=3)
DAY = Window(period=Period.DAY)
BOSTON_CALENDAR = {"day": DAY, "week": WEEK, "month": MONTH, "quarter": QUARTER}


def span(window: Window, as_of: date) -> tuple[date, date]:
    return window.span(as_of)


# -- weeks ------------------------------------------------------------------------


@pytest.mark.parametrize("as_of", [
    date(2025, 2, 9),   # Sunday: the week ending that day is complete
    date(2025, 2, 10),  # Monday: the new week has not ended, the week before is shown
    date(2025, 2, 15),  # Saturday: still the week that ended the Sunday before
])
def test_a_monday_week_is_the_last_complete_monday_to_sunday_week(as_of):
    assert span(WEEK, as_of) == (date(2025, 2, 3), date(2025, 2, 9))
    assert WEEK.dates(as_of) == [date(2025, 2, 3) + timedelta(days=n) for n in range(7)]


def test_a_monday_week_moves_on_on_sunday():
    assert span(WEEK, date(2025, 2, 16)) == (date(2025, 2, 10), date(2025, 2, 16))
    assert span(WEEK, date(2025, 2, 2)) == (date(2025, 1, 27), date(2025, 2, 2))


def test_a_week_without_starts_runs_monday_to_sunday():
    assert Window(period=Period.WEEK).span(date(2025, 2, 15)) == (date(2025, 2, 3), date(2025, 2, 9))


def test_a_week_that_starts_on_sunday_ends_on_saturday():
    sunday_weeks = Window(period=Period.WEEK, starts="sunday")
    assert sunday_weeks.span(date(2025, 2, 15)) == (date(2025, 2, 9), date(2025, 2, 15))  # Saturday
    assert sunday_weeks.span(date(2025, 2, 14)) == (date(2025, 2, 2), date(2025, 2, 8))   # Friday
    assert sunday_weeks.span(date(2025, 2, 16)) == (date(2025, 2, 9), date(2025, 2, 15))  # Sunday
    wednesday_weeks = Window(period=Period.WEEK, starts="wednesday")
    assert wednesday_weeks.span(date(2025, 2, 11)) == (date(2025, 2, 5), date(2025, 2, 11))  # a Tuesday


def test_several_weeks_end_on_the_last_complete_week():
    fortnight = Window(period=Period.WEEK, starts="monday", count=2)
    assert fortnight.span(date(2025, 2, 9)) == (date(2025, 1, 27), date(2025, 2, 9))
    assert fortnight.span(date(2025, 2, 15)) == (date(2025, 1, 27), date(2025, 2, 9))
    assert len(fortnight.dates(date(2025, 2, 15))) == 14
    four = Window(period=Period.WEEK, starts="monday", count=4)
    assert four.span(date(2025, 2, 10)) == (date(2025, 1, 13), date(2025, 2, 9))


def test_a_week_across_29_february_and_a_year_end_has_seven_days():
    assert WEEK.dates(date(2024, 3, 3)) == [date(2024, 2, 26), date(2024, 2, 27), date(2024, 2, 28),
                                           date(2024, 2, 29), date(2024, 3, 1), date(2024, 3, 2),
                                           date(2024, 3, 3)]
    assert span(WEEK, date(2024, 2, 29)) == (date(2024, 2, 19), date(2024, 2, 25))  # a Thursday
    assert span(WEEK, date(2026, 1, 4)) == (date(2025, 12, 29), date(2026, 1, 4))   # Sunday after New Year
    assert span(WEEK, date(2026, 1, 1)) == (date(2025, 12, 22), date(2025, 12, 28))


# -- months -----------------------------------------------------------------------


def test_the_last_day_of_a_month_shows_that_month():
    assert span(MONTH, date(2025, 1, 31)) == (date(2025, 1, 1), date(2025, 1, 31))
    assert span(MONTH, date(2025, 4, 30)) == (date(2025, 4, 1), date(2025, 4, 30))


def test_any_other_day_shows_the_month_before():
    assert span(MONTH, date(2025, 1, 30)) == (date(2024, 12, 1), date(2024, 12, 31))  # across a year end
    assert span(MONTH, date(2025, 2, 1)) == (date(2025, 1, 1), date(2025, 1, 31))     # the first day
    assert span(MONTH, date(2025, 3, 1)) == (date(2025, 2, 1), date(2025, 2, 28))


def test_29_february_in_a_leap_year_and_28_february_in_others():
    assert span(MONTH, date(2024, 2, 29)) == (date(2024, 2, 1), date(2024, 2, 29))
    assert len(MONTH.dates(date(2024, 2, 29))) == 29
    assert span(MONTH, date(2024, 2, 28)) == (date(2024, 1, 1), date(2024, 1, 31))  # February is not over
    assert span(MONTH, date(2024, 3, 1)) == (date(2024, 2, 1), date(2024, 2, 29))
    assert span(MONTH, date(2025, 2, 28)) == (date(2025, 2, 1), date(2025, 2, 28))
    assert len(MONTH.dates(date(2025, 2, 28))) == 28
    assert span(MONTH, date(2100, 2, 28)) == (date(2100, 2, 1), date(2100, 2, 28))  # 2100 is not a leap year


def test_a_year_end():
    assert span(MONTH, date(2025, 12, 31)) == (date(2025, 12, 1), date(2025, 12, 31))
    assert span(MONTH, date(2026, 1, 1)) == (date(2025, 12, 1), date(2025, 12, 31))
    assert span(QUARTER, date(2025, 12, 31)) == (date(2025, 10, 1), date(2025, 12, 31))
    assert span(QUARTER, date(2026, 1, 1)) == (date(2025, 10, 1), date(2025, 12, 31))
    assert span(QUARTER, date(2025, 12, 30)) == (date(2025, 9, 1), date(2025, 11, 30))
    assert span(DAY, date(2025, 12, 31)) == (date(2025, 12, 31), date(2025, 12, 31))


def test_the_quarter_is_the_last_three_complete_months_as_boston_published_it():
    # Boston's quarter of 16 May 2026 was February + March + April 2026.
    assert span(QUARTER, date(2026, 5, 16)) == (date(2026, 2, 1), date(2026, 4, 30))
    assert len(QUARTER.dates(date(2026, 5, 16))) == 28 + 31 + 30
    # A rolling quarter, not a calendar quarter: it moves every month.
    assert span(QUARTER, date(2026, 5, 31)) == (date(2026, 3, 1), date(2026, 5, 31))
    assert span(QUARTER, date(2024, 3, 1)) == (date(2023, 12, 1), date(2024, 2, 29))


# -- days and trailing windows ----------------------------------------------------


def test_a_calendar_day_is_the_as_of_day_and_a_count_of_days_ends_on_it():
    assert span(DAY, date(2025, 2, 15)) == (date(2025, 2, 15), date(2025, 2, 15))
    three = Window(period=Period.DAY, count=3)
    assert three.dates(date(2024, 3, 1)) == [date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1)]


def test_a_window_read_back_from_its_dump_is_the_same_window():
    for window in (Window(days=7), DAY, WEEK, QUARTER, Window(period=Period.WEEK, starts="sunday", count=2)):
        assert Window.model_validate(window.model_dump()) == window


def test_trailing_windows_are_unchanged():
    as_of = date(2025, 2, 15)
    assert Window(days=1).span(as_of) == (as_of, as_of)
    assert Window(days=7).span(as_of) == (date(2025, 2, 9), as_of)
    assert Window(days=30).span(as_of) == (date(2025, 1, 17), as_of)
    assert Window(days=90).dates(as_of)[0] == date(2024, 11, 18) and len(Window(days=90).dates(as_of)) == 90
    assert Window.model_validate(7) == Window(days=7)  # `week: 7` in a catalog
    assert not Window(days=7).is_calendar and WEEK.is_calendar


# -- what must be read ------------------------------------------------------------


@pytest.mark.parametrize("window", [
    Window(days=1), Window(days=90), DAY, Window(period=Period.DAY, count=5), WEEK,
    Window(period=Period.WEEK, starts="thursday", count=3), MONTH, QUARTER, Window(period=Period.MONTH, count=12),
], ids=lambda w: w.model_dump_json(exclude_defaults=True))
def test_a_window_never_reaches_further_back_than_its_reach_and_never_past_the_as_of_day(window):
    # Over four years of as-of dates (two 29 Februaries): the readers load reach_days before
    # the as-of day, so a window starting earlier would be scored with missing days.
    as_of = date(2023, 1, 1)
    while as_of < date(2027, 1, 1):
        start, end = window.span(as_of)
        assert start <= end <= as_of
        assert (as_of - start).days + 1 <= window.reach_days, as_of
        as_of += timedelta(days=1)


def test_spans_never_move_back_as_the_as_of_day_moves_on():
    # A history reads from earliest_start(first as-of day): that holds only if no later
    # as-of day starts a window earlier.
    as_of = date(2023, 12, 1)
    previous = earliest_start(BOSTON_CALENDAR, as_of)
    while as_of < date(2025, 3, 31):
        as_of += timedelta(days=1)
        start = earliest_start(BOSTON_CALENDAR, as_of)
        assert start >= previous, as_of
        previous = start


def test_earliest_start_is_the_longest_window_s_start():
    assert earliest_start(BOSTON_CALENDAR, date(2026, 5, 16)) == date(2026, 2, 1)
    assert earliest_start({"week": Window(days=7), "quarter": Window(days=90)}, date(2026, 5, 16)) == date(2026, 2, 16)


# -- the same period in past years (trend baselines) ------------------------------


def test_a_month_in_past_years_is_that_year_s_whole_month():
    as_of = date(2025, 3, 10)  # the month is February 2025 (28 days)
    feb_2024 = MONTH.past_year_dates(as_of, 1)
    assert (feb_2024[0], feb_2024[-1], len(feb_2024)) == (date(2024, 2, 1), date(2024, 2, 29), 29)
    feb_2023 = MONTH.past_year_dates(as_of, 2)
    assert (feb_2023[0], feb_2023[-1], len(feb_2023)) == (date(2023, 2, 1), date(2023, 2, 28), 28)
    # and from a leap February back to an ordinary one
    assert len(MONTH.past_year_dates(date(2024, 2, 29), 1)) == 28


def test_a_quarter_in_past_years_is_those_three_whole_months():
    moved = QUARTER.past_year_dates(date(2024, 3, 1), 1)  # Dec 2023 - Feb 2024 -> Dec 2022 - Feb 2023
    assert (moved[0], moved[-1], len(moved)) == (date(2022, 12, 1), date(2023, 2, 28), 31 + 31 + 28)
    moved = QUARTER.past_year_dates(date(2025, 3, 1), 1)  # Dec 2024 - Feb 2025 -> Dec 2023 - Feb 2024
    assert (moved[0], moved[-1], len(moved)) == (date(2023, 12, 1), date(2024, 2, 29), 31 + 31 + 29)


def test_a_week_in_past_years_moves_each_day_back():
    moved = WEEK.past_year_dates(date(2025, 2, 15), 1)
    assert moved == [date(2024, 2, 3) + timedelta(days=n) for n in range(7)]
    # 29 February moves to 28 February, which then counts twice: every year gives seven days
    moved = WEEK.past_year_dates(date(2024, 3, 3), 1)
    assert moved.count(date(2023, 2, 28)) == 2 and len(moved) == 7


# -- in words ---------------------------------------------------------------------


def test_each_window_describes_itself():
    assert WEEK.describe() == "the last complete week (Monday to Sunday) ending on or before the as-of day"
    assert Window(period=Period.WEEK, starts="sunday", count=2).describe() == (
        "the last complete 2 weeks (Sunday to Saturday) ending on or before the as-of day")
    assert MONTH.describe() == "the last complete calendar month ending on or before the as-of day"
    assert QUARTER.describe() == "the last complete 3 calendar months ending on or before the as-of day"
    assert DAY.describe() == Window(days=1).describe() == "the as-of day"
    assert Window(days=7).describe() == "the last 7 days up to the as-of day"


# -- in a catalog -----------------------------------------------------------------


def catalog_with(windows) -> dict:
    return {
        "city": "Somerville",
        "timezone": "America/New_York",
        "windows": windows,
        "departments": [{"id": "dpw", "name": "Public Works"}],
        "metrics": [{"id": "snow-on-time", "name": "SNOW REMOVAL", "kind": "ratio", "target": 0.9,
                     "department": "dpw", "feed": "cases", "sla": {"hours": 12}}],
    }


def test_a_catalog_writes_its_windows_exactly_as_the_issue_does():
    written = yaml.safe_load("""
windows:
  day: {period: day}
  week: {period: week, starts: monday}
  month: {period: month}
  quarter: {period: month, count: 3}
""")["windows"]
    catalog = parse_catalog(catalog_with(written))
    assert catalog.windows == BOSTON_CALENDAR
    mixed = parse_catalog(catalog_with({"day": 1, "week": {"period": "week"}, "month": 30}))
    assert mixed.windows == {"day": Window(days=1), "week": Window(period=Period.WEEK), "month": Window(days=30)}


def refusals(windows) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(catalog_with(windows), "test.yaml")
    return caught.value.problems


@pytest.mark.parametrize("windows, expected", [
    ({"week": {"days": 7, "period": "week"}},
     "windows.week: give a number of trailing days (week: 7) or a calendar period "
     "(week: {period: week, starts: monday}), not both or neither"),
    ({"week": {}}, "windows.week: give a number of trailing days (week: 7) or a calendar period "
                   "(week: {period: week, starts: monday}), not both or neither"),
    ({"week": 7, "month": {"period": "month", "starts": "monday"}},
     "windows.month: starts only applies to period: week"),
    ({"week": {"days": 7, "starts": "monday"}}, "windows.week: starts and count only apply to a calendar period"),
    ({"week": {"days": 7, "count": 2}}, "windows.week: starts and count only apply to a calendar period"),
    ({"week": {"period": "week", "count": 0}}, "windows.week.count: Input should be greater than 0"),
    ({"week": {"period": "fortnight"}}, "windows.week.period: Input should be 'day', 'week' or 'month'"),
    ({"week": {"period": "week", "starts": "funday"}},
     "windows.week.starts: Input should be 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', "
     "'saturday' or 'sunday'"),
    ({"week": {"period": "week", "every": 2}}, "windows.week.every: Extra inputs are not permitted"),
    ({"week": 0}, "windows.week.days: Input should be greater than 0"),
    ({"day": 1, "month": {"period": "month"}}, "windows: a 'week' window is required"),
])
def test_an_invalid_window_is_refused_naming_the_window_and_the_reason(windows, expected):
    assert refusals(windows) == [expected]


@pytest.mark.parametrize("written", ["7", 7.5, True, [7], "week"])
def test_a_window_that_is_neither_a_number_nor_a_period_says_what_to_write(written):
    assert refusals({"week": written}) == [
        "windows.week: give a number of trailing days (week: 7) or a calendar period "
        "(week: {period: week, starts: monday})"]


def test_the_days_a_caller_gets_are_its_own():
    """The dates worked out once are shared between callers, so each caller gets a list of its own
    (a history appends to its run of days): changing it changes nothing for the next one."""
    end = date(2026, 7, 23)
    expected = [date(2026, 7, 21), date(2026, 7, 22), date(2026, 7, 23)]
    days = days_up_to(end, 3)
    assert days == expected
    days.append(date(2026, 7, 24))
    assert days_up_to(end, 3) == expected
    week = Window(days=3)
    dates = week.dates(end)
    assert dates == expected
    dates.clear()
    assert week.dates(end) == expected
