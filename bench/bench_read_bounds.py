"""Benchmark the read API's refusals of requests outside its bounds (issue 13, item 5; goal: < 50 ms).

An `as_of` outside the data's range (as_of=5000-01-01 on a trend metric's 730-day history
used to cost minutes of CPU; as_of=0001-01-05 answered 500) and a `days` out of range
are answered 400 before anything is scored. This times those answers from the real
scorer read API served by gunicorn (services.scorer.wsgi:app, deploy/gunicorn.conf.py)
over PostgreSQL holding generated days of Boston's metrics with their trend history:
median and p99 over many sequential requests on one keep-alive connection. For scale,
it also times the most a valid history request can ask (730 days of a trend metric).

Needs BENCH_DATABASE_URL (default: DATABASE_URL), a PostgreSQL database whose CityScore
tables are dropped and made anew.

    python bench/bench_read_bounds.py [--days 60] [--requests 500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.scorer.app import MAX_HISTORY_DAYS  # noqa: E402
from shared.platform.clock import current_as_of, system_clock  # noqa: E402
from shared.core.catalog import load_catalog  # noqa: E402
from shared.core.contract import parse_event  # noqa: E402
from shared.dev.generator import generate  # noqa: E402
from shared.store.published_scores import PublishedScores  # noqa: E402
from shared.store.score_reader import ScoreReader  # noqa: E402
from shared.store.score_writer import ScoreWriter  # noqa: E402
from tests.helpers.ingest import fresh_database  # noqa: E402
from tests.helpers.processes import free_port, percentile, start_gunicorn  # noqa: E402

GOAL_MS = 50


def load(database_url: str, days: int) -> tuple[int, object]:
    """Fold `days` generated days (and the trend metrics' past years) ending on the current as-of day."""
    catalog = load_catalog()
    end = current_as_of(system_clock, catalog)
    engine = fresh_database(database_url)
    writer, reader = ScoreWriter(engine, catalog), ScoreReader(engine, catalog)
    events = [parse_event(e) for e in generate(catalog, days, 13, end)]
    for start in range(0, len(events), 5000):
        with engine.begin() as conn:
            writer.fold(conn, events[start:start + 5000])
    with engine.begin() as conn:
        PublishedScores(reader).rescore(conn, end)
        first = min(reader.first_days(conn).values())
    engine.dispose()
    return len(events), (first, end)


def serve(database_url: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url, "CITYSCORE_LOG_LEVEL": "WARNING"}
    return start_gunicorn("services.scorer.wsgi:app", env, port)


def timed(session: requests.Session, url: str, count: int, status: int, field: str | None) -> list[float]:
    """Milliseconds of `count` requests, each checked for its status and the field it names."""
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        response = session.get(url, timeout=600)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == status, (url, response.status_code, response.text[:300])
        if field is not None and response.headers["Content-Type"].startswith("application/json"):
            assert [e["field"] for e in response.json()["errors"]] == [field], response.text
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=60, help="generated live days to fold")
    parser.add_argument("--requests", type=int, default=500, help="requests timed per case")
    args = parser.parse_args()
    database_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not database_url or not database_url.startswith("postgresql"):
        raise SystemExit("set BENCH_DATABASE_URL (or DATABASE_URL) to a PostgreSQL database the bench may wipe")

    started = time.perf_counter()
    events, (first, end) = load(database_url, args.days)
    print(f"folded {events} events ({args.days} live days and trend history from {first}) in "
          f"{time.perf_counter() - started:.0f}s; current as-of day {end}")
    port = free_port()
    server = serve(database_url, port)
    base = f"http://127.0.0.1:{port}"
    cases = [
        ("history days=730 as_of=5000-01-01 (trend)", "/v1/metrics/shootings/history?days=730&as_of=5000-01-01",
         400, "as_of"),
        ("scoreboard as_of=0001-01-05", "/v1/scoreboard?as_of=0001-01-05", 400, "as_of"),
        ("scoreboard as_of=first day - 1", f"/v1/scoreboard?as_of={first - timedelta(days=1)}", 400, "as_of"),
        ("scoreboard as_of=tomorrow", f"/v1/scoreboard?as_of={end + timedelta(days=2)}", 400, "as_of"),
        (f"history days={MAX_HISTORY_DAYS + 1}", f"/v1/metrics/shootings/history?days={MAX_HISTORY_DAYS + 1}",
         400, "days"),
        ("board page as_of=5000-01-01", "/?as_of=5000-01-01", 400, None),
    ]
    try:
        session = requests.Session()
        for _ in range(20):  # warm both workers' connections and caches
            session.get(base + cases[0][1])
        worst = 0.0
        for name, path, status, field in cases:
            ms = timed(session, base + path, args.requests, status, field)
            worst = max(worst, statistics.median(ms))
            print(f"{name:<45} {status}: median {statistics.median(ms):5.1f} ms, p99 {percentile(ms, 99):5.1f} ms, "
                  f"max {max(ms):6.1f} ms over {len(ms)} requests")
        print(f"slowest median of the refusals: {worst:.1f} ms (goal < {GOAL_MS} ms): "
              f"{'met' if worst < GOAL_MS else 'NOT met'}")
        # For scale: the most a valid request can ask, scored on request.
        ms = timed(session, f"{base}/v1/metrics/shootings/history?days={MAX_HISTORY_DAYS}&as_of={end}", 20, 200, None)
        print(f"for scale, a valid history days={MAX_HISTORY_DAYS} (trend, scored on request): "
              f"median {statistics.median(ms):.0f} ms, max {max(ms):.0f} ms over {len(ms)} requests")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
