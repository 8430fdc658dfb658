"""Benchmark the board for a past as-of date (issue 14, item 8: p99 under 50 ms on 1M events).

`GET /v1/scoreboard?as_of=` for a date other than the current as-of day is scored on
request (the page's date picker). This folds a generated history of about `--events`
events into PostgreSQL (the trend metrics' past years included), serves the real scorer
read API under gunicorn (services.scorer.wsgi:app, deploy/gunicorn.conf.py), and times
`--requests` requests for past dates drawn at random from the days on which every metric
has data (the dearest boards: the trend metrics' backfilled years alone score faster),
sequentially on one keep-alive connection: median, p99 and max. Each answer is checked
(200, the date asked).

Needs BENCH_DATABASE_URL (default: DATABASE_URL), a PostgreSQL database whose CityScore
tables are dropped and made anew, unless --reuse finds the same history already folded
there. --source serves the API from another checkout of the project (e.g. an older commit
extracted with `git archive`), to time before and after on the same database.

--live N folds N events a second meanwhile, as a scorer would (today's incidents and EMS
measurements, and each second one late incident on a random past day), each second's in one
transaction through ScoreWriter: the read API's kept day totals then follow the fold's change
log (shared/store/kept_days.py) while it is timed. Those events stay in the database.

    python bench/bench_past_board.py [--events 1000000] [--requests 300] [--reuse] [--source DIR] [--live 1000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.core.catalog import load_catalog  # noqa: E402
from shared.core.contract import parse_event  # noqa: E402
from shared.dev.generator import generate  # noqa: E402
from shared.store.engine import make_engine  # noqa: E402
from shared.store.published_scores import PublishedScores  # noqa: E402
from shared.store.score_reader import ScoreReader  # noqa: E402
from shared.store.score_writer import ScoreWriter  # noqa: E402
from tests.helpers.ingest import fresh_database  # noqa: E402
from tests.helpers.processes import cpu_seconds, free_port, percentile  # noqa: E402
from tests.helpers.waiting import wait_until  # noqa: E402

GOAL_MS = 50
SEED = 2016
BATCH = 10_000


def history_days(events: int) -> int:
    """Generated live days for about `events` events (as bench/bench_scorer.py sends)."""
    return events // 1830 + 40


def folded_count(database_url: str) -> int | None:
    """Events already folded in the database (None: no CityScore tables)."""
    from sqlalchemy import func, inspect, select

    from shared.store.tables.scorer import ProcessedEvent

    engine = make_engine(database_url)
    try:
        if "processed_events" not in inspect(engine).get_table_names():
            return None
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(ProcessedEvent))
    finally:
        engine.dispose()


def load(database_url: str, events: int, end: date) -> int:
    """Fold the generated history ending on `end` in batches, as the scorer would, and publish."""
    catalog = load_catalog()
    engine = fresh_database(database_url)
    writer, reader = ScoreWriter(engine, catalog), ScoreReader(engine, catalog)
    batch, count = [], 0
    for raw in generate(catalog, history_days(events), SEED, end):
        batch.append(writer.prepare(parse_event(raw)))
        if len(batch) == BATCH:
            with engine.begin() as conn:
                writer.fold_prepared(conn, batch)
            count += len(batch)
            batch = []
    with engine.begin() as conn:
        writer.fold_prepared(conn, batch)
        PublishedScores(reader).rescore(conn, end)
    engine.dispose()
    return count + len(batch)


def data_range(database_url: str) -> tuple[date, date]:
    """The first day on which every metric has data, and the current as-of day the scores were published for."""
    catalog = load_catalog()
    engine = make_engine(database_url)
    try:
        reader = ScoreReader(engine, catalog)
        with engine.connect() as conn:
            first_days = reader.first_days(conn)
            stored = reader.current(conn)
        return max(first_days.values()), max(row.as_of for row in stored.values())
    finally:
        engine.dispose()


def serve(database_url: str, port: int, source: Path, end: date) -> subprocess.Popen:
    """The scorer read API from `source` under gunicorn; its clock says `end` is the current as-of day."""
    env = {**os.environ, "DATABASE_URL": database_url, "CITYSCORE_LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(source)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(source / "deploy" / "gunicorn.conf.py"),
         "--bind", f"127.0.0.1:{port}", "services.scorer.wsgi:app"],
        cwd=source, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200,
                   60, f"the read API to be ready on port {port}", interval_s=0.5, retry_on=requests.RequestException)
    except AssertionError as exc:
        proc.kill()
        raise SystemExit(str(exc)) from None
    return proc


def workers_cpu_seconds(master: int) -> float:
    """CPU time (user + system) the gunicorn workers of `master` have used so far (Linux /proc).

    Less noisy than wall time on a shared machine: what a request costs, not how long it waited."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return sum(cpu_seconds(int(pid)) for pid in children)


