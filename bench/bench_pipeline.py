"""Benchmark the whole pipeline end to end (issue 6's closing figures).

The three services run as real processes (ingest under gunicorn, `cityscore scorer
run`, `cityscore notifier run`) against Kafka, PostgreSQL and the fake Slack server,
exactly as in tests/integration/test_end_to_end.py. It reports:

1. sustained throughput: generated events posted over HTTP by every department at
   once, from the first POST to the last event folded into the scores (the scorer's
   consumer group has committed everything, which it does only after the database
   has the batch and its rescored windows); also to the notifier having read every
   score change and Slack having every message;
2. latency: under a steady background load, marked events (a school-attendance tally
   for a day of its own) timed from their 202 to their score being visible in the
   scorer's read API: p50, p95, p99;
3. memory: peak resident memory (VmHWM) of each process: the gunicorn master and
   workers of ingest, the scorer, the notifier; sampled every half second.

Needs KAFKA_BOOTSTRAP_SERVERS (default: starts the local broker on 9092) and
BENCH_DATABASE_URL (default: the local PostgreSQL's `cityscore_e2e` database, created
when missing). The run works in a schema of its own, dropped at the end.

    python bench/bench_pipeline.py [--days 90] [--latency-seconds 30] [--latency-rate 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import orjson
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.dev.generator import generate  # noqa: E402
from tests.fakes.slack import FakeSlack  # noqa: E402
from tests.helpers.notifier import Schema  # noqa: E402
from tests.helpers.system import (CATALOG, Departments, Lag, Pace, System, api_board,  # noqa: E402
                                           department_events, e2e_database_url, issue_keys, offline_board,
                                           outbox_rows, write_events)
from tests.helpers.boards import board_differences  # noqa: E402
from tests.helpers.processes import memory_kb, percentile, run_probes  # noqa: E402
from tests.helpers.waiting import wait_until  # noqa: E402


class MemoryWatch:
    """Samples the resident memory of every service process (gunicorn's workers too) twice a second."""

    def __init__(self, system: System):
        self.system = system
        self.peak_kb: dict[tuple[str, int], int] = {}  # (service, pid) -> VmHWM, the kernel's own peak
        self.total_peak_kb: dict[str, int] = {}  # service -> peak of the sum over its processes
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="memory", daemon=True)

    def start(self) -> "MemoryWatch":
        self.thread.start()
        return self

    def sample(self) -> None:
        for name in System.NAMES:
            if name not in self.system.processes:
                continue
            total = 0
            for pid in self.system.pids(name):
                current, peak = memory_kb(pid)
                if current:
                    total += current
                    self.peak_kb[(name, pid)] = max(self.peak_kb.get((name, pid), 0), peak)
            self.total_peak_kb[name] = max(self.total_peak_kb.get(name, 0), total)

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            self.sample()

    def report(self) -> list[str]:
        self.stop.set()
        self.thread.join(5)
        self.sample()
        lines = []
        for name in System.NAMES:
            root = self.system.processes[name].pid
            parts = sorted((pid, kb) for (service, pid), kb in self.peak_kb.items() if service == name)
            if name == "ingest":
                master = next((kb for pid, kb in parts if pid == root), 0)
                workers = [kb for pid, kb in parts if pid != root]
                lines.append(f"  ingest: gunicorn master {master / 1024:.0f} MB, {len(workers)} workers "
                             + ", ".join(f"{kb / 1024:.0f} MB" for kb in workers)
                             + f"; all together at most {self.total_peak_kb.get(name, 0) / 1024:.0f} MB")
            else:
                lines.append(f"  {name}: {sum(kb for _, kb in parts) / 1024:.0f} MB")
        return lines


def settled_at(predicate, timeout_s: float, what: str) -> float:
    """The moment (perf_counter) `predicate()` first holds, asked every 0.1 s; an error is "not yet"."""
    wait_until(predicate, timeout_s, what, interval_s=0.1, retry_on=Exception)
    return time.perf_counter()


def throughput(system: System, keys: dict[str, str], events: list[dict], lag: Lag, workdir: Path, check: bool,
               slack, engine) -> None:
    """Every department posting at once; time to 202, to folded and scored, to Slack."""
    departments = Departments(system.ingest_url, keys, events, batch_size=500, per_metric=True).start()
    started = departments.started_at
    departments.join(1800)
    if departments.refusals():
        raise SystemExit(f"refused: {departments.refusals()[:5]}")
    accepted = departments.accepted()
    count = len(accepted)
    all_202 = departments.finished_at
    scored = settled_at(lambda: lag.of(system.topics.scorer_group, system.topics.events) == 0, 1800,
                        "the scorer to fold every event")
    notified = settled_at(lambda: lag.of(system.topics.notifier_group, system.topics.scores) == 0, 600,
                          "the notifier to read every score change")
    rows = []

    def slack_done() -> bool:
        rows[:] = outbox_rows(engine)
        return bool(rows) and all(row.status in ("sent", "cancelled", "failed") for row in rows)

    in_slack = settled_at(slack_done, 600, "every Slack message to be sent")
    requests_sent = sum(o.requests for o in departments.outcomes.values())
    print(f"throughput: {count:,} events in {requests_sent:,} requests of up to 500, "
          f"{len(departments.threads)} senders at once (one per metric, each with its department's key)")
    print(f"  all 202:                      {all_202 - started:6.1f} s  {count / (all_202 - started):8,.0f} events/s "
          "(ingest)")
    print(f"  all folded into the scores:   {scored - started:6.1f} s  {count / (scored - started):8,.0f} events/s "
          "sustained through the pipeline (first POST to last event scored)")
    print(f"  notifier read every change:   {notified - started:6.1f} s")
    print(f"  every Slack message sent:     {in_slack - started:6.1f} s  ({len(rows)} outbox messages, "
          f"{len(slack.all_messages())} in Slack)")
    if check:
        yesterday = datetime.now(CATALOG.zone).date() - timedelta(days=1)
        expected = offline_board(write_events(accepted, workdir / "accepted.jsonl"), yesterday)
        differences = board_differences(expected, api_board(system.scorer_url, yesterday))
        print(f"  read API as of {yesterday} equals `cityscore score` of the accepted events: "
              + ("yes" if not differences else f"NO, {len(differences)} differences, e.g. {differences[:3]}"))


