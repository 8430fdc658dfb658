"""The one clock shape and the as-of day it gives (docs/scoring.md §3): yesterday in the city's zone."""

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from shared.core.catalog import load_catalog
from shared.core.scoring import as_of_at
from shared.platform.clock import Clock, SystemClock, current_as_of, system_clock
from tests.fakes.clock import ManualClock

CATALOG = load_catalog()  # Boston: America/New_York
BOSTON = ZoneInfo("America/New_York")


def test_the_as_of_day_moves_at_local_midnight_not_at_utc_midnight():
    # 23:59 on 1 July in Boston is already 2 July in UTC: scores are still as of 30 June.
    assert as_of_at(datetime(2026, 7, 2, 3, 59, tzinfo=timezone.utc), CATALOG) == date(2026, 6, 30)
    assert as_of_at(datetime(2026, 7, 2, 4, 1, tzinfo=timezone.utc), CATALOG) == date(2026, 7, 1)
    # the same instant given in another zone is the same day
    assert as_of_at(datetime(2026, 7, 1, 23, 59, tzinfo=BOSTON), CATALOG) == date(2026, 6, 30)


def test_the_as_of_day_follows_daylight_saving_time():
    # 8 March 2026: clocks go forward at 02:00; local midnight of the 9th is 04:00 UTC, of the 8th 05:00 UTC.
    assert as_of_at(datetime(2026, 3, 9, 3, 59, tzinfo=timezone.utc), CATALOG) == date(2026, 3, 7)
    assert as_of_at(datetime(2026, 3, 9, 4, 0, tzinfo=timezone.utc), CATALOG) == date(2026, 3, 8)
    assert as_of_at(datetime(2026, 3, 8, 4, 59, tzinfo=timezone.utc), CATALOG) == date(2026, 3, 6)
    assert as_of_at(datetime(2026, 3, 8, 5, 0, tzinfo=timezone.utc), CATALOG) == date(2026, 3, 7)


def test_a_naive_instant_is_refused_naming_it():
    with pytest.raises(ValueError, match="instant: a naive datetime"):
        as_of_at(datetime(2026, 7, 2, 12, 0), CATALOG)


def test_current_as_of_reads_the_clock_it_is_given():
    clock = ManualClock(datetime(2026, 7, 2, 3, 59, tzinfo=timezone.utc))
    assert current_as_of(clock, CATALOG) == date(2026, 6, 30)
    clock.advance(timedelta(minutes=2))
    assert current_as_of(clock, CATALOG) == date(2026, 7, 1)
    clock.set(datetime(2026, 7, 10, 12, 0, tzinfo=timezone.utc))
    assert current_as_of(clock, CATALOG) == date(2026, 7, 9)


def test_the_system_clock_is_aware_utc_and_moves():
    first = system_clock.now()
    assert isinstance(system_clock, SystemClock)
    assert first.utcoffset() == timedelta(0)
    assert abs(first - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert system_clock.now() >= first


def test_the_manual_clock_refuses_a_naive_time_and_is_a_clock():
    with pytest.raises(ValueError, match="start: give the clock an aware datetime"):
        ManualClock(datetime(2026, 7, 2, 12, 0))
    clock: Clock = ManualClock(datetime(2026, 7, 2, 12, 0, tzinfo=timezone.utc))
    with pytest.raises(ValueError, match="moment: give the clock an aware datetime"):
        clock.set(datetime(2026, 7, 2, 13, 0))
    assert clock.now() == datetime(2026, 7, 2, 12, 0, tzinfo=timezone.utc)
