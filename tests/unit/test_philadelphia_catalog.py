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
    assert "Philadelphia (America/New_York): 1 metrics, 1 departments" in result.output
    assert "feeds: philly311 (Philadelphia 311 (public_cases_fc))" in result.output
    catalog = load_catalog("philadelphia.yaml")
    dumping = catalog.metric("illegal-dumping-on-time")
    # service_notice "5 Business Days" (SR-ST02, Streets Department), Pennsylvania's holidays.
    assert dumping.sla.business_days == 5 and dumping.department == "streets"
    assert (catalog.holidays.country, catalog.holidays.subdivision) == ("US", "PA")


def test_an_export_goes_to_a_scoreboard_through_the_shipped_catalog(tmp_path):
    out = tmp_path / "cases.jsonl"
    result = CliRunner().invoke(main, ["import", "csv", str(EXPORT), "--feed", "philly311", "--catalog",
                                       "philadelphia.yaml", "--out", str(out)])
    assert result.exit_code == 0, result.output
    # Two Illegal Dumping requests; the other types are not in this catalog yet.
    assert "10 rows read" in result.stderr and "2 events written (2 closed, 0 open" in result.stderr
    assert "skipped, information request: 1" in result.stderr
    assert "skipped, duplicate request: 1" in result.stderr
    assert "skipped, case type not in the catalog: 6" in result.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(e["case_id"], e["closed_at"], e["due_at"]) for e in events] == [
        ("16473162", "2024-01-08T07:22:43-05:00", "2024-01-08T23:59:59-05:00"),  # by its due day: on time
        ("16530003", "2024-03-11T10:00:00-04:00", "2024-03-10T23:59:59-04:00"),  # a day after it: late
    ]
    catalog = load_catalog("philadelphia.yaml")
    by_hand = {  # as of, window: (on time, closed)
        (date(2024, 1, 8), "day"): (1, 1),
        (date(2024, 1, 10), "week"): (1, 1),
        (date(2024, 3, 11), "day"): (0, 1),
        (date(2024, 3, 11), "month"): (0, 1),  # 11 Feb to 11 Mar: the March case only
        (date(2024, 3, 11), "quarter"): (1, 2),  # 13 Dec to 11 Mar: both
    }
    for (as_of, window), counted in by_hand.items():
        board, report, _ = score_file(io.BytesIO(out.read_bytes()), catalog, as_of, percentile=False)
        assert report.folded == 2 and report.invalid == 0
        scored = board.metrics["illegal-dumping-on-time"][window]
        assert (scored.numerator, scored.denominator) == counted, (as_of, window)
    quarter = score_file(io.BytesIO(out.read_bytes()), catalog, date(2024, 3, 11), percentile=False)[0]
    assert round(quarter.metrics["illegal-dumping-on-time"]["quarter"].score, 3) == round(0.5 / 0.8, 3)
