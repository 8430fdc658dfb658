"""The scorer, its read API and `cityscore rebuild` follow a catalog's calendar windows, on the
real broker and PostgreSQL.

Boston's published 311 call center days of Monday 3 to Sunday 9 February 2025 as tallies: with
Boston's calendar windows, as of Saturday 15 February, the week published is 4579/4996 of 3-9
February; with the shipped trailing windows it is 308/321 of 9-15 February. Changing the
catalog's windows and rebuilding gives the calendar numbers and publishes them as changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import text

from services.scorer.app import create_app
from services.scorer.replay import replay
from shared.core.catalog import load_catalog

from tests.helpers.score_parts import score_parts
from tests.helpers.scorer import ROOT, clock_for, latest_change, published_changes, run_scorer_until_idle
from tests.helpers.waiting import wait_until

TRAILING = load_catalog()
# Boston's published windows of 2025-2026: the shipped catalog, by its bare name.
CALENDAR_FILE = "boston-calendar.yaml"
CALENDAR = load_catalog(CALENDAR_FILE)
PUBLISHED_DAYS = [(829, 886), (664, 805), (720, 795), (821, 848), (721, 752), (516, 589), (308, 321)]
MONDAY = date(2025, 2, 3)
SATURDAY = date(2025, 2, 15)


def tallies(first: date, numbers: list[tuple[int, int]], tag: str = "") -> list[dict]:
    return [{"event_id": f"311-call-center{tag}-{first + timedelta(days=n)}", "type": "tally",
             "metric": "311-call-center", "date": (first + timedelta(days=n)).isoformat(),
             "numerator": numerator, "denominator": denominator}
            for n, (numerator, denominator) in enumerate(numbers)]


def stored(engine, metric: str, window: str) -> tuple:
    with engine.connect() as conn:
        return tuple(conn.execute(text('SELECT as_of, numerator, denominator FROM current_scores '
                                       'WHERE metric = :m AND "window" = :w'), {"m": metric, "w": window}).one())


def test_the_scorer_with_a_calendar_catalog_publishes_the_calendar_week(stream, engine):
    stream.send(tallies(MONDAY, PUBLISHED_DAYS))
    run_scorer_until_idle(stream, engine, CALENDAR, SATURDAY)

    wait_until(lambda: any(c["metric"] == "311-call-center" for c in published_changes(stream)), 60, "scores published")
    week = latest_change(published_changes(stream), "311-call-center", "week")
    assert (week["as_of"], week["numerator"], week["denominator"]) == ("2025-02-15", 4579, 4996)
    assert week["score"] == pytest.approx(4579 / 4996 / 0.95, rel=1e-12)
    assert latest_change(published_changes(stream), "311-call-center", "month")["score"] is None  # January: no data
    assert stored(engine, "311-call-center", "week") == (SATURDAY, 4579, 4996)

    # The read API's default board is the board the scorer published, with its dates.
    client = create_app(stream.settings(), engine=engine, catalog=CALENDAR, clock=clock_for(SATURDAY)).test_client()
    board = client.get("/v1/scoreboard").json
    assert board["updated_at"] is not None  # the stored board, not one scored on request
    shown = board["metrics"]["311-call-center"]["week"]
    assert (shown["numerator"], shown["denominator"], shown["start"], shown["end"]) == (
        4579, 4996, "2025-02-03", "2025-02-09")


def test_a_rebuild_with_the_calendar_windows_publishes_the_calendar_scores(stream, engine):
    stream.send(tallies(MONDAY, PUBLISHED_DAYS))
    run_scorer_until_idle(stream, engine, TRAILING, SATURDAY)
    assert stored(engine, "311-call-center", "week") == (SATURDAY, 308, 321)  # 9-15 February: the Sunday only
    trailing_week = latest_change(published_changes(stream), "311-call-center", "week")

    store = score_parts(engine, CALENDAR)
    report = replay(stream.settings(), store.writer, store.scores, CALENDAR, clock=clock_for(SATURDAY))

    assert report.changes > 0
    assert stored(engine, "311-call-center", "week") == (SATURDAY, 4579, 4996)
    week = latest_change(published_changes(stream), "311-call-center", "week")
    assert (week["numerator"], week["denominator"]) == (4579, 4996)
    assert week["previous_score"] == trailing_week["score"]


@pytest.mark.parametrize("given", [
    {"CITYSCORE_CATALOG": CALENDAR_FILE},
    # --catalog, as `cityscore score` takes it, wins over the environment's.
    {"CITYSCORE_CATALOG": "boston.yaml", "--catalog": CALENDAR_FILE},
], ids=["CITYSCORE_CATALOG", "--catalog"])
def test_the_rebuild_command_follows_the_catalog_it_is_given(stream, engine, given):
    # The command scores as of its own yesterday: 120 days of tallies up to it, each day's
    # numbers its own, so each window's sums say which days it took.
    yesterday = datetime.now(TRAILING.zone).date() - timedelta(days=1)
    first = yesterday - timedelta(days=119)
    numbers = [(n + 1, 2 * n + 3) for n in range(120)]
    stream.send(tallies(first, numbers, "-daily"))
    env = {**os.environ, **stream.env(), "CITYSCORE_LOG_LEVEL": "WARNING",
           "CITYSCORE_CATALOG": given["CITYSCORE_CATALOG"]}
    option = ["--catalog", given["--catalog"]] if "--catalog" in given else []
    done = subprocess.run([sys.executable, "-m", "services.cli", "rebuild", "--yes", *option], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    by_day = {first + timedelta(days=n): pair for n, pair in enumerate(numbers)}
    for name, window in CALENDAR.windows.items():
        as_of, numerator, denominator = stored(engine, "311-call-center", name)
        assert as_of == yesterday
        days = window.dates(as_of)
        assert (numerator, denominator) == (sum(by_day[d][0] for d in days), sum(by_day[d][1] for d in days)), name


def test_a_scorer_restarted_with_calendar_windows_rescores_without_a_rebuild(stream, engine):
    # docs/scoring.md: a change of windows needs no rebuild; the scorer rescores every metric
    # when it starts and publishes each score that moved.
    stream.send(tallies(MONDAY, PUBLISHED_DAYS))
    run_scorer_until_idle(stream, engine, TRAILING, SATURDAY)
    assert stored(engine, "311-call-center", "week") == (SATURDAY, 308, 321)
    before = len(published_changes(stream))

    run_scorer_until_idle(stream, engine, CALENDAR, SATURDAY)  # no new event

    assert stored(engine, "311-call-center", "week") == (SATURDAY, 4579, 4996)
    changes = published_changes(stream)[before:]
    week = latest_change(changes, "311-call-center", "week")
    assert (week["numerator"], week["denominator"]) == (4579, 4996)
