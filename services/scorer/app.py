"""The scorer's read side: the scores API, the public scoreboard page, health and metrics."""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Callable

from flask import Flask, Response, request
from sqlalchemy import text
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException

from shared.core.cases import with_case_fields
from shared.core.catalog import Catalog, Feed
from shared.core.score_change import CITY
from shared.store.score_reader import ReadTimedOut, ScoreReader
from shared.core.scoring import Scoreboard, WindowScore, span_fields, window_target
from shared.core.windows import spans
from shared.platform.bootstrap import bootstrap
from shared.platform.clock import Clock, current_as_of, system_clock
from shared.platform.web import json_response

from .metrics import ScorerMetrics
from .settings import ScorerSettings

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
MAX_HISTORY_DAYS = 730
# How long a client is asked to wait before trying again a read that ran out of time.
READ_RETRY_AFTER_S = 5


def stored_board(store: ScoreReader, as_of: date) -> tuple[Scoreboard, str | None] | None:
    """The board the scorer last published for `as_of`, if it has published all of it."""
    with store.bounded_reads(None) as conn:  # (the request's one connection, inside one_connection)
        rows = store.current(conn)
        updated = store.last_updated(conn)
    windows = list(store.catalog.windows)
    days = spans(store.catalog.windows, as_of)
    metrics: dict[str, dict[str, WindowScore]] = {}
    for metric in store.catalog.metrics:
        scores = {}
        for window in windows:
            row = rows.get((metric.id, window))
            if row is None or row.as_of != as_of:
                return None
            # Scored over other days or against another target than this catalog says (its windows
            # or targets changed, and the scorer has not rescored since): not this board.
            if (row.window_start, row.window_end) != days[window] or row.target != window_target(metric, days[window]):
                return None
            scores[window] = WindowScore(row.score, row.numerator, row.denominator)
        metrics[metric.id] = scores
    city = {window: rows[(CITY, window)].score if (CITY, window) in rows else None for window in windows}
    return Scoreboard(as_of, city, metrics), updated.isoformat() if updated else None


