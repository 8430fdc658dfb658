"""Benchmark: what a refused body costs ingest (issue 13, item 5).

Each body is posted once, with an Idempotency-Key, to the real ingest app (in process,
Flask's test client, a SQLite file database) in a fresh Python process, and we print:
the answer's status and size, the stored idempotency record's size, the time taken,
the peak growth of the process's resident memory (VmHWM, reset just before the
request, minus VmRSS then; Linux) and, in a second fresh process, the peak of Python allocations (tracemalloc).

Bodies: 349,524 empty objects (`[{},{},...]`, just under 1 MiB) and 1,000 events that
each break the contract (one problem each). Kafka is never reached: both are refused.

    python bench/bench_ingest_refusals.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BODIES = {
    "349,524 empty objects (1 MiB)": lambda: b"[" + b",".join([b"{}"] * 349_524) + b"]",
    "1,000 events, one problem each": lambda: orjson.dumps([
        {"event_id": f"bad-{i}", "type": "case", "metric": "pothole-on-time", "case_id": str(i),
         "opened_at": "2026-07-20T09:00:00-04:00", "closed_at": "2026-07-20T15:00:00"} for i in range(1000)]),
}


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(name: str, trace: bool) -> dict:
    """In this (fresh) process: post the body once and measure it."""
    import tracemalloc

    from services.ingest.app import create_app
    from services.ingest.keys import issue_department_keys
    from shared.core.catalog import load_catalog
    from shared.store.engine import make_engine, migrate, session_factory
    from shared.store.tables.ingest import IdempotencyRecord
    from services.ingest.settings import IngestSettings

    workdir = tempfile.mkdtemp(prefix="cityscore-bench-")
    catalog = load_catalog()
    engine = make_engine(f"sqlite:///{workdir}/bench.db")
    migrate(engine)
    with session_factory(engine)() as session:
        key = issue_department_keys(session, catalog, ["public-works"], label="bench")["public-works"]
        session.commit()
    settings = IngestSettings(KAFKA_BOOTSTRAP_SERVERS=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                        INGEST_RATE_LIMIT="1000000/second")
    client = create_app(settings, engine=engine, catalog=catalog).test_client()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    client.post("/v1/events", data=b"[{}]", headers=headers)  # warm up: imports, the first query
    body = BODIES[name]()
    headers["Idempotency-Key"] = "bench"

    if trace:
        tracemalloc.start()
    # VmHWM is the process's peak so far (building the body above made one): start it afresh.
    Path("/proc/self/clear_refs").write_text("5")
    rss_before = _kib("VmRSS")
    started = time.perf_counter()
    response = client.post("/v1/events", data=body, headers=headers)
    elapsed = time.perf_counter() - started
    result = {"status": response.status_code, "answer_bytes": len(response.data), "seconds": elapsed,
              "body_bytes": len(body)}
    if trace:
        result["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    else:
        result["rss_peak_growth_mb"] = (_kib("VmHWM") - rss_before) * 1024 / 1e6
    with session_factory(engine)() as session:
        record = session.query(IdempotencyRecord).one()
        result["stored_bytes"] = len(record.response_body)
    return result


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2], sys.argv[3] == "trace")))
        return
    for name in BODIES:
        found = {}
        for mode in ("rss", "trace"):
            child = subprocess.run([sys.executable, __file__, "--one", name, mode], cwd=ROOT, check=True,
                                   capture_output=True, text=True)
            found.update(json.loads(child.stdout.strip().splitlines()[-1]))
        print(f"{name}: {found['body_bytes']:,} bytes -> {found['status']}, answer {found['answer_bytes']:,} bytes, "
              f"stored {found['stored_bytes']:,} bytes, {found['seconds'] * 1000:.0f} ms, "
              f"peak RSS growth {found['rss_peak_growth_mb']:.1f} MB, "
              f"peak Python allocations {found['traced_peak_mb']:.1f} MB")


if __name__ == "__main__":
    main()
