"""Benchmark: `cityscore score` end to end over a generated file (issue 2's speed goal).

Generates N events (default 1,000,000) with `cityscore dev generate` once, caches the
file under bench/out/, then times the real command in a child process and reads
its peak RSS from the kernel. Goal: >= 50,000 events/s, peak RSS < 500 MB.

    python bench/bench_score.py [--events 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
END = "2026-06-30"
EVENTS_PER_DAY = 1830  # what the Boston generator yields per live day, roughly


def ensure_events(target: int) -> Path:
    """A generated file of at least `target` events, trimmed to exactly `target` lines."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"events-{target}.jsonl"
    if path.exists():
        return path
    days = target // EVENTS_PER_DAY + 30
    raw = OUT / f"generated-{days}d.jsonl"
    if not raw.exists():
        subprocess.run([sys.executable, "-m", "services.cli", "dev", "generate", "--days", str(days),
                        "--seed", "2016", "--end", END, "--out", str(raw)], check=True)
    with raw.open("rb") as src, path.open("wb") as dst:
        for number, line in enumerate(src):
            if number >= target:
                break
            dst.write(line)
    return path


def run_once(path: Path) -> tuple[float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "services.cli", "score", "--events", str(path), "--as-of", END],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss for children is the largest child so far; each run is alike, so the max is the peak.
    sys.stderr.write(proc.stderr.decode())
    return elapsed, max(peak_kb, before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    path = ensure_events(args.events)
    lines = sum(1 for _ in path.open("rb"))
    results = [run_once(path) for _ in range(args.runs)]
    best = min(r[0] for r in results)
    peak_mb = max(r[1] for r in results) / 1024
    rates = [lines / r[0] for r in results]
    print(f"cityscore score: {lines} events, runs {', '.join(f'{r[0]:.2f}s' for r in results)}")
    print(f"  throughput: best {lines / best:,.0f} events/s, median {sorted(rates)[len(rates) // 2]:,.0f} events/s"
          " (goal >= 50,000)")
    print(f"  peak RSS: {peak_mb:,.0f} MB (goal < 500)")
    print(f"  machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