def create_app(
    settings: ScorerSettings | None = None,
    *,
    engine: Engine | None = None,
    catalog: Catalog | None = None,
    clock: Clock = system_clock,
    consumer_metrics: ScorerMetrics | None = None,
    liveness: Callable[[], bool] | None = None,
) -> Flask:
    """The read API and pages; `liveness` (the consumer's, when both share a process) feeds /healthz."""
    settings, catalog, engine = bootstrap(ScorerSettings, settings=settings, catalog=catalog, engine=engine,
                                          reader=True)
    store = ScoreReader(engine, catalog)
    metrics = consumer_metrics or ScorerMetrics()
    from prometheus_client import Histogram

    latency = Histogram("cityscore_scorer_api_seconds", "Read API request duration", ["route"],
                        registry=metrics.registry, buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))

    app = Flask(__name__)
    app.extensions["cityscore"] = {"settings": settings, "store": store, "catalog": catalog, "clock": clock,
                                   "metrics": metrics}

    @app.before_request
    def _start() -> None:
        request.environ["cityscore.started"] = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        route = request.url_rule.rule if request.url_rule else "unmatched"
        latency.labels(route=route).observe(time.perf_counter() - request.environ.get("cityscore.started", 0))
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        if request.path.startswith("/v1/"):
            return json_response(exc.code or 500, {"error": exc.description})
        return exc

    @app.errorhandler(ReadTimedOut)
    def _read_timed_out(exc: ReadTimedOut) -> Response:
        return json_response(503, {"error": f"{exc}, the limit set by SCORER_READ_TIMEOUT: ask for fewer days, "
                                            "or try again later"}, {"Retry-After": str(READ_RETRY_AFTER_S)})

    read_timeout_s = settings.scorer_read_timeout_s
    # The windows whose projected score the board shows beside each case-fed metric's backlog: the
    # ones the notifier alerts on (NOTIFIER_ALERT_WINDOWS), as `cityscore score --alert-window`.
    # Unset, it is the week, where the catalog has one; set, each window must be the catalog's.
    projected_windows = settings.projected_windows
    if "alert_windows" not in settings.model_fields_set:
        projected_windows = tuple(window for window in projected_windows if window in catalog.windows)
    for window in projected_windows:
        if window not in catalog.windows:
            raise ValueError(f"NOTIFIER_ALERT_WINDOWS: {window!r} is not one of the catalog's windows "
                             f"({', '.join(catalog.windows)})")
    fed_cases = any(metric.feed is Feed.CASES for metric in catalog.metrics)
    # The earliest as_of any date arithmetic can serve: a history's first window starts
    # MAX_HISTORY_DAYS plus the longest window (and a day) before its as_of.
    floor = date.min + timedelta(days=MAX_HISTORY_DAYS + max(w.reach_days for w in catalog.windows.values()) + 2)

    def as_of_range() -> tuple[date | None, date, date]:
        """The first day with data (None: no data yet), the current as-of day, and the last as_of
        answered (today: the current as-of day + 1). Checked before any score is computed: an
        as_of centuries away would score centuries of trend baselines, minutes of CPU."""
        with store.bounded_reads(read_timeout_s) as conn:
            first_days = store.first_days(conn)
        current = current_as_of(clock, catalog)
        first = max(min(first_days.values()), floor) if first_days else None
        return first, current, current + timedelta(days=1)

    def parse_as_of() -> tuple[date | None, Response | None]:
        raw = request.args.get("as_of")
        if raw is None:
            return None, None
        try:
            asked = date.fromisoformat(raw)
        except ValueError:
            return None, json_response(400, {"error": "as_of must be a date written YYYY-MM-DD",
                                             "errors": [{"field": "as_of", "reason": f"{raw!r} is not YYYY-MM-DD"}]})
        first, current, last = as_of_range()
        earliest = current if first is None else min(first, current)
        if earliest <= asked <= last:
            return asked, None
        if first is None:
            reason = f"there is no data yet: must be {current} (the last complete day) or {last} (today)"
        else:
            reason = f"must be from {earliest} (the first day with data) to {last} (today)"
        return None, json_response(400, {"error": "as_of is outside the data's range",
                                         "errors": [{"field": "as_of", "reason": reason}]})

    # Whether any metric says how often its data should arrive: only then is the last day with
    # data read (docs/scoring.md §4c).
    checks_feeds = any(metric.expect_data is not None for metric in catalog.metrics)

    def with_feeds(board: Scoreboard) -> Scoreboard:
        if not checks_feeds:
            return board
        return board._replace(last_data=store.last_data(board.as_of, read_timeout_s))

    def board_for(as_of: date | None) -> tuple[Scoreboard, str | None]:
        current = current_as_of(clock, catalog)
        if as_of is None or as_of == current:
            found = stored_board(store, current)
            if found is not None:
                board, updated = found
                return with_feeds(store.with_states(board, read_timeout_s)), updated
            as_of = current
        return with_feeds(store.scoreboard(as_of, read_timeout_s)), None

    app.extensions["cityscore"]["board_for"] = board_for
    app.extensions["cityscore"]["as_of_range"] = as_of_range
    app.extensions["cityscore"]["read_timeout_s"] = read_timeout_s
    app.extensions["cityscore"]["parse_as_of"] = parse_as_of
    app.extensions["cityscore"]["projected_windows"] = projected_windows  # the pages project them too

    # -- the API ------------------------------------------------------------------------

    @app.get("/v1/scoreboard")
    def scoreboard() -> Response:
        # Every read of the request (the data's range, the board, its nulls' states, the stale-feed
        # days, the backlog) on one connection.
        with store.one_connection(read_timeout_s):
            return _scoreboard()

    def _scoreboard() -> Response:
        as_of, refusal = parse_as_of()
        if refusal is not None:
            return refusal
        ranked = request.args.get("percentile", "0")
        if ranked not in ("0", "1"):
            return json_response(400, {"error": "invalid percentile", "errors": [
                {"field": "percentile", "reason": f"{ranked!r}: must be 1 (each metric's percentile) or 0"}]})
        board, updated = board_for(as_of)
        if ranked == "1":
            # Asked for only: it reads a year of day totals (docs/scoring.md §4b).
            board = board._replace(percentiles=store.percentiles(board.as_of, timeout_s=read_timeout_s))
        body = board.as_dict(catalog)
        if fed_cases:
            # Counted by the database on each request, for the board's as-of day: one grouped
            # query over the cases open at its end (ScoreReader.backlogs).
            with_case_fields(body, store.case_fields(board, projected_windows, read_timeout_s))
        body["updated_at"] = updated
        return json_response(200, body, {"Cache-Control": "public, max-age=30"})

    @app.get("/v1/metrics/<metric_id>/history")
    def history(metric_id: str) -> Response:
        if metric_id not in catalog.by_id:
            return json_response(404, {"error": f"no metric {metric_id!r} in the {catalog.city} catalog"})
        window = request.args.get("window", "week")
        if window not in catalog.windows:
            return json_response(400, {"error": "unknown window", "errors": [
                {"field": "window", "reason": f"must be one of {', '.join(catalog.windows)}"}]})
        try:
            days = int(request.args.get("days", "90"))
        except ValueError:
            days = -1
        if not 1 <= days <= MAX_HISTORY_DAYS:
            return json_response(400, {"error": "invalid days", "errors": [
                {"field": "days", "reason": f"must be a whole number from 1 to {MAX_HISTORY_DAYS}"}]})
        as_of, refusal = parse_as_of()
        if refusal is not None:
            return refusal
        end = as_of or current_as_of(clock, catalog)
        series = store.history(metric_id, window, days, end, read_timeout_s)
        metric = catalog.by_id[metric_id]

        def entry(as_of: date, score: WindowScore) -> dict:
            # A calendar window is the score of several as-of dates in a row: each says its days,
            # and the target in force on its last day (the one it was scored with), as the board.
            span = catalog.windows[window].span(as_of)
            return {"as_of": as_of.isoformat(), **score.as_dict(), **span_fields(span),
                    "target": window_target(metric, span)}

        return json_response(200, {
            "metric": metric_id, "name": metric.name, "window": window, "kind": metric.kind.value,
            "target": metric.target_on(end),
            "history": [entry(d, s) for d, s in series],
        })

    # -- operations -----------------------------------------------------------------------

    @app.get("/healthz")
    def healthz() -> Response:
        if liveness is not None and not liveness():
            return json_response(503, {"status": "the consumer loop has stalled"})
        return json_response(200, {"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return json_response(200, {"status": "ready", "checks": {"database": True}})
        except Exception:  # noqa: BLE001
            return json_response(503, {"status": "not ready", "checks": {"database": False}})

    @app.get("/metrics")
    def prometheus() -> Response:
        payload, content_type = metrics.exposition()
        return Response(payload, mimetype=content_type)

    from .departments import department_api
    from .pages import pages  # with the department and cabinet pages, which departments.py adds to it

    app.register_blueprint(pages)
    app.register_blueprint(department_api)
    from .exports import exports

    app.register_blueprint(exports)
    from .case_api import case_api

    app.register_blueprint(case_api)
    return app
