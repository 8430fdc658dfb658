"""Open data in Boston's own columns: its "Full Metric List" CSV (docs/contract.md, "Open data").

Boston publishes its CityScore to its open-data portal as one row per metric and
score run, in the columns of `COLUMNS`. Writing ours in exactly those columns lets a
city load the export where it loads Boston's, and lets anyone compare the two.

- `metric_name` is the catalog's display name; `target` the target in force on the
  as-of date (empty for trend metrics, which have none); `metric_logic` the formula as
  Boston writes it for the metric's kind.
- Each of Boston's four windows has its score, numerator and denominator: the same
  numbers as the JSON (full precision, written without an exponent), `null` an empty
  cell. A catalog window of another name has no column (Boston's names are the
  contract); a Boston window the catalog lacks is left empty.
- `score_calculated_ts` is when the scores were computed, ISO 8601 in the city's time
  with its offset; `latest_score_flag` is 1 on the rows of the latest as-of date (the
  caller says which: the read API's current as-of date, the board of `cityscore score`)
  and 0 on any other, as Boston flags its latest run. Not the newest date in the file: a
  portal that loads several exports, as Boston's does, must find one latest run, and a
  history that ends in the past has none.

Pure: boards in, text out.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import date, datetime
from decimal import Decimal
from typing import Iterable

from shared.core.catalog import Catalog, Kind
from shared.core.scoring import Scoreboard

# Boston's window names, in the order of its columns.
WINDOWS = ("day", "week", "month", "quarter")
COLUMNS = (
    "metric_name", "score_calculated_ts", "target", "metric_logic",
    *(f"{window}_{part}" for window in WINDOWS for part in ("score", "numerator", "denominator")),
    "latest_score_flag",
)
# How Boston writes each kind's formula in its `metric_logic` column.
METRIC_LOGIC = {
    Kind.RATIO: "sum(numerator_value)/sum(denominator_value)/target",
    Kind.MEAN_DAILY_RATIO: "average(sum(numerator_value)/sum(denominator_value))/target",
    Kind.TARGET_OVER_MEDIAN: "target / median",
    Kind.TREND_LOWER_BETTER: "historical_average / current_average",
    Kind.TREND_HIGHER_BETTER: "current_average / historical_average",
}
CONTENT_TYPE = "text/csv; charset=utf-8"


def plain_number(value: float | None) -> str:
    """A number as the JSON has it, without an exponent: 4579.0 is '4579', 1e-05 is '0.00001'.

    The shortest text that reads back as the same float (Python's repr, as orjson writes
    JSON), so float(cell) equals the JSON's value. None, and what JSON writes as null
    (NaN, infinity), is an empty cell.
    """
    if value is None or not math.isfinite(value):
        return ""
    if float(value).is_integer():
        return str(int(value))
    return format(Decimal(repr(float(value))), "f")


def metric_rows(board: Scoreboard, catalog: Catalog, calculated_at: datetime, latest: bool) -> list[list[str]]:
    """One row per catalog metric of `board`, in catalog order, in the columns of COLUMNS."""
    if calculated_at.tzinfo is None:
        raise ValueError("calculated_at: a naive datetime has no offset to publish; give an aware one")
    calculated = calculated_at.astimezone(catalog.zone).isoformat()
    rows = []
    for metric in catalog.metrics:
        scores = board.metrics[metric.id]
        row = [metric.name, calculated, plain_number(metric.target_on(board.as_of)), METRIC_LOGIC[metric.kind]]
        for window in WINDOWS:
            score = scores.get(window)
            parts = (None, None, None) if score is None else (score.score, score.numerator, score.denominator)
            row += [plain_number(v) for v in parts]
        row.append("1" if latest else "0")
        rows.append(row)
    return rows


def full_metric_list(boards: Iterable[Scoreboard], catalog: Catalog, calculated_at: datetime, *,
                     latest: date) -> str:
    """The CSV text (header, then every board's rows in the order given) of Boston's Full Metric List.

    The rows of the as-of date `latest` (the latest scores there are) carry latest_score_flag 1,
    every other row 0.
    """
    out = io.StringIO()
    writer = csv.writer(out)  # quotes a name with a comma or a quote in it, as RFC 4180 says
    writer.writerow(COLUMNS)
    for board in boards:
        writer.writerows(metric_rows(board, catalog, calculated_at, board.as_of == latest))
    return out.getvalue()
