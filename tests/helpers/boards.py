"""Comparing scoreboards: the one comparator of the tests and benchmarks (pure, no I/O).

A board is either a `shared.core.scoring.Scoreboard` or its JSON shape (docs/contract.md,
"Scores": what the read API and `cityscore score` print); both compare the same way.
"""

from __future__ import annotations

import math

from shared.core.scoring import Scoreboard

FIELDS = ("score", "numerator", "denominator")
# Compared exactly, where the expected board says them: whether a null is no data or
# insufficient data, the dates a window covers and the target it was scored with.
SAID_FIELDS = ("state", "start", "end", "target")


def same(a: float | None, b: float | None, abs_tol: float = 1e-9) -> bool:
    """Equal figures: both null, or equal to nine significant digits (sums fold in another order in SQL)."""
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=abs_tol)


def as_json_shape(board: Scoreboard | dict) -> dict:
    """The board in the contract's JSON shape, without the metrics' names (they are not figures)."""
    if isinstance(board, dict):
        return board
    return {"as_of": board.as_of.isoformat(), "cityscore": dict(board.cityscore),
            "metrics": {metric: {window: score.as_dict() for window, score in windows.items()}
                        for metric, windows in board.metrics.items()}}


def board_differences(expected: Scoreboard | dict, actual: Scoreboard | dict, abs_tol: float = 1e-9) -> list[str]:
    """Every figure of `expected` that `actual` does not match, one line each (empty when equal).

    Each line starts with what differs (`as_of`, `cityscore` or the metric id), then the window
    and the field, then expected != actual.
    """
    expected, actual = as_json_shape(expected), as_json_shape(actual)
    found = []
    if expected["as_of"] != actual["as_of"]:
        found.append(f"as_of {expected['as_of']} != {actual['as_of']}")
    for window, value in expected["cityscore"].items():
        if window not in actual["cityscore"]:
            found.append(f"cityscore {window}: {value} != (no such window)")
        elif not same(value, actual["cityscore"][window], abs_tol):
            found.append(f"cityscore {window}: {value} != {actual['cityscore'][window]}")
    for metric, windows in expected["metrics"].items():
        # The board's windows are the CityScore's; beside them a metric has its name, target...
        for window in expected["cityscore"]:
            result, got = windows[window], actual["metrics"][metric][window]
            for field in FIELDS:
                if not same(result[field], got[field], abs_tol):
                    found.append(f"{metric} {window} {field}: {result[field]} != {got[field]}")
            for field in SAID_FIELDS:
                if field in result and result[field] != got.get(field):
                    found.append(f"{metric} {window} {field}: {result[field]} != {got.get(field)}")
    return found
