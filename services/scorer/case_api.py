"""The cases behind a score, and who waits longer, from the read API (docs/contract.md, "Cases").

`GET /v1/metrics/ID/cases[.csv]?status=S[&window=W][&as_of=D][&limit=N][&offset=K]`: a case-fed
metric's late, on-time, open or overdue cases, newest first, a page at a time;
`GET /v1/metrics/ID/breakdown[.csv]?by=A[&window=W][&as_of=D]`: its on-time share in a window by a
case attribute, worst first. The documents are `cityscore cases` and `cityscore breakdown`'s own
(shared/core/cases.py builds both), read from the cases the scorer keeps (ScoreReader).
"""

from __future__ import annotations

import csv
import io
from datetime import date
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, request

from shared.core.cases import (BREAKDOWN_COLUMNS, LATE, ON_TIME, STATUSES, breakdown_document, breakdown_refusal,
                               case_cells, case_columns, case_list_document)
from shared.core.catalog import Feed, Metric
from shared.platform.clock import current_as_of
from shared.platform.web import json_response

case_api = Blueprint("case_api", __name__)

# A page of cases: 100 unless asked, at most 1000 (a week of a busy metric's closed cases is a few
# thousand; a client pages through them with `next`).
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Beyond any list (a database's OFFSET takes a 64-bit integer at most; SQLite's too): refused, not a 500.
MAX_OFFSET = 2**31 - 1


def _parts() -> dict:
    return current_app.extensions["cityscore"]


def _refused(status: int, error: str, field: str, reason: str) -> Response:
    return json_response(status, {"error": error, "errors": [{"field": field, "reason": reason}]})


def _case_metric(metric_id: str, lists: bool) -> tuple[Metric | None, Response | None]:
    """The case-fed metric the path names, or the refusal: 404 for an unknown metric or one not fed
    cases (it has none to show), 403 for a case list the catalog keeps off the public (`lists`)."""
    catalog = _parts()["catalog"]
    metric = catalog.by_id.get(metric_id)
    if metric is None:
        return None, _refused(404, f"no metric {metric_id!r} in the {catalog.city} catalog", "metric",
                              f"{metric_id!r} is not a metric of the catalog")
    if metric.feed is not Feed.CASES:
        return None, _refused(404, f"{metric_id} has no cases", "metric",
                              f"{metric_id!r} is fed {metric.feed.value}, not cases")
    if lists and not metric.public_case_lists:
        return None, _refused(403, f"{metric_id}'s case lists are not public", "public_case_lists",
                              f"the catalog sets public_case_lists: false for {metric_id}: its case lists reach "
                              "only its department, in Slack; its counts (open, projected, breakdown) stay public")
    return metric, None


def _window() -> tuple[str, Response | None]:
    catalog = _parts()["catalog"]
    window = request.args.get("window", "week")
    if window not in catalog.windows:
        return window, _refused(400, "unknown window", "window",
                                f"{window!r}: must be one of {', '.join(catalog.windows)}")
    return window, None


def _as_of() -> tuple[date, Response | None]:
    """`as_of` with the board's rules and refusals; the current as-of day when not given."""
    parts = _parts()
    as_of, refusal = parts["parse_as_of"]()
    return as_of or current_as_of(parts["clock"], parts["catalog"]), refusal


def _whole(field: str, default: int, low: int, high: int | None) -> tuple[int, Response | None]:
    raw = request.args.get(field)
    if raw is None:
        return default, None
    try:
        value = int(raw) if raw.strip().isdigit() else -1
    except ValueError:
        value = -1
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"of {low} or more"
        return default, _refused(400, f"invalid {field}", field, f"{raw!r}: must be a whole number {bound}")
    return value, None


def _csv(columns, rows, metric_id: str, name: str, headers: dict[str, str] | None = None) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return Response(out.getvalue(), headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{metric_id}-{name}.csv"',
        "Cache-Control": "public, max-age=30",
        **(headers or {}),
    })


