"""What reads a metric's target outside scoring takes a target history as well as a number:
the ingest's catalog for a department, and the generator of realistic events."""

from __future__ import annotations

from datetime import date

import orjson

from services.ingest.handlers import catalog_for
from shared.core.catalog import load_catalog
from shared.dev.generator import generate
from tests.helpers.catalogs import variant

# EMS's response-time target tightened in 2020 (a median: the generator draws values near it).
CATALOG = variant(load_catalog(), targets={"ems-response-time": [
    {"from": date(2016, 1, 1), "target": 6.0}, {"from": date(2020, 1, 1), "target": 5.5}]})


def test_a_department_s_catalog_gives_the_newest_target():
    answer = orjson.loads(orjson.dumps(catalog_for(CATALOG, "ems")))
    ems = next(m for m in answer["metrics"] if m["id"] == "ems-response-time")
    assert ems["target"] == 5.5


def test_the_generator_draws_values_for_a_metric_with_a_target_history():
    values = [e["value"] for e in generate(CATALOG, 3, 1, date(2026, 6, 30)) if e["metric"] == "ems-response-time"]
    assert values
