"""Benchmark the scorer's fold in one process: prepare and fold generated events into PostgreSQL.

What each event costs the database fold (score_writer.ScoreWriter: prepare, then fold_prepared in
batches, one transaction each), without Kafka or the scorer's threads around it, so that a change
to the fold (the cases it keeps, an index) can be timed before and after on its own: run it from
this checkout and from an older one (`--source DIR`, e.g. a `git worktree` of an earlier commit)
alternately, on the same database, and compare medians.

Needs BENCH_DATABASE_URL (default: DATABASE_URL), a PostgreSQL database whose CityScore tables
are dropped and made anew on each run.

    python bench/bench_fold.py [--events 150000] [--batch 5000] [--runs 3] [--source DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ONE_RUN = """
import sys, time
from datetime import date
from shared.core.catalog import load_catalog
from shared.core.contract import parse_event
from shared.dev.generator import generate
from shared.store.score_writer import ScoreWriter
from tests.helpers.ingest import fresh_database
url, events_wanted, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
catalog = load_catalog()
events = [parse_event(e) for e in list(generate(catalog, 120, 7, date(2026, 6, 30)))[-events_wanted:]]
cases = sum(1 for e in events if type(e).__name__ == "CaseEvent")
engine = fresh_database(url)
writer = ScoreWriter(engine, catalog)
started = time.perf_counter()
prepared = [writer.prepare(e) for e in events]
middle = time.perf_counter()
for at in range(0, len(prepared), batch):
    with engine.begin() as conn:
        writer.fold_prepared(conn, prepared[at:at + batch])
ended = time.perf_counter()
print(len(events), cases, middle - started, ended - middle)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout whose fold is timed")
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("BENCH_DATABASE_URL (or DATABASE_URL) names the PostgreSQL database to fold into")
    totals = []
    for run in range(args.runs):
        # A process per run, importing the checkout's own code.
        out = subprocess.run([sys.executable, "-c", ONE_RUN, url, str(args.events), str(args.batch)],
                             cwd=args.source, check=True, capture_output=True, text=True).stdout.split()
        events, cases, prepare_s, fold_s = int(out[0]), int(out[1]), float(out[2]), float(out[3])
        totals.append(prepare_s + fold_s)
        print(f"run {run + 1}: {events:,} events ({cases:,} cases): prepare {prepare_s:.2f} s, "
              f"fold {fold_s:.2f} s, {events / (prepare_s + fold_s):,.0f} events/s")
    print(f"median {statistics.median(totals):.2f} s over {args.runs} runs ({args.source})")


if __name__ == "__main__":
    main()
