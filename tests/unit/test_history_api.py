"""A metric's history from the read API over calendar windows and a changed target (SQLite).

With calendar windows the same week is the score of seven as-of dates in a row, so each entry
says which days its window covers and the target it was scored with, as the board does.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from services.scorer.app import create_app
from shared.core.catalog import load_catalog
from tests.fakes.clock import ManualClock
from tests.helpers.catalogs import variant
from tests.helpers.score_parts import sqlite_scores

PUBLISHED_DAYS = [(829, 886), (664, 805), (720, 795), (821, 848), (721, 752), (516, 589), (308, 321)]
MONDAY = date(2025, 2, 3)
# Boston's calendar windows, and a call center target lowered on Monday 10 February 2025.
CATALOG = variant(load_catalog("boston-calendar.yaml"), targets={"311-call-center": [
    {"from": date(2016, 1, 1), "target": 0.95}, {"from": date(2025, 2, 10), "target": 0.9}]})


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tallies = [{"event_id": f"t-{n}", "type": "tally", "metric": "311-call-center",
                "date": (MONDAY + timedelta(days=n)).isoformat(), "numerator": numerator, "denominator": denominator}
               for n, (numerator, denominator) in enumerate(PUBLISHED_DAYS)]
    engine = sqlite_scores(tmp_path_factory.mktemp('history') / "scores.db", CATALOG, tallies)
    app = create_app(engine=engine, catalog=CATALOG, clock=ManualClock(datetime(2025, 2, 17, 12, tzinfo=timezone.utc)))
    yield app.test_client()
    engine.dispose()


def test_each_as_of_date_says_the_days_of_its_week_and_the_target_it_was_scored_with(client):
    response = client.get("/v1/metrics/311-call-center/history?window=week&days=8&as_of=2025-02-16")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.json
    assert body["target"] == 0.9  # in force on the last as-of date, as the board's
    history = body["history"]
    assert [entry["as_of"] for entry in history] == [f"2025-02-{day:02d}" for day in range(9, 17)]
    for entry in history[:-1]:  # Sunday 9 to Saturday 15 February: the week of 3-9 February
        assert (entry["start"], entry["end"], entry["numerator"], entry["denominator"], entry["target"]) == (
            "2025-02-03", "2025-02-09", 4579, 4996, 0.95), entry["as_of"]
        assert entry["score"] == 4579 / 4996 / 0.95
    last = history[-1]  # Sunday 16 February: the week of 10-16 February, after the change
    assert (last["start"], last["end"], last["score"], last["target"]) == ("2025-02-10", "2025-02-16", None, 0.9)


def test_a_day_history_is_scored_with_the_target_of_each_day(client):
    history = client.get("/v1/metrics/311-call-center/history?window=day&days=2&as_of=2025-02-10").json["history"]
    assert [(e["start"], e["end"], e["numerator"], e["target"]) for e in history] == [
        ("2025-02-09", "2025-02-09", 308, 0.95), ("2025-02-10", "2025-02-10", None, 0.9)]
