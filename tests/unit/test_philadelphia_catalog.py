"""Philadelphia, shipped (shared/catalogs/philadelphia.yaml): `catalog check` passes, its export
imports through its feed, and the events score as counted by hand."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

from click.testing import CliRunner

from services.cli.commands import main
from services.cli.offline import score_file
from shared.core.catalog import load_catalog

EXPORT = Path(__file__).resolve().parents[1] / "data" / "feeds" / "philadelphia_public_cases_fc.csv"


def test_catalog_check_passes_on_the_shipped_philadelphia_catalog():
    result = CliRunner().invoke(main, ["catalog", "check", "philadelphia.yaml"])
    assert result.exit_code == 0, result.output
    assert "Philadelphia (America/New_York): 5 metrics, 2 departments" in result.output
    assert "feeds: philly311 (Philadelphia 311 (public_cases_fc))" in result.output
    catalog = load_catalog("philadelphia.yaml")
    dumping = catalog.metric("illegal-dumping-on-time")
    # service_notice "5 Business Days" (SR-ST02, Streets Department), Pennsylvania's holidays.
    assert dumping.sla.business_days == 5 and dumping.department == "streets"
    assert (catalog.holidays.country, catalog.holidays.subdivision) == ("US", "PA")
    # The other types' SLAs are each row's own (expected_datetime, else service_notice): none is guessed.
    feed = catalog.feeds["philly311"]
    assert feed.sla_notice.column == ("service_notice",) and feed.sla == {}
    for metric_id in ("street-lights-on-time", "street-defects-on-time", "rubbish-collection-on-time"):
        metric = catalog.metric(metric_id)
        assert metric.due_from_case and metric.sla is None and metric.department == "streets"
    complaints = catalog.metric("maintenance-complaints-on-time")
    assert complaints.due_from_case and complaints.department == "licenses-inspections"
    assert {name for name, metric_id in feed.types.items()} == {
        "Illegal Dumping", "Street Light Outage", "Alley Light Outage", "Street Defect",
        "Rubbish/Recyclable Material Collection", "Maintenance Complaint"}


def test_an_export_goes_to_a_scoreboard_through_the_shipped_catalog(tmp_path):
    out = tmp_path / "cases.jsonl"
    result = CliRunner().invoke(main, ["import", "csv", str(EXPORT), "--feed", "philly311", "--catalog",
                                       "philadelphia.yaml", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "12 rows read" in result.stderr and "7 events written (5 closed, 2 open" in result.stderr
    # Every due time is the row's own: expected_datetime (4), else service_notice (3).
    assert "due_at from the export 7, computed from the catalog SLA 0" in result.stderr
    assert "skipped, information request: 1" in result.stderr
    assert "skipped, duplicate request: 1" in result.stderr
    assert "skipped, closed case without a closed date: 1" in result.stderr
    assert "skipped, case type not in the catalog: 1" in result.stderr  # Abandoned Vehicle
    # The pothole row states no due time, and its metric has no SLA to guess one with.
    assert "skipped, no due time (a metric without an SLA, and the row states none): 1" in result.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["metric"], e["case_id"], e.get("closed_at"), e["due_at"]) for e in events] == [
        # by its due day: on time
        ("illegal-dumping-on-time", "16473162", "2024-01-08T07:22:43-05:00", "2024-01-08T23:59:59-05:00"),
        # expected 15 March: closed the day it was reported
        ("street-lights-on-time", "16530002", "2024-03-10T03:30:00-04:00", "2024-03-15T23:59:59-04:00"),
        # a day after its due day: late
        ("illegal-dumping-on-time", "16530003", "2024-03-11T10:00:00-04:00", "2024-03-10T23:59:59-04:00"),
        # no expected_datetime; service_notice "10 Business Days" from Thu 4 Jan 10:00, Martin
        # Luther King Day (15 Jan) skipped: Fri 19 Jan 10:00
        ("street-lights-on-time", "16490004", "2024-01-10T13:30:00-05:00", "2024-01-19T10:00:00-05:00"),
        # Licenses and Inspections' open complaint, due by the end of its expected day
        ("maintenance-complaints-on-time", "16490005", None, "2024-02-02T23:59:59-05:00"),
        # "5 Business Days" from Friday evening: the clock starts Monday 8 Jan 08:30; 9, 10, 11,
        # 12, (15 a holiday) 16 Jan
        ("street-lights-on-time", "16490006", None, "2024-01-16T08:30:00-05:00"),
        # "3 Business Days" from Fri 12 Jan 12:00: (15 a holiday) 16, 17, 18 Jan 12:00
        ("rubbish-collection-on-time", "16490008", "2024-01-17T10:00:00-05:00", "2024-01-18T12:00:00-05:00"),
    ]
    catalog = load_catalog("philadelphia.yaml")
    by_hand = {  # as of, metric, window: (on time, closed)
        (date(2024, 1, 8), "illegal-dumping-on-time", "day"): (1, 1),
        (date(2024, 1, 10), "illegal-dumping-on-time", "week"): (1, 1),
        (date(2024, 1, 10), "street-lights-on-time", "week"): (1, 1),  # 4-10 Jan: the alley light
        (date(2024, 1, 17), "rubbish-collection-on-time", "day"): (1, 1),
        (date(2024, 3, 11), "illegal-dumping-on-time", "day"): (0, 1),
        (date(2024, 3, 11), "illegal-dumping-on-time", "month"): (0, 1),  # 11 Feb to 11 Mar: the March case only
        (date(2024, 3, 11), "illegal-dumping-on-time", "quarter"): (1, 2),  # 13 Dec to 11 Mar: both
        (date(2024, 3, 11), "street-lights-on-time", "quarter"): (2, 2),  # the alley light and 10 March's
    }
    for (as_of, metric_id, window), counted in by_hand.items():
        board, report, _ = score_file(io.BytesIO(out.read_bytes()), catalog, as_of, percentile=False)
        assert report.folded == 7 and report.invalid == 0
        scored = board.metrics[metric_id][window]
        assert (scored.numerator, scored.denominator) == counted, (as_of, metric_id, window)
    quarter = score_file(io.BytesIO(out.read_bytes()), catalog, date(2024, 3, 11), percentile=False)[0]
    assert round(quarter.metrics["illegal-dumping-on-time"]["quarter"].score, 3) == round(0.5 / 0.8, 3)
