"""Benchmark the open-data history export: `GET /v1/scores.csv?from=&to=` over a year.

A city loads the export into its open-data portal: a year is 365 as-of dates of every
metric (8,395 rows for Boston). The day totals are read once for the range and each date
is scored from them in the read API's worker, so the time grows with the days asked,
not with the events. This serves the real scorer read API under gunicorn
(services.scorer.wsgi:app, deploy/gunicorn.conf.py) over a history already folded into
PostgreSQL (bench/bench_past_board.py folds one, about 1M events) and times `--requests`
exports of the `--days` as-of dates ending on the last day with data, sequentially:
median, min and max, and the workers' CPU a request. Each answer is checked (200, Boston's
header, one row per metric per date).

Needs BENCH_DATABASE_URL (default: DATABASE_URL) holding a folded history (run
bench/bench_past_board.py once to fold it). `--catalog boston-calendar.yaml` times Boston's
calendar windows. The read bound is raised (`--read-timeout`, SCORER_READ_TIMEOUT) so the
time is measured rather than cut at the default 5 s; the output says whether it fits it.

    python bench/bench_open_data.py [--days 365] [--requests 7] [--catalog boston.yaml]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_past_board import cpu_seconds, folded_count, serve  # noqa: E402

from services.scorer.settings import ScorerSettings  # noqa: E402
from shared.core.catalog import load_catalog  # noqa: E402
from shared.platform.clock import current_as_of, system_clock  # noqa: E402
from shared.store.engine import make_engine  # noqa: E402
from tests.helpers.open_data import BOSTON_COLUMNS  # noqa: E402
from tests.helpers.processes import free_port  # noqa: E402

DEFAULT_READ_TIMEOUT_S = ScorerSettings.model_fields["scorer_read_timeout_s"].default


def last_day_with_data(database_url: str):
    from sqlalchemy import func, select

    from shared.store.tables.scorer import DayTotal

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.max(DayTotal.__table__.c.day)))
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=365, help="as-of dates in each export")
    parser.add_argument("--requests", type=int, default=7, help="exports timed")
    parser.add_argument("--catalog", default="boston.yaml", help="the catalog the API scores with")
    parser.add_argument("--read-timeout", type=float, default=120.0, help="SCORER_READ_TIMEOUT of the API")
    args = parser.parse_args()
    database_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not database_url or not database_url.startswith("postgresql"):
        raise SystemExit("set BENCH_DATABASE_URL (or DATABASE_URL) to a PostgreSQL database with a folded history")
    events = folded_count(database_url)
    if not events:
        raise SystemExit("no folded history there: run bench/bench_past_board.py first")
    catalog = load_catalog(args.catalog)
    end = min(last_day_with_data(database_url), current_as_of(system_clock, catalog))
    start = end - timedelta(days=args.days - 1)
    print(f"{events} events folded; exporting {start} to {end} ({args.days} as-of dates, {args.catalog})")

    os.environ["CITYSCORE_CATALOG"] = args.catalog
    os.environ["SCORER_READ_TIMEOUT"] = str(args.read_timeout)
    port = free_port()
    server = serve(database_url, port, ROOT, end)
    try:
        session = requests.Session()
        url = f"http://127.0.0.1:{port}/v1/scores.csv?from={start}&to={end}"
        timings, sizes = [], []
        cpu_before = cpu_seconds(server.pid)
        for _ in range(args.requests):
            started = time.perf_counter()
            response = session.get(url, timeout=600)
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200, (response.status_code, response.text[:300])
            rows = list(csv.reader(io.StringIO(response.text, newline="")))
            assert rows[0] == BOSTON_COLUMNS and len(rows) - 1 == args.days * len(catalog.metrics), len(rows)
            sizes.append(len(response.content))
        cpu_s = (cpu_seconds(server.pid) - cpu_before) / args.requests
        median = statistics.median(timings)
        print(f"GET /v1/scores.csv, {args.days} days: median {median:.2f} s, min {min(timings):.2f} s, "
              f"max {max(timings):.2f} s over {len(timings)} requests ({sizes[0] / 1e6:.1f} MB, "
              f"{args.days * len(catalog.metrics)} rows); the workers' CPU {cpu_s:.2f} s a request; "
              f"the default SCORER_READ_TIMEOUT of {DEFAULT_READ_TIMEOUT_S:g} s: "
              f"{'fits' if max(timings) < DEFAULT_READ_TIMEOUT_S else 'NOT always'}")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