class LiveFolds(threading.Thread):
    """Folds `rate` events a second into the database until stopped, as a scorer would."""

    def __init__(self, database_url: str, rate: int, first: date, current: date):
        super().__init__(daemon=True)
        self.database_url, self.rate, self.first, self.current = database_url, rate, first, current
        self.stop = threading.Event()
        self.folds = 0

    def run(self) -> None:
        catalog = load_catalog()
        engine = make_engine(self.database_url)
        writer = ScoreWriter(engine, catalog)
        rng = random.Random(SEED)
        incidents = [m.id for m in catalog.metrics if m.feed.value == "incidents"]
        today = (self.current + timedelta(days=1)).isoformat()
        number = 0
        try:
            while not self.stop.is_set():
                started = time.perf_counter()
                events = []
                for _ in range(self.rate):
                    number += 1
                    if number % 2:
                        raw = {"type": "incident", "metric": rng.choice(incidents)}
                    else:
                        raw = {"type": "measurement", "metric": "ems-response-time", "value": rng.uniform(4, 12)}
                    events.append(parse_event({**raw, "event_id": f"live-{time.time_ns()}-{number}",
                                               "occurred_at": f"{today}T12:00:00-05:00"}))
                late = self.first + timedelta(days=rng.randrange((self.current - self.first).days))
                events.append(parse_event({"event_id": f"late-{time.time_ns()}", "type": "incident",
                                           "metric": rng.choice(incidents), "occurred_at": f"{late}T12:00:00-05:00"}))
                with engine.begin() as conn:
                    writer.fold(conn, events)
                self.folds += 1
                self.stop.wait(max(0.0, 1.0 - (time.perf_counter() - started)))
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="about how many events the history holds")
    parser.add_argument("--requests", type=int, default=300, help="past boards timed (at least 200 for a p99)")
    parser.add_argument("--reuse", action="store_true", help="keep a history already folded in the database")
    parser.add_argument("--source", type=Path, default=ROOT, help="the project checkout serving the API")
    parser.add_argument("--seed", type=int, default=7, help="seed of the random as-of dates")
    parser.add_argument("--live", type=int, default=0, metavar="N", help="fold N events a second meanwhile")
    args = parser.parse_args()
    database_url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not database_url or not database_url.startswith("postgresql"):
        raise SystemExit("set BENCH_DATABASE_URL (or DATABASE_URL) to a PostgreSQL database the bench may wipe")

    from services.scorer.consumer import current_as_of, system_clock

    end = current_as_of(system_clock, load_catalog())
    existing = folded_count(database_url)
    if args.reuse and existing and existing >= args.events * 0.9:
        print(f"reusing the {existing} events folded in the database")
    else:
        started = time.perf_counter()
        count = load(database_url, args.events, end)
        print(f"folded {count} generated events in {time.perf_counter() - started:.0f}s")
    first, current = data_range(database_url)
    if current != end:
        print(f"note: the history was folded for {current}, the current as-of day is now {end}")
    rng = random.Random(args.seed)
    # Past dates the API scores on request, up to the day before the current one.
    span = (current - first).days
    dates = [first + timedelta(days=rng.randrange(span)) for _ in range(args.requests)]
    print(f"history from {first} to {current}; {args.requests} random past as-of dates; source {args.source}")

    port = free_port()
    server = serve(database_url, port, args.source.resolve(), end)
    try:
        session = requests.Session()
        base = f"http://127.0.0.1:{port}/v1/scoreboard?as_of="
        for day in dates[:10]:  # warm both workers' connections
            session.get(base + day.isoformat(), timeout=60)
        live = None
        if args.live:
            live = LiveFolds(database_url, args.live, first, current)
            live.start()
        timings = []
        cpu_before = workers_cpu_seconds(server.pid)
        for day in dates:
            started = time.perf_counter()
            response = session.get(base + day.isoformat(), timeout=60)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (day, response.status_code, response.text[:300])
            assert response.json()["as_of"] == day.isoformat()
        cpu_ms = (workers_cpu_seconds(server.pid) - cpu_before) * 1000 / len(dates)
        p99 = percentile(timings, 99)
        print(f"GET /v1/scoreboard?as_of=<past date>: p50 {statistics.median(timings):.1f} ms, p99 {p99:.1f} ms, "
              f"max {max(timings):.1f} ms over {len(timings)} requests (goal p99 < {GOAL_MS} ms: "
              f"{'met' if p99 < GOAL_MS else 'NOT met'}); the workers' CPU {cpu_ms:.1f} ms a request")
        if live is not None:
            live.stop.set()
            live.join(30)
            print(f"meanwhile {live.folds} folds of {args.live} events and one late incident each")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
