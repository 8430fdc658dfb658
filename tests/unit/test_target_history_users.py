"""What reads a metric's target outside scoring takes a target history as well as a number:
the ingest's catalog for a department, the generator of realistic events, and the notifier
tests' seeded scores."""

from __future__ import annotations

import statistics
from datetime import date

import orjson

from services.ingest.handlers import catalog_for
from shared.core.catalog import load_catalog
from shared.dev.generator import generate
from shared.store.engine import make_engine, migrate
from shared.store.score_reader import ScoreReader
from tests.helpers.boards import board_differences
from tests.helpers.catalogs import variant
from tests.helpers.notifier import seed_scores

# EMS's response-time target tightened in 2020 (a median: the generator draws values near it).
CATALOG = variant(load_catalog(), targets={"ems-response-time": [
    {"from": date(2016, 1, 1), "target": 6.0}, {"from": date(2020, 1, 1), "target": 5.5}]})


def test_a_department_s_catalog_gives_the_newest_target():
    answer = orjson.loads(orjson.dumps(catalog_for(CATALOG, "ems")))
    ems = next(m for m in answer["metrics"] if m["id"] == "ems-response-time")
    assert ems["target"] == 5.5


def test_the_generator_draws_values_near_the_newest_target_of_a_target_history():
    # The older target far from the newest: values drawn near it, or near no target, miss the newest's band.
    catalog = variant(load_catalog(), targets={"ems-response-time": [
        {"from": date(2016, 1, 1), "target": 20.0}, {"from": date(2020, 1, 1), "target": 5.5}]})
    values = [e["value"] for e in generate(catalog, 3, 1, date(2026, 6, 30)) if e["metric"] == "ems-response-time"]
    assert len(values) > 50
    # The generator aims response times' median at 0.95 × the target, moved by a drift kept within
    # -0.25..+0.15 (shared/dev/generator.py): 0.8 to 1.2 times the target.
    assert 0.8 * 5.5 <= statistics.median(values) <= 1.2 * 5.5, statistics.median(values)


def test_seeded_scores_take_a_target_history_at_its_newest_target(tmp_path):
    """The notifier tests' seeded day totals aim at a target history's newest target: the same
    totals as Boston's catalog, whose targets (0.95, 6) are the histories' newest."""
    histories = variant(load_catalog(), targets={
        "311-call-center": [{"from": date(2016, 1, 1), "target": 0.8}, {"from": date(2020, 1, 1), "target": 0.95}],
        "ems-response-time": [{"from": date(2016, 1, 1), "target": 9.0}, {"from": date(2020, 1, 1), "target": 6.0}]})
    end = date(2026, 7, 23)
    boards = []
    for name, catalog in (("histories", histories), ("numbers", load_catalog())):
        engine = make_engine(f"sqlite:///{tmp_path}/{name}.db")
        migrate(engine)
        seed_scores(engine, catalog, end, days=40, years_of_history=0)
        boards.append(ScoreReader(engine, load_catalog()).scoreboard(end))  # read alike: only the totals differ
        engine.dispose()
    assert board_differences(boards[1], boards[0]) == []
    assert boards[0].metrics["311-call-center"]["week"].score is not None
