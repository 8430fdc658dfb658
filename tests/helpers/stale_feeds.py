"""A small catalog whose feeds go quiet, and its events: for the stale-feed tests (docs/scoring.md §4c)."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta

from services.cli.offline import score_file
from shared.core.catalog import parse_catalog

AS_OF = date(2026, 2, 10)


def catalog_data(**calls) -> dict:
    return {
        "city": "Testville", "timezone": "America/New_York",
        "departments": [{"id": "ops", "name": "Operations"}],
        "metrics": [
            {"id": "calls", "name": "CALLS ANSWERED", "kind": "ratio", "target": 0.9, "department": "ops",
             "feed": "tallies", "expect_data": "daily", **calls},
            {"id": "inspections", "name": "INSPECTIONS ON TIME", "kind": "ratio", "target": 0.8,
             "department": "ops", "feed": "tallies", "expect_data": 48},
            # Incidents: a day without one is a good day, so no expect_data.
            {"id": "shootings", "name": "SHOOTINGS", "kind": "trend_lower_better", "department": "ops",
             "feed": "incidents"},
            {"id": "never", "name": "NEVER SENT", "kind": "ratio", "target": 0.8, "department": "ops",
             "feed": "tallies", "expect_data": "daily"},
        ],
    }


CATALOG = parse_catalog(catalog_data())


def events() -> list[dict]:
    """Calls every day to 3 February then nothing (stale by the 10th); inspections every third day
    (fresh on the 10th: the last on the 9th); shootings now and then; `never`, nothing at all."""
    made = []
    day = date(2026, 1, 1)
    while day <= AS_OF:
        n = (day - date(2026, 1, 1)).days
        if day <= date(2026, 2, 3):
            made.append({"event_id": f"calls-{day}", "type": "tally", "metric": "calls", "date": day.isoformat(),
                         "numerator": 90 + n % 7, "denominator": 100})
        if n % 3 == 0:
            made.append({"event_id": f"insp-{day}", "type": "tally", "metric": "inspections",
                         "date": day.isoformat(), "numerator": 8, "denominator": 10})
        if n % 5 == 0:
            made.append({"event_id": f"shot-{day}", "type": "incident", "metric": "shootings",
                         "occurred_at": f"{day.isoformat()}T15:00:00-05:00"})
        day += timedelta(days=1)
    return made


def offline_board(as_of: date) -> dict:
    lines = io.BytesIO(b"\n".join(json.dumps(e).encode() for e in events()))
    return score_file(lines, CATALOG, as_of, percentile=False)[0].as_dict(CATALOG)
