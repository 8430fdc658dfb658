"""Reading the open-data CSV back and comparing it with the JSON board of the same date."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from shared.core.catalog import Catalog

# Boston's "Full Metric List" columns, written out here rather than imported: the test holds the contract.
BOSTON_COLUMNS = [
    "metric_name", "score_calculated_ts", "target", "metric_logic",
    "day_score", "day_numerator", "day_denominator",
    "week_score", "week_numerator", "week_denominator",
    "month_score", "month_numerator", "month_denominator",
    "quarter_score", "quarter_numerator", "quarter_denominator",
    "latest_score_flag",
]
BOSTON_LOGIC = {
    "ratio": "sum(numerator_value)/sum(denominator_value)/target",
    "mean_daily_ratio": "average(sum(numerator_value)/sum(denominator_value))/target",
    "target_over_median": "target / median",
    "trend_lower_better": "historical_average / current_average",
    "trend_higher_better": "current_average / historical_average",
}


def read_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows (as dicts) of a CSV text."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    return header, [dict(zip(header, row, strict=True)) for row in reader]


def cell_value(cell: str) -> float | None:
    return None if cell == "" else float(cell)


def assert_rows_equal_board(rows: list[dict[str, str]], board: dict, catalog: Catalog) -> None:
    """The rows of one as-of date say what the JSON board says, value for value (null: an empty cell)."""
    assert [row["metric_name"] for row in rows] == [board["metrics"][m.id]["name"] for m in catalog.metrics]
    compared = 0
    for metric, row in zip(catalog.metrics, rows):
        shown = board["metrics"][metric.id]
        where = (board["as_of"], metric.id)
        assert row["metric_logic"] == BOSTON_LOGIC[metric.kind.value], where
        assert cell_value(row["target"]) == shown["target"], where
        assert datetime.fromisoformat(row["score_calculated_ts"]).utcoffset() is not None, where
        for window in ("day", "week", "month", "quarter"):
            for part in ("score", "numerator", "denominator"):
                expected = shown[window][part] if window in shown else None
                assert cell_value(row[f"{window}_{part}"]) == expected, (where, window, part, row)
                compared += expected is not None
    assert compared, "every value was null: nothing was compared"