def _cases(metric_id: str, as_csv: bool) -> Response:
    metric, refusal = _case_metric(metric_id, lists=True)
    if refusal is not None:
        return refusal
    status = request.args.get("status")
    if status not in STATUSES:
        reason = (f"required: one of {', '.join(STATUSES)}" if status is None
                  else f"{status!r}: must be one of {', '.join(STATUSES)}")
        return _refused(400, "invalid status", "status", reason)
    window, refusal = _window()
    if refusal is not None:
        return refusal
    limit, refusal = _whole("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    if refusal is not None:
        return refusal
    offset, refusal = _whole("offset", 0, 0, MAX_OFFSET)
    if refusal is not None:
        return refusal
    as_of, refusal = _as_of()
    if refusal is not None:
        return refusal
    parts = _parts()
    catalog = parts["catalog"]
    total, page = parts["store"].case_page(metric_id, as_of, status, window, limit, offset, parts["read_timeout_s"])
    # The next page pins the as-of day: a list paged across midnight stays one list.
    asked = {"status": status, "as_of": as_of.isoformat()}
    if status in (LATE, ON_TIME) or "window" in request.args:
        asked["window"] = window
    following = (f"{request.path}?{urlencode({**asked, 'limit': limit, 'offset': offset + limit})}"
                 if offset + limit < total else None)
    shown = case_list_document(catalog, metric_id, as_of, status, window, page)
    if as_csv:
        headers = {"X-Total-Count": str(total)}
        if following is not None:
            headers["Link"] = f'<{following}>; rel="next"'
        name = f"{status}-{as_of}" + (f"-{window}" if status in (LATE, ON_TIME) else "")
        return _csv(case_columns(metric), case_cells(metric, shown["cases"]), metric_id, name, headers)
    cases = shown.pop("cases")
    shown.update(total=total, limit=limit, offset=offset, next=following, cases=cases)
    return json_response(200, shown, {"Cache-Control": "public, max-age=30"})


@case_api.get("/v1/metrics/<metric_id>/cases")
def cases(metric_id: str) -> Response:
    """`cityscore cases --format json`'s document for one page, with total, limit, offset and next."""
    return _cases(metric_id, as_csv=False)


@case_api.get("/v1/metrics/<metric_id>/cases.csv")
def cases_csv(metric_id: str) -> Response:
    """The same page as CSV (`cityscore cases --format csv`'s columns); the total in X-Total-Count and
    the next page in a Link header."""
    return _cases(metric_id, as_csv=True)


def _breakdown(metric_id: str, as_csv: bool) -> Response:
    metric, refusal = _case_metric(metric_id, lists=False)
    if refusal is not None:
        return refusal
    by = request.args.get("by")
    reason = breakdown_refusal(metric, by)
    if reason is not None:
        return _refused(400, "invalid by", "by", reason)
    window, refusal = _window()
    if refusal is not None:
        return refusal
    as_of, refusal = _as_of()
    if refusal is not None:
        return refusal
    parts = _parts()
    groups = parts["store"].breakdown(metric_id, by, as_of, window, parts["read_timeout_s"])
    shown = breakdown_document(parts["catalog"], metric_id, by, as_of, window, groups)
    if as_csv:
        return _csv(BREAKDOWN_COLUMNS, [[row[column] for column in BREAKDOWN_COLUMNS] for row in shown["groups"]],
                    metric_id, f"by-{by}-{as_of}-{window}")
    return json_response(200, shown, {"Cache-Control": "public, max-age=30"})


@case_api.get("/v1/metrics/<metric_id>/breakdown")
def breakdown(metric_id: str) -> Response:
    """`cityscore breakdown --format json`'s document."""
    return _breakdown(metric_id, as_csv=False)


@case_api.get("/v1/metrics/<metric_id>/breakdown.csv")
def breakdown_csv(metric_id: str) -> Response:
    """The same as CSV (`cityscore breakdown --format csv`'s columns)."""
    return _breakdown(metric_id, as_csv=True)
