"""`cityscore demo`: the whole system on a laptop, with departments sending events.

Starts a local Apache Kafka, uses a SQLite file, runs ingest, the scorer and the
notifier as separate processes, then a department simulator: every department gets
an API key, backfills a quarter of events over HTTP, and keeps sending live ones.
Ctrl-C stops everything it started.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
import requests

from shared.core.catalog import Catalog, Feed, load_catalog

ROOT = Path(__file__).resolve().parents[1]


class Demo:
    def __init__(self, workdir: Path, kafka_port: int, ingest_port: int, scorer_port: int, notifier_port: int,
                 backfill_days: int, seed: int):
        self.workdir = workdir
        self.kafka_port = kafka_port
        self.ports = {"ingest": ingest_port, "scorer": scorer_port, "notifier": notifier_port}
        self.backfill_days = backfill_days
        self.rng = random.Random(seed)
        self.seed = seed
        self.processes: dict[str, subprocess.Popen] = {}
        self.started_kafka = False
        self.catalog: Catalog = load_catalog(os.environ.get("CITYSCORE_CATALOG") or None)

    # -- set-up ----------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{self.workdir / 'cityscore.db'}"),
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.kafka_port}",
            "NOTIFIER_PUBLIC_BOARD_URL": f"http://127.0.0.1:{self.ports['scorer']}/",
            "NOTIFIER_HTTP_PORT": str(self.ports["notifier"]),
            # The demo shows the notifier's posts whenever it runs: with Boston's quiet hours
            # (20:00-07:30) every alert would wait for the morning and the console stay silent.
            "NOTIFIER_QUIET_HOURS": os.environ.get("NOTIFIER_QUIET_HOURS", "off"),
            # A laptop without Slack: the scorer serves the notifier's posts on /slack-posts
            # (internal, so off by default and never on the public board).
            "SCORER_SHOW_SLACK_POSTS": "true",
            # A laptop is staff's: the department pages name who owns each alert and action.
            "SCORER_SHOW_OWNERS": "true",
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "prometheus"),
            "PYTHONUNBUFFERED": "1",
        }

    def start_kafka(self) -> None:
        from shared.dev import local_kafka

        click.echo(f"starting Apache Kafka on 127.0.0.1:{self.kafka_port} (first time: jars from Maven Central)…")
        broker = local_kafka.start(port=self.kafka_port, wait=180)
        self.started_kafka = broker.started

    def keys(self) -> dict[str, str]:
        """One API key per department, kept in the demo folder so a restart reuses them."""
        path = self.workdir / "keys.json"
        if path.exists():
            return json.loads(path.read_text())
        from services.ingest.keys import issue_department_keys
        from shared.store.engine import make_engine, migrate, session_factory

        engine = make_engine(self.env()["DATABASE_URL"])
        migrate(engine)
        with session_factory(engine)() as session:
            keys = issue_department_keys(session, self.catalog, label="demo simulator")
            session.commit()
        engine.dispose()
        path.write_text(json.dumps(keys, indent=2))
        return keys

    def spawn(self, name: str, args: list[str], quiet: bool = True) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            args, cwd=ROOT, env=self.env(), stdout=log if quiet else None, stderr=log if quiet else None,
            start_new_session=True)  # Ctrl-C reaches only us; we stop the children in order

    def start_services(self) -> None:
        python = sys.executable
        (self.workdir / "prometheus").mkdir(exist_ok=True)
        self.spawn("ingest", [python, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--bind",
                              f"127.0.0.1:{self.ports['ingest']}", "services.ingest.wsgi:app"])
        self.spawn("scorer", [python, "-m", "services.cli", "scorer", "run", "--http-port", str(self.ports["scorer"])])
        # The notifier's posts are the point of the demo: its output goes to this console.
        self.spawn("notifier", [python, "-m", "services.cli", "notifier", "run"], quiet=False)
        for name, path in (("ingest", "/readyz"), ("scorer", "/healthz"), ("notifier", "/healthz")):
            self.wait_ready(name, f"http://127.0.0.1:{self.ports[name]}{path}")

    def wait_ready(self, name: str, url: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                raise click.ClickException(f"{name} stopped at start-up; see {self.workdir / (name + '.log')}")
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise click.ClickException(f"{name} did not become ready at {url}")

    # -- the department simulator -----------------------------------------------------------

    def backfill(self, keys: dict[str, str]) -> None:
        from shared.dev.generator import generate
        from services.ingest.client import DepartmentRouter

        end = datetime.now(self.catalog.zone).date() - timedelta(days=1)
        router = DepartmentRouter(f"http://127.0.0.1:{self.ports['ingest']}", list(keys.values()))
        click.echo(f"departments backfill {self.backfill_days} days of events ending {end} over HTTP…")
        started = time.monotonic()
        report = router.send(generate(self.catalog, self.backfill_days, self.seed, end))
        click.echo(f"  {report.accepted} events accepted, {report.refused_count} refused, "
                   f"in {time.monotonic() - started:.0f}s")

    def live_events(self, now: datetime, count: int) -> list[dict]:
        """A few events happening now, as departments' systems would send them."""
        events = []
        stamp = now.astimezone(self.catalog.zone).replace(microsecond=0)
        for _ in range(count):
            metric = self.rng.choice(self.catalog.metrics)
            event_id = f"live-{stamp:%Y%m%d%H%M%S}-{self.rng.getrandbits(40):010x}"
            if metric.feed is Feed.CASES:
                opened = stamp - timedelta(hours=self.rng.uniform(1, 30))
                events.append({"event_id": event_id, "type": "case", "metric": metric.id, "case_id": event_id,
                               "opened_at": opened.isoformat(), "closed_at": stamp.isoformat()})
            elif metric.feed is Feed.INCIDENTS:
                events.append({"event_id": event_id, "type": "incident", "metric": metric.id,
                               "occurred_at": stamp.isoformat()})
            elif metric.feed in (Feed.THRESHOLD, Feed.RATING, Feed.VALUES):
                if metric.feed is Feed.RATING:
                    value = float(self.rng.choice([3, 4, 4, 5, 5]))
                elif metric.feed is Feed.THRESHOLD:
                    value = round(self.rng.uniform(0.2, 1.3) * (metric.threshold or 1), 1)
                else:
                    value = round(self.rng.lognormvariate(1.75, 0.3), 2)
                events.append({"event_id": event_id, "type": "measurement", "metric": metric.id,
                               "occurred_at": stamp.isoformat(), "value": value})
        return events

    def live(self, keys: dict[str, str], per_second: float) -> None:
        from services.ingest.client import DepartmentRouter

        router = DepartmentRouter(f"http://127.0.0.1:{self.ports['ingest']}", list(keys.values()), batch_size=100)
        click.echo(f"live traffic: about {per_second:g} events a second. Ctrl-C stops everything.")
        while True:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise click.ClickException(f"{name} stopped (exit {process.returncode}); "
                                               f"see {self.workdir / (name + '.log')}")
            router.send(self.live_events(datetime.now(timezone.utc), max(1, int(per_second * 2))))
            time.sleep(2)

    # -- tear-down ------------------------------------------------------------------------------

    def stop(self) -> None:
        for name in ("notifier", "ingest", "scorer"):
            process = self.processes.get(name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.started_kafka:
            from shared.dev import local_kafka

            local_kafka.stop(self.kafka_port)
        click.echo("stopped.")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@click.command("demo")
@click.option("--workdir", default=".demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--kafka-port", default=9092, show_default=True)
@click.option("--ingest-port", default=8000, show_default=True)
@click.option("--scorer-port", default=8001, show_default=True)
@click.option("--notifier-port", default=8002, show_default=True)
@click.option("--backfill-days", default=90, show_default=True, help="Days of history the departments send first.")
@click.option("--rate", default=5.0, show_default=True, help="Live events a second after the backfill.")
@click.option("--seed", default=2016, show_default=True)
def demo_command(workdir: str, kafka_port: int, ingest_port: int, scorer_port: int, notifier_port: int,
                 backfill_days: int, rate: float, seed: int) -> None:
    """Run the whole system locally with simulated departments (Ctrl-C stops it)."""
    folder = Path(workdir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    demo = Demo(folder, kafka_port, ingest_port, scorer_port, notifier_port, backfill_days, seed)
    # `kill` or a closed terminal stops everything as Ctrl-C does: the children run in their
    # own sessions, so without this they would outlive the demo. SIGINT is set too: started
    # from a script in the background, the demo inherits SIGINT ignored and Ctrl-C would not reach it.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        demo.start_kafka()
        keys = demo.keys()
        demo.start_services()
        click.echo(click.style("\nCityScore is running:", bold=True))
        click.echo(f"  scoreboard   http://127.0.0.1:{scorer_port}/")
        click.echo(f"  scores API   http://127.0.0.1:{scorer_port}/v1/scoreboard")
        click.echo(f"  Slack posts  http://127.0.0.1:{scorer_port}/slack-posts")
        click.echo(f"  ingest API   http://127.0.0.1:{ingest_port}/docs")
        click.echo(f"  department keys in {folder / 'keys.json'}; logs in {folder}\n")
        demo.backfill(keys)
        demo.live(keys, rate)
    except KeyboardInterrupt:
        click.echo("\nstopping…")
    finally:
        demo.stop()
