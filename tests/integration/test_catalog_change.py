"""What a change of the catalog does to the scores already folded (docs/scoring.md §3, "Changing
the catalog: when a rebuild is needed"), on the real broker and PostgreSQL.

Targets and windows are read when scores are computed from the day totals: past boards follow
at once, and a scorer started with the new catalog republishes the current scores, no rebuild.
An SLA decides whether a case was on time when it is folded: only `cityscore rebuild` applies a
new one to the cases already folded.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import func, select, text

from services.scorer.replay import replay
from shared.core.catalog import Catalog, load_catalog
from shared.store.tables.scorer import DayTotal, ProcessedEvent

from tests.helpers.score_parts import score_parts
from tests.helpers.scorer import clock_for, latest_change, published_changes, run_scorer_until_idle

TRAILING = load_catalog()
BOSTON = ZoneInfo("America/New_York")
# Boston's published 311 call center days of Monday 3 to Sunday 9 February 2025, and one more day.
MONDAY = date(2025, 2, 3)
PUBLISHED_DAYS = [(829, 886), (664, 805), (720, 795), (821, 848), (721, 752), (516, 589), (308, 321)]
WEDNESDAY_AFTER = (date(2025, 2, 12), (500, 550))
SATURDAY = date(2025, 2, 15)


def catalog_file(tmp_path, name: str, data: dict) -> Catalog:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_catalog(path)


def tally(day: date, numerator: int, denominator: int) -> dict:
    return {"event_id": f"311-call-center-{day}", "type": "tally", "metric": "311-call-center",
            "date": day.isoformat(), "numerator": numerator, "denominator": denominator}


def figures(result) -> tuple:
    return result.score, result.numerator, result.denominator


def stored(engine, metric: str, window: str) -> tuple:
    with engine.connect() as conn:
        return tuple(conn.execute(text('SELECT as_of, score, numerator, denominator FROM current_scores '
                                       'WHERE metric = :m AND "window" = :w'), {"m": metric, "w": window}).one())


def folded(engine) -> tuple:
    """What the events folded into: the events counted, and every day's totals."""
    with engine.connect() as conn:
        events = conn.scalar(select(func.count()).select_from(ProcessedEvent))
        days = conn.execute(select(DayTotal.__table__).order_by(DayTotal.metric, DayTotal.day)).all()
    return events, [tuple(row) for row in days]


def test_new_targets_and_windows_need_no_rebuild(stream, engine, tmp_path):
    stream.send([tally(MONDAY + timedelta(days=n), *numbers) for n, numbers in enumerate(PUBLISHED_DAYS)]
                + [tally(WEDNESDAY_AFTER[0], *WEDNESDAY_AFTER[1])])
    run_scorer_until_idle(stream, engine, TRAILING, SATURDAY)
    trailing_week = (SATURDAY, pytest.approx(808 / 871 / 0.95), 808, 871)  # 9-15 February: the 9th and the 12th
    assert stored(engine, "311-call-center", "week") == trailing_week
    before = folded(engine)

    # Boston's calendar windows, and a target of 0.9 from Monday 10 February.
    changed = catalog_file(tmp_path, "calendar-targets.yaml", {
        "extends": "boston-calendar.yaml",
        "metric_overrides": {"311-call-center": {"target": [{"from": date(2016, 1, 1), "target": 0.95},
                                                           {"from": date(2025, 2, 10), "target": 0.9}]}},
    })

    # A past board follows the new catalog as soon as it is read: computed from the same day totals.
    board = score_parts(engine, changed).reader.scoreboard(WEDNESDAY_AFTER[0])
    call_center = board.metrics["311-call-center"]
    assert figures(call_center["day"]) == (pytest.approx(500 / 550 / 0.9), 500, 550)  # the 12th: the new target
    assert figures(call_center["week"]) == (pytest.approx(4579 / 4996 / 0.95), 4579, 4996)  # 3-9 Feb: the old one
    old = score_parts(engine, TRAILING).reader.scoreboard(WEDNESDAY_AFTER[0]).metrics["311-call-center"]
    assert figures(old["week"]) == (pytest.approx(2866 / 3060 / 0.95), 2866, 3060)  # 6-12 February

    # Until a scorer runs with the new catalog, the published scores are the old ones ...
    assert stored(engine, "311-call-center", "week") == trailing_week
    # ... and one started with it republishes every score that moved, folding nothing again.
    run_scorer_until_idle(stream, engine, changed, SATURDAY)
    assert stored(engine, "311-call-center", "week") == (SATURDAY, pytest.approx(4579 / 4996 / 0.95), 4579, 4996)
    week = latest_change(published_changes(stream), "311-call-center", "week")
    assert (week["numerator"], week["denominator"]) == (4579, 4996)
    assert week["previous_score"] == pytest.approx(808 / 871 / 0.95)
    assert folded(engine) == before


def test_a_new_sla_needs_a_rebuild(stream, engine, tmp_path):
    # Opened Monday 10 February 2025 at 09:00, closed Tuesday at 12:00: late against the pothole
    # SLA of 1 business day (due Tuesday 09:00), on time against 2 (due Wednesday 09:00).
    opened = datetime(2025, 2, 10, 9, tzinfo=BOSTON)
    stream.send([{"event_id": "pothole-1", "type": "case", "metric": "pothole-on-time", "case_id": "pothole-1",
                  "opened_at": opened.isoformat(), "closed_at": (opened + timedelta(days=1, hours=3)).isoformat()}])
    run_scorer_until_idle(stream, engine, TRAILING, SATURDAY)
    assert stored(engine, "pothole-on-time", "week") == (SATURDAY, 0.0, 0.0, 1.0)

    slower = catalog_file(tmp_path, "two-days.yaml", {
        "extends": "boston.yaml", "metric_overrides": {"pothole-on-time": {"sla": {"business_days": 2}}}})
    assert slower.metric("pothole-on-time").sla.business_days == 2

    # Read or rescored with the new SLA, the folded case is still late: it was judged when folded.
    week = score_parts(engine, slower).reader.scoreboard(SATURDAY).metrics["pothole-on-time"]["week"]
    assert (week.numerator, week.denominator) == (0.0, 1.0)
    run_scorer_until_idle(stream, engine, slower, SATURDAY)
    assert stored(engine, "pothole-on-time", "week") == (SATURDAY, 0.0, 0.0, 1.0)

    # A rebuild folds it again under the new SLA and publishes the change.
    store = score_parts(engine, slower)
    report = replay(stream.settings(), store.writer, store.scores, slower, clock=clock_for(SATURDAY))
    assert report.changes > 0
    assert stored(engine, "pothole-on-time", "week") == (SATURDAY, pytest.approx(1 / 0.8), 1.0, 1.0)
    change = latest_change(published_changes(stream), "pothole-on-time", "week")
    assert (change["numerator"], change["denominator"], change["previous_score"]) == (1.0, 1.0, 0.0)