def latency(system: System, keys: dict[str, str], seconds: float, rate: float, probes_per_second: float) -> None:
    """Marked events under a steady load, timed from 202 to visible in the read API."""
    tag = uuid.uuid4().hex[:6]
    end = datetime.now(CATALOG.zone).date() - timedelta(days=1)
    load = [{**e, "event_id": f"{tag}-{e['event_id']}"} for e in generate(CATALOG, 20, 99, end)
            if e["type"] != "tally"]
    background = Departments(system.ingest_url, keys, load, batch_size=50, pace=Pace(rate), per_metric=True)
    latencies: list[float] = []
    missed = []

    def probe(number: int) -> None:
        # A school-attendance tally for a day of its own in 2010: its day score shows it is in.
        day = date(2010, 1, 1) + timedelta(days=number)
        event = {"event_id": f"{tag}-probe-{number}", "type": "tally", "metric": "bps-attendance",
                 "date": day.isoformat(), "numerator": 1000 + number, "denominator": 2000}
        session = requests.Session()
        response = session.post(f"{system.ingest_url}/v1/events", data=orjson.dumps(event), timeout=30,
                                headers={"Authorization": f"Bearer {keys['schools']}",
                                         "Content-Type": "application/json"})
        if response.status_code != 202:
            missed.append(f"HTTP {response.status_code}")
            return
        accepted = time.perf_counter()
        url = f"{system.scorer_url}/v1/metrics/bps-attendance/history"
        while time.perf_counter() - accepted < 30:
            # 400 until the probe is folded: 2010 is before the first day with data until then.
            response = session.get(url, params={"window": "day", "days": 1, "as_of": day.isoformat()}, timeout=30)
            history = response.json()["history"] if response.status_code == 200 else []
            if history and history[-1]["numerator"] is not None:
                latencies.append(time.perf_counter() - accepted)
                return
            time.sleep(0.01)
        missed.append("not visible within 30 s")

    background.start()
    time.sleep(2)  # the load settles first
    started = time.perf_counter()
    accepted_before = background.accepted_count()
    number = run_probes(probe, seconds, interval_s=1 / probes_per_second)
    elapsed = time.perf_counter() - started
    sent = background.accepted_count() - accepted_before
    background.stop()
    background.join(120)
    ms = [x * 1000 for x in latencies]
    if not ms:
        raise SystemExit(f"no probe became visible: {missed[:5]}")
    print(f"latency: {len(ms)}/{number} marked events under a background load of {sent / elapsed:,.0f} events/s "
          f"(asked {rate:,.0f}); 202 -> score visible in the read API:")
    print(f"  p50 {statistics.median(ms):.0f} ms, p95 {percentile(ms, 95):.0f} ms, p99 {percentile(ms, 99):.0f} ms, "
          f"max {max(ms):.0f} ms" + (f"; {len(missed)} missed: {missed[:3]}" if missed else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=90, help="generated days the departments post")
    parser.add_argument("--seed", type=int, default=2016)
    parser.add_argument("--full-volume", action="store_true",
                        help="every generated event (about 1,900 a day), not the test's thinned feeds")
    parser.add_argument("--latency-seconds", type=float, default=30)
    parser.add_argument("--latency-rate", type=float, default=300, help="background events/s while probing")
    parser.add_argument("--probes-per-second", type=float, default=4)
    parser.add_argument("--no-check", action="store_true", help="skip comparing with the offline score")
    args = parser.parse_args()

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        from shared.dev import local_kafka

        bootstrap = local_kafka.start(port=9092, wait=120).bootstrap_servers
    base = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://cityscore:cityscore@127.0.0.1:5432/cityscore")
    schema = Schema(e2e_database_url(base))
    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    yesterday = datetime.now(CATALOG.zone).date() - timedelta(days=1)
    if args.full_volume:
        events = list(generate(CATALOG, args.days, args.seed, yesterday))
    else:
        events = department_events(args.days, args.seed, yesterday)
    print(f"{len(events):,} generated events for {args.days} days ending {yesterday}; "
          f"machine: {os.cpu_count()} CPUs; Kafka {bootstrap}; PostgreSQL schema {schema.name}; logs in {workdir}")

    lag = Lag(bootstrap)
    with FakeSlack() as slack:
        system = System(bootstrap, schema.url, slack, workdir)
        keys = issue_keys(schema.engine)
        try:
            system.start_all()
            memory = MemoryWatch(system).start()
            throughput(system, keys, events, lag, workdir, not args.no_check, slack, schema.engine)
            latency(system, keys, args.latency_seconds, args.latency_rate, args.probes_per_second)
            print("peak resident memory (VmHWM) over the whole run:")
            for line in memory.report():
                print(line)
            dead = system.dead()
            if dead:
                print(f"WARNING: services exited during the run: {dead}")
        finally:
            system.stop()
            lag.close()
            schema.drop()


if __name__ == "__main__":
    main()
