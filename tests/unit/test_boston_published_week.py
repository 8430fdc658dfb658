"""Boston's published week rebuilt from its published days, through `cityscore score`.

311 call center, Monday 3 to Sunday 9 February 2025: Boston published these day values, and on
Monday 10 February their sum as the week (the spec's §3b). With Boston's calendar windows the
week shown as of any day from Sunday 9 to Saturday 15 February is that week, and says so.
"""

import json
from datetime import date, timedelta

import pytest
from click.testing import CliRunner

from services.cli.commands import main

PUBLISHED_DAYS = [(829, 886), (664, 805), (720, 795), (821, 848), (721, 752), (516, 589), (308, 321)]
MONDAY = date(2025, 2, 3)
# The shipped catalog with Boston's published windows of 2025-2026, by its bare name.
CALENDAR = "boston-calendar.yaml"


@pytest.fixture
def published_days(tmp_path):
    path = tmp_path / "311-call-center.jsonl"
    tallies = [{"event_id": f"311-call-center-{MONDAY + timedelta(days=n)}", "type": "tally",
                "metric": "311-call-center", "date": (MONDAY + timedelta(days=n)).isoformat(),
                "numerator": numerator, "denominator": denominator}
               for n, (numerator, denominator) in enumerate(PUBLISHED_DAYS)]
    path.write_text("".join(json.dumps(tally) + "\n" for tally in tallies))
    return path


def score(events, as_of, catalog=None) -> dict:
    arguments = ["score", "--events", str(events), "--as-of", as_of]
    if catalog is not None:
        arguments += ["--catalog", str(catalog)]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("as_of", ["2025-02-09", "2025-02-10", "2025-02-15"])  # Sunday, Monday, Saturday
def test_the_published_week_is_the_sum_of_the_published_days(published_days, as_of):
    board = score(published_days, as_of, CALENDAR)
    week = board["metrics"]["311-call-center"]["week"]
    assert (week["numerator"], week["denominator"]) == (4579, 4996)
    assert (week["start"], week["end"]) == ("2025-02-03", "2025-02-09")
    assert week["score"] == 4579 / 4996 / 0.95
    assert board["windows"]["week"] == {"start": "2025-02-03", "end": "2025-02-09"}
    assert board["windows"]["month"] == {"start": "2025-01-01", "end": "2025-01-31"}  # February is not over


def test_the_published_sunday_is_the_day_as_of_sunday(published_days):
    day = score(published_days, "2025-02-09", CALENDAR)["metrics"]["311-call-center"]["day"]
    assert (day["numerator"], day["denominator"], day["start"], day["end"]) == (308, 321, "2025-02-09", "2025-02-09")
    # as of Saturday 15 February the day is 15 February, which has no tally
    later = score(published_days, "2025-02-15", CALENDAR)["metrics"]["311-call-center"]["day"]
    assert (later["score"], later["start"]) == (None, "2025-02-15")


def test_the_trailing_week_as_of_saturday_is_not_the_published_one(published_days):
    # Boston's shipped catalog keeps trailing windows: as of Saturday 15 February its week is
    # 9-15 February, holding only Sunday 9 of the published days.
    week = score(published_days, "2025-02-15")["metrics"]["311-call-center"]["week"]
    assert (week["numerator"], week["denominator"]) == (308, 321)
    assert (week["start"], week["end"]) == ("2025-02-09", "2025-02-15")
