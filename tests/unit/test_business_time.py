"""Due times: Boston's business-time rule (docs/scoring.md §5) and calendar SLAs."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from shared.core.business_time import BusinessCalendar
from shared.core.catalog import SLA, load_catalog

BOSTON = load_catalog()
NY = ZoneInfo("America/New_York")
CAL = BusinessCalendar(BOSTON)


def local(*args):
    return datetime(*args, tzinfo=NY)


def test_spec_example_opened_on_a_holiday_night():
    # Thursday 1 January 2015 00:25 (New Year's Day), 10 business days: Friday 16 January 08:30.
    due = CAL.due_at(SLA(business_days=10), local(2015, 1, 1, 0, 25, 23))
    assert due == local(2015, 1, 16, 8, 30)
    assert due.isoformat() == "2015-01-16T08:30:00-05:00"


@pytest.mark.parametrize(
    "opened, days, due",
    [
        # inside business hours: same clock time N business days later
        (local(2015, 1, 6, 14, 0), 1, local(2015, 1, 7, 14, 0)),
        (local(2015, 1, 9, 10, 15), 1, local(2015, 1, 12, 10, 15)),  # Friday -> Monday
        (local(2015, 1, 6, 8, 30), 2, local(2015, 1, 8, 8, 30)),  # exactly at opening
        (local(2015, 1, 16, 16, 59), 1, local(2015, 1, 20, 16, 59)),  # Friday; Monday 19th is MLK Day
        # outside: the clock starts at the next opening, 08:30
        (local(2015, 1, 6, 7, 0), 1, local(2015, 1, 7, 8, 30)),  # early morning: today's opening
        (local(2015, 1, 6, 17, 0), 1, local(2015, 1, 8, 8, 30)),  # at closing: tomorrow's opening
        (local(2015, 1, 9, 18, 0), 1, local(2015, 1, 13, 8, 30)),  # Friday evening -> Monday start
        (local(2015, 1, 10, 12, 0), 1, local(2015, 1, 13, 8, 30)),  # Saturday
        (local(2015, 4, 17, 12, 0), 1, local(2015, 4, 21, 12, 0)),  # Patriots' Day (MA) is skipped
    ],
)
def test_business_days(opened, days, due):
    assert CAL.due_at(SLA(business_days=days), opened) == due


def test_hours_are_elapsed_time_across_a_dst_change():
    # 24 hours from Saturday 14:00 EST over the spring-forward night is Sunday 15:00 EDT.
    due = CAL.due_at(SLA(hours=24), local(2015, 3, 7, 14, 0))
    assert due.astimezone(NY) == local(2015, 3, 8, 15, 0)


def test_calendar_days_keep_the_local_clock_time_across_a_dst_change():
    due = CAL.due_at(SLA(calendar_days=30), local(2015, 3, 1, 14, 0))
    assert due.astimezone(NY).isoformat() == "2015-03-31T14:00:00-04:00"


def test_sla_chosen_by_case_attribute():
    parks = BOSTON.metric("parks-maintenance-on-time")
    opened = local(2015, 1, 6, 14, 0)
    assert CAL.case_due_at(parks, opened, {"subtype": "lighting"}) == local(2015, 1, 15, 14, 0)  # 7 days
    assert CAL.case_due_at(parks, opened, {"subtype": "benches"}) == local(2015, 1, 13, 14, 0)  # 5 days
    assert CAL.case_due_at(parks, opened, None) == local(2015, 1, 13, 14, 0)


def test_an_opening_given_in_another_offset_is_judged_in_city_time():
    # 19:00 UTC is 14:00 in Boston in January: inside business hours.
    opened = datetime.fromisoformat("2015-01-06T19:00:00+00:00")
    assert CAL.due_at(SLA(business_days=1), opened) == local(2015, 1, 7, 14, 0)
