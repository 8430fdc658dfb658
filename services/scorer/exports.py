"""Open data: the scores as CSV in Boston's "Full Metric List" columns (shared/core/open_data.py).

`GET /v1/scoreboard.csv[?as_of=D]` is the board of /v1/scoreboard, one row per metric;
`GET /v1/scores.csv?from=D1&to=D2` is one row per metric per as-of date, the history a
city loads into its open-data portal as Boston does.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from flask import Blueprint, Response, current_app, request

from shared.core.catalog import Catalog
from shared.core.open_data import CONTENT_TYPE, full_metric_list
from shared.platform.clock import current_as_of
from shared.platform.web import json_response

from .app import MAX_HISTORY_DAYS

exports = Blueprint("exports", __name__)


def _parts() -> dict:
    return current_app.extensions["cityscore"]


def _csv(text: str, catalog: Catalog, name: str) -> Response:
    city = re.sub(r"[^a-z0-9]+", "-", catalog.city.lower()).strip("-") or "city"
    return Response(text, headers={
        "Content-Type": CONTENT_TYPE,
        "Content-Disposition": f'attachment; filename="{city}-cityscore-{name}.csv"',
        "Cache-Control": "public, max-age=30",
    })


@exports.get("/v1/scoreboard.csv")
def scoreboard_csv() -> Response:
    """The board of /v1/scoreboard (same as_of rules), calculated when the scorer published it."""
    parts = _parts()
    as_of, refusal = parts["parse_as_of"]()
    if refusal is not None:
        return refusal
    board, updated = parts["board_for"](as_of)
    # A board computed on request was calculated now; the published one when the scorer wrote it.
    calculated = datetime.fromisoformat(updated) if updated is not None else parts["clock"].now()
    text = full_metric_list([board], parts["catalog"], calculated, latest=_latest(parts))
    return _csv(text, parts["catalog"], board.as_of.isoformat())


def _latest(parts: dict) -> date:
    """The as-of date of the latest scores (the current board's): only its rows are flagged latest,
    so a past board, or a portal that loads several exports, has no second latest run."""
    return current_as_of(parts["clock"], parts["catalog"])


def _date_range() -> tuple[tuple[date, date] | None, list[dict[str, str]]]:
    """`from` and `to` as dates, or every problem with them, each naming its field."""
    problems: list[dict[str, str]] = []
    given: dict[str, date] = {}
    for field in ("from", "to"):
        raw = request.args.get(field)
        if raw is None:
            problems.append({"field": field, "reason": "required: a date written YYYY-MM-DD"})
            continue
        try:
            given[field] = date.fromisoformat(raw)
        except ValueError:
            problems.append({"field": field, "reason": f"{raw!r} is not YYYY-MM-DD"})
    if problems:
        return None, problems
    start, end = given["from"], given["to"]
    # The same range as /v1/scoreboard's as_of: nothing before the first day with data, nothing after today.
    first, current, last = _parts()["as_of_range"]()
    earliest = current if first is None else min(first, current)
    for field, day in (("from", start), ("to", end)):
        if not earliest <= day <= last:
            where = (f"there is no data yet: must be {current} (the last complete day) or {last} (today)"
                     if first is None else f"must be from {earliest} (the first day with data) to {last} (today)")
            problems.append({"field": field, "reason": where})
    if problems:
        return None, problems
    if end < start:
        return None, [{"field": "to", "reason": f"must be on or after from ({start})"}]
    if (end - start).days + 1 > MAX_HISTORY_DAYS:
        return None, [{"field": "from", "reason": f"the range may hold at most {MAX_HISTORY_DAYS} as-of dates: "
                                                  f"from {start} to {end} is {(end - start).days + 1}"}]
    return (start, end), []


@exports.get("/v1/scores.csv")
def scores_csv() -> Response:
    """One row per metric per as-of date from `from` to `to` inclusive; the current as-of date's rows
    (if in the range) are flagged latest."""
    parts = _parts()
    dates, problems = _date_range()
    if dates is None:
        return json_response(400, {"error": "from and to must be as-of dates written YYYY-MM-DD, in order",
                                   "errors": problems})
    start, end = dates
    calculated = parts["clock"].now()  # every board of a range is computed on request
    boards = parts["store"].scoreboards(start, end, parts["read_timeout_s"])
    text = full_metric_list(boards, parts["catalog"], calculated, latest=_latest(parts))
    return _csv(text, parts["catalog"], f"{start}-to-{end}")
