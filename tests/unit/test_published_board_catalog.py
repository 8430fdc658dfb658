"""The published board is served only while it was scored with this catalog's windows and targets (SQLite).

The read API serves the scores the scorer last published for the current as-of date. When an
operator switches the catalog (Boston's calendar windows, a new target) and the read API
restarts before the scorer has rescored, those stored scores were computed over other days
or against another target: served under the new catalog they would carry the new dates and
the old numbers. The API recomputes them instead until the scorer has published again.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from services.scorer.app import create_app
from shared.core.catalog import load_catalog
from shared.core.contract import parse_event
from shared.core.folding import Ledger
from tests.fakes.clock import ManualClock
from tests.helpers.boards import board_differences
from tests.helpers.catalogs import variant
from tests.helpers.score_parts import sqlite_scores

TRAILING = load_catalog()
CALENDAR = load_catalog("boston-calendar.yaml")
RETARGETED = variant(TRAILING, targets={"311-call-center": [
    {"from": date(2016, 1, 1), "target": 0.95}, {"from": date(2025, 2, 12), "target": 0.9}]})
AS_OF = date(2025, 2, 12)  # a Wednesday: the trailing week is 6-12 February, the calendar one 3-9 February
NOW = ManualClock(datetime(2025, 2, 13, 17, tzinfo=timezone.utc))


def tallies() -> list[dict]:
    return [{"event_id": f"calls-{n}", "type": "tally", "metric": "311-call-center",
             "date": (date(2025, 1, 1) + timedelta(days=n)).isoformat(),
             "numerator": 500 + 7 * n, "denominator": 600 + n} for n in range(43)]


def published(tmp_path, catalog):
    """A database whose current scores the scorer published with `catalog`."""
    return sqlite_scores(tmp_path / "scores.db", catalog, tallies(), AS_OF)


def expected(catalog) -> dict:
    ledger = Ledger(catalog)
    for event in tallies():
        ledger.fold(parse_event(event))
    return ledger.scoreboard(AS_OF).as_dict(catalog)


def test_the_board_published_with_this_catalog_is_served_as_published(tmp_path):
    engine = published(tmp_path, CALENDAR)
    body = create_app(engine=engine, catalog=CALENDAR, clock=NOW).test_client().get("/v1/scoreboard").json
    assert body["updated_at"] is not None  # the stored board, not one computed on request
    assert board_differences(expected(CALENDAR), body) == []


def test_a_board_published_with_trailing_windows_is_not_served_under_calendar_windows(tmp_path):
    engine = published(tmp_path, TRAILING)
    body = create_app(engine=engine, catalog=CALENDAR, clock=NOW).test_client().get("/v1/scoreboard").json
    assert body["as_of"] == AS_OF.isoformat()
    calls = body["metrics"]["311-call-center"]["week"]
    assert (calls["start"], calls["end"]) == ("2025-02-03", "2025-02-09")
    assert board_differences(expected(CALENDAR), body) == []  # the calendar week's numbers, not the stored ones


def test_a_board_published_before_a_target_changed_is_not_served_with_the_new_target(tmp_path):
    engine = published(tmp_path, TRAILING)
    body = create_app(engine=engine, catalog=RETARGETED, clock=NOW).test_client().get("/v1/scoreboard").json
    calls = body["metrics"]["311-call-center"]["week"]
    assert calls["target"] == 0.9
    assert calls["score"] == calls["numerator"] / calls["denominator"] / 0.9
    assert board_differences(expected(RETARGETED), body) == []
