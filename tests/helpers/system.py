"""The whole system as real processes, for the end-to-end test and the pipeline benchmark.

`System` runs ingest (gunicorn, master and workers), the scorer and the notifier as
separate processes against a real Kafka broker, a PostgreSQL schema of their own and
the fake Slack server, and can SIGKILL and restart each of them. `Departments` posts
events over HTTP the way the departments' systems do, one sender per department,
and keeps every event that got a 202, in the order it was accepted: that list is
what the offline `cityscore score` must agree with.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path

import orjson
import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from shared.core.catalog import Catalog, load_catalog
from shared.dev.generator import generate
from shared.platform.kafka import ensure_topics, kafka_security
from shared.core.scoring import standing
from services.ingest.client import IngestClient
from tests.helpers.notifier_harness import ROUTING, SECRET
from tests.helpers.processes import free_port
from tests.helpers.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
CATALOG: Catalog = load_catalog()
E2E_DATABASE = os.environ.get("CITYSCORE_E2E_DATABASE", "cityscore_e2e")
MAYOR_CHANNEL = "C0MAYOR"

# Generated days keep every case, tally and rare incident, but only a share of the four
# feeds that arrive by the hundred a day, so a run posts tens of thousands of events, not
# hundreds of thousands, and still gives every metric a score.
THINNED = {"311-call-center": 20, "bfd-incidents": 5, "ems-response-time": 5, "bfd-response-time": 5}


# -- the database --------------------------------------------------------------------------


def e2e_database_url(database_url: str, name: str = E2E_DATABASE) -> str:
    """The URL of database `name` on the same server as `database_url`, created when missing.

    The end-to-end runs keep away from the database other tests reset; each run then
    works in a schema of its own inside it, so runs never see each other's tables.
    """
    url = make_url(database_url)
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}) is None:
                try:
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                except sa.exc.ProgrammingError as exc:
                    raise RuntimeError(
                        f"database {name!r} does not exist and {url.username!r} may not create it; create it "
                        f"as a superuser: CREATE DATABASE {name} OWNER {url.username}") from exc
    finally:
        admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def issue_keys(engine, catalog: Catalog = CATALOG) -> dict[str, str]:
    """One API key for each department of the catalog: {department: key}."""
    from services.ingest.keys import issue_department_keys
    from shared.store.engine import session_factory

    with session_factory(engine)() as session:
        keys = issue_department_keys(session, catalog, label="e2e")
        session.commit()
    return keys


# -- events ------------------------------------------------------------------------------------


def department_events(days: int, seed: int, end: date, catalog: Catalog = CATALOG) -> list[dict]:
    """Generated events ending on `end`, the busiest feeds thinned (deterministic)."""
    events = []
    for event in generate(catalog, days, seed, end):
        every = THINNED.get(event["metric"])
        if every and "history" not in event["event_id"] and zlib.crc32(event["event_id"].encode()) % every:
            continue
        events.append(event)
    return events


def live_events(count: int, seed: int, catalog: Catalog = CATALOG) -> list[dict]:
    """Events happening now, as the demo's departments send them (today's scores, not yesterday's)."""
    from services.demo import Demo

    demo = Demo(ROOT, kafka_port=0, ingest_port=0, scorer_port=0, notifier_port=0, backfill_days=0, seed=seed)
    return demo.live_events(datetime.now(catalog.zone), count)


def by_department(events: list[dict], catalog: Catalog = CATALOG) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for event in events:
        grouped.setdefault(catalog.by_id[event["metric"]].department, []).append(event)
    return grouped


# -- processes -------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The direct children of `pid`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@dataclass
class Topics:
    events: str
    scores: str
    dead_letters: str
    scorer_group: str
    notifier_group: str

    @classmethod
    def unique(cls, prefix: str = "e2e") -> "Topics":
        tag = uuid.uuid4().hex[:10]
        return cls(f"cityscore.events.{prefix}-{tag}", f"cityscore.scores.{prefix}-{tag}",
                   f"cityscore.events.dlq.{prefix}-{tag}", f"scorer-{prefix}-{tag}", f"notifier-{prefix}-{tag}")


class System:
    """ingest, scorer and notifier as processes; each can be killed (SIGKILL) and started again."""

    NAMES = ("ingest", "scorer", "notifier")

    def __init__(self, bootstrap: str, database_url: str, slack, workdir: Path, topics: Topics | None = None,
                 partitions: int = 6, board_time: str = "00:00", extra_env: dict[str, str] | None = None):
        self.bootstrap = bootstrap
        self.database_url = database_url
        self.workdir = workdir
        self.topics = topics or Topics.unique()
        self.partitions = partitions
        self.ports = {name: free_port() for name in self.NAMES}
        self.processes: dict[str, subprocess.Popen] = {}
        self.kills: Counter = Counter()
        routing = workdir / "routing.json"
        routing.write_text(json.dumps(ROUTING))
        (workdir / "prometheus").mkdir(exist_ok=True)
        tomorrow = (datetime.now(CATALOG.zone).weekday() + 1) % 7
        self.env = {
            **os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "CITYSCORE_LOG_LEVEL": "WARNING",
            "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CITYSCORE_EVENTS_TOPIC": self.topics.events, "CITYSCORE_SCORES_TOPIC": self.topics.scores,
            "CITYSCORE_DLQ_TOPIC": self.topics.dead_letters, "CITYSCORE_TOPIC_PARTITIONS": str(partitions),
            # ingest
            "INGEST_RATE_LIMIT": "100000/second", "INGEST_KAFKA_TIMEOUT": "3",
            # scorer
            "SCORER_GROUP": self.topics.scorer_group, "SCORER_BATCH_MAX": "5000", "SCORER_BATCH_WAIT": "0.2",
            # notifier: the fake Slack, alerts at once (no flap damping, no quiet hours), the day's
            # board due at start-up, the weekly recap not today
            "SLACK_BOT_TOKEN": slack.token, "SLACK_BASE_URL": slack.base_url, "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_TIMEOUT": "10", "NOTIFIER_ROUTING": str(routing), "NOTIFIER_MAYOR_CHANNEL": MAYOR_CHANNEL,
            "NOTIFIER_PUBLIC_BOARD_URL": f"http://127.0.0.1:{self.ports['scorer']}/",
            "NOTIFIER_QUIET_HOURS": "off", "NOTIFIER_FIRE_AFTER": "1", "NOTIFIER_RESOLVE_AFTER": "1",
            "NOTIFIER_BOARD_TIME": board_time, "NOTIFIER_RECAP_DAY": ("mon", "tue", "wed", "thu", "fri", "sat",
                                                                      "sun")[tomorrow],
            "NOTIFIER_CONSUMER_GROUP": self.topics.notifier_group, "NOTIFIER_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "NOTIFIER_LEASE": "5", "NOTIFIER_RETRY_BASE": "0.2", "NOTIFIER_RETRY_MAX": "2",
            "NOTIFIER_SEND_POLL": "0.2", "NOTIFIER_CHART_DAYS": "30", "NOTIFIER_HTTP_PORT": str(self.ports["notifier"]),
            **(extra_env or {}),
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        ensure_topics(bootstrap, {self.topics.events: partitions, self.topics.scores: partitions,
                                  self.topics.dead_letters: 1}, timeout_s=30)

    # -- urls --------------------------------------------------------------------------------

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ingest']}"

    @property
    def scorer_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['scorer']}"

    @property
    def notifier_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['notifier']}"

    def ready_url(self, name: str) -> str:
        return {"ingest": f"{self.ingest_url}/readyz", "scorer": f"{self.scorer_url}/healthz",
                "notifier": f"{self.notifier_url}/healthz"}[name]

    # -- start, kill, stop -------------------------------------------------------------------

    def command(self, name: str) -> tuple[list[str], dict[str, str]]:
        python = sys.executable
        if name == "ingest":
            return ([python, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--bind",
                     f"127.0.0.1:{self.ports['ingest']}", "services.ingest.wsgi:app"],
                    {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "prometheus")})
        if name == "scorer":
            return [python, "-m", "services.cli", "scorer", "run", "--http-port", str(self.ports["scorer"])], self.env
        return [python, "-m", "services.cli", "notifier", "run"], self.env

    def start(self, name: str, wait: bool = True) -> subprocess.Popen:
        args, env = self.command(name)
        log = (self.workdir / f"{name}.log").open("ab")
        # A session of its own: a kill reaches gunicorn's workers too, and nothing else.
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   start_new_session=True)
        log.close()
        self.processes[name] = process
        if wait:
            self.wait_ready(name)
        return process

    def start_all(self, names=NAMES) -> None:
        for name in names:
            self.start(name, wait=False)
        for name in names:
            self.wait_ready(name)

    def wait_ready(self, name: str, timeout_s: float = 90) -> None:
        url = self.ready_url(name)

        def ready() -> bool:
            if self.processes[name].poll() is not None:
                raise AssertionError(f"{name} exited with {self.processes[name].returncode} at start-up:\n"
                                     + self.log_tail(name))
            return requests.get(url, timeout=3).status_code == 200

        wait_until(ready, timeout_s, f"{name} to be ready at {url}", interval_s=0.2,
                   retry_on=requests.RequestException, problems=lambda: self.log_tail(name))

    def kill(self, name: str) -> None:
        """SIGKILL the process (and, for ingest, its gunicorn workers): no clean shutdown."""
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        self.kills[name] += 1

    def restart(self, name: str) -> None:
        self.kill(name)
        self.start(name)

    def dead(self) -> dict[str, int]:
        """Services that exited on their own: {name: exit code}."""
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def pids(self, name: str) -> list[int]:
        """The process and, for gunicorn, its workers."""
        pid = self.processes[name].pid
        return [pid, *children(pid)]

    def log_tail(self, name: str, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return f"--- {name}.log\n" + (self.workdir / f"{name}.log").read_text(errors="replace")[-chars:]
        return f"--- {name}.log: none"

    def logs(self) -> str:
        return "\n".join(self.log_tail(name) for name in self.NAMES)


# -- departments -----------------------------------------------------------------------------


class Pace:
    """A shared budget of events a second for every sender; `release()` lifts it."""

    def __init__(self, per_second: float | None = None):
        self.per_second = per_second
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def release(self) -> None:
        self.per_second = None

    def take(self, count: int) -> None:
        """Wait for this sender's turn to post `count` events."""
        if not self.per_second:
            return
        with self._lock:
            now = time.monotonic()
            turn = max(self._next, now)
            self._next = turn + count / self.per_second
        if turn > now:
            time.sleep(turn - now)


@dataclass
class Outcome:
    """What the senders saw: accepted events in order, retries by reason, and any refusal that is final."""

    accepted: list[dict] = field(default_factory=list)
    retries: Counter = field(default_factory=Counter)
    refusals: list[str] = field(default_factory=list)
    requests: int = 0


class Departments:
    """Sender threads posting events in batches with their department's key, each batch retried until a 202.

    One thread per department (or, with `per_metric`, per metric: more at once, each
    metric's events still in order). A retry after a lost answer is safe (an event id
    is counted once), so every event is sent until ingest accepts it; a 4xx is a
    refusal that fails the run.
    """

    def __init__(self, ingest_url: str, keys: dict[str, str], events: list[dict], batch_size: int = 250,
                 pace: Pace | None = None, give_up_s: float = 180, per_metric: bool = False):
        self.ingest_url = ingest_url
        self.keys = keys
        self.batch_size = batch_size
        self.pace = pace or Pace()
        self.give_up_s = give_up_s
        if per_metric:
            self.groups: dict[str, list[dict]] = {}
            for event in events:
                self.groups.setdefault(event["metric"], []).append(event)
            self.senders = {metric: CATALOG.by_id[metric].department for metric in self.groups}
        else:
            self.groups = by_department(events)
            self.senders = {department: department for department in self.groups}
        self.outcomes = {name: Outcome() for name in self.groups}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send, args=(name,), name=f"sender-{name}", daemon=True)
                        for name in self.groups]
        self.stopping = threading.Event()
        self.started_at: float | None = None
        self.finished_at: float | None = None

    def start(self) -> "Departments":
        self.started_at = time.perf_counter()
        for thread in self.threads:
            thread.start()
        return self

    def join(self, timeout_s: float = 600) -> "Departments":
        deadline = time.monotonic() + timeout_s
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self.threads):
            raise AssertionError("the departments did not finish sending in time")
        self.finished_at = time.perf_counter()
        return self

    def run(self, timeout_s: float = 600) -> "Departments":
        return self.start().join(timeout_s)

    def stop(self) -> None:
        """Stop sending (what was not accepted yet is not sent)."""
        self.stopping.set()
        self.pace.release()

    def _send(self, name: str) -> None:
        client = IngestClient(self.ingest_url, self.keys[self.senders[name]], batch_size=self.batch_size,
                              retries=0, timeout_s=30)
        outcome = self.outcomes[name]
        events = self.groups[name]
        for start in range(0, len(events), self.batch_size):
            batch = events[start:start + self.batch_size]
            self.pace.take(len(batch))
            if self.stopping.is_set() or not self._post_until_accepted(client, batch, outcome):
                return
            with self.lock:
                outcome.accepted.extend(batch)

    def _post_until_accepted(self, client: IngestClient, batch: list[dict], outcome: Outcome) -> bool:
        deadline = time.monotonic() + self.give_up_s
        while time.monotonic() < deadline and not self.stopping.is_set():
            outcome.requests += 1
            try:
                response = client.post_batch(batch)
            except requests.RequestException as exc:
                outcome.retries[type(exc).__name__] += 1
                time.sleep(0.3)
                continue
            if response.status_code == 202:
                return True
            if response.status_code in (429, 502, 503, 504):
                outcome.retries[str(response.status_code)] += 1
                time.sleep(min(2.0, float(response.headers.get("Retry-After") or 0.5)))
                continue
            outcome.refusals.append(f"HTTP {response.status_code}: {response.text[:500]}")
            return False
        if not self.stopping.is_set():
            outcome.refusals.append(f"no 202 within {self.give_up_s}s")
        return False

    # -- what happened -------------------------------------------------------------------------

    def accepted_count(self) -> int:
        with self.lock:
            return sum(len(o.accepted) for o in self.outcomes.values())

    def accepted(self) -> list[dict]:
        """Every event that got a 202; each sender's in the order it was accepted."""
        with self.lock:
            return [event for outcome in self.outcomes.values() for event in outcome.accepted]

    def retries(self) -> Counter:
        total: Counter = Counter()
        for outcome in self.outcomes.values():
            total.update(outcome.retries)
        return total

    def refusals(self) -> list[str]:
        return [f"{d}: {r}" for d, o in self.outcomes.items() for r in o.refusals]


# -- reading the results -----------------------------------------------------------------------


def api_board(scorer_url: str, as_of: date) -> dict:
    response = requests.get(f"{scorer_url}/v1/scoreboard", params={"as_of": as_of.isoformat()}, timeout=30)
    response.raise_for_status()
    return response.json()


def write_events(events: list[dict], path: Path) -> Path:
    """A JSONL file of events, the input of the offline command."""
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
    return path


def offline_board(events_file: Path, as_of: date) -> dict:
    """`cityscore score --events FILE --as-of D --format json`, run as a process."""
    result = subprocess.run([sys.executable, "-m", "services.cli", "score", "--events", str(events_file),
                             "--as-of", as_of.isoformat(), "--format", "json"], cwd=ROOT, capture_output=True,
                            timeout=300)
    if result.returncode != 0:
        raise AssertionError(f"cityscore score failed: {result.stderr.decode()[-2000:]}")
    return orjson.loads(result.stdout)


class _BoardCells(HTMLParser):
    """The `data-score` of each score cell and CityScore tile of the board page."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], str] = {}
        self.shown: dict[tuple[str, str], str] = {}
        self._in: tuple[str, str] | None = None
        self._value = False

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if "data-metric" in values and "data-window" in values and "data-score" in values:
            self._in = (values["data-metric"], values["data-window"])
            self.cells[self._in] = values["data-score"]
        elif self._in and values.get("class") == "value":
            self._value = True

    def handle_endtag(self, tag):
        if tag in ("td", "li"):
            self._in = None
        if tag == "span":
            self._value = False

    def handle_data(self, data):
        if self._in and self._value and data.strip():
            self.shown[self._in] = self.shown.get(self._in, "") + data.strip()


def page_cells(scorer_url: str, as_of: date) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    """The board page's cells: {(metric or 'cityscore', window): data-score} and the figure shown."""
    response = requests.get(f"{scorer_url}/", params={"as_of": as_of.isoformat()}, timeout=30)
    response.raise_for_status()
    parser = _BoardCells()
    parser.feed(response.text)
    return parser.cells, parser.shown


class Lag:
    """How far consumer groups are behind, read from Kafka (one admin client and consumer, kept open)."""

    def __init__(self, bootstrap: str):
        from kafka import KafkaAdminClient, KafkaConsumer

        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, **kafka_security(), client_id="e2e-lag",
                                      request_timeout_ms=10000)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, **kafka_security(), group_id=None,
                                      enable_auto_commit=False)

    def of(self, group: str, topic: str) -> int:
        """Messages on `topic` that `group` has not committed yet."""
        from kafka import TopicPartition

        partitions = [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic) or ())]
        ends = self.consumer.end_offsets(partitions)
        committed = self.admin.list_group_offsets({group: None}).get(group, {})
        return sum(max(0, ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0
                                      else 0)) for tp in partitions)

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


def consumer_lag(bootstrap: str, group: str, topic: str) -> int:
    """Messages on `topic` the consumer group has not committed yet."""
    lag = Lag(bootstrap)
    try:
        return lag.of(group, topic)
    finally:
        lag.close()


# -- Slack -----------------------------------------------------------------------------------


def outbox_rows(engine) -> list:
    from shared.store.tables.notifier import OutboxMessage

    table = OutboxMessage.__table__
    with engine.connect() as conn:
        return conn.execute(sa.select(table.c.key, table.c.kind, table.c.status)).all()


@dataclass
class SlackAlert:
    metric: str
    window: str
    seq: int
    channel: str
    text: str

    @property
    def resolved(self) -> bool:
        return self.text.startswith("Resolved")


def slack_alerts(slack) -> list[SlackAlert]:
    """Every alert message in the fake Slack (top-level posts), as it reads now."""
    found = []
    for message in slack.all_messages():
        key = (message.get("metadata") or {}).get("event_payload", {}).get("key", "")
        parts = key.split(":")
        if len(parts) == 5 and parts[0] == "alert" and parts[4] == "post":
            found.append(SlackAlert(parts[1], parts[2], int(parts[3]), message["channel"], message["text"]))
    return found


def alert_problems(slack, board: dict, window: str = "week") -> list[str]:
    """Where Slack's alerts disagree with the final scores: an alert is open exactly for a score below target."""
    open_alerts: dict[str, list[SlackAlert]] = {}
    for alert in slack_alerts(slack):
        if alert.window == window and not alert.resolved:
            open_alerts.setdefault(alert.metric, []).append(alert)
    problems = []
    for metric, windows in board["metrics"].items():
        score = windows[window]["score"]
        alerts = open_alerts.get(metric, [])
        if len(alerts) > 1:
            problems.append(f"{metric}: {len(alerts)} open alerts in Slack")
        if score is None:
            continue  # no data: the alert stays as it was
        below = standing(score) == "below"
        if below and not alerts:
            problems.append(f"{metric}: {window} score {score:.4f} but no open alert in Slack")
        if not below and alerts:
            problems.append(f"{metric}: {window} score {score:.4f} but an open alert in Slack: {alerts[0].text}")
        if below and alerts and f"{window} score {score:.2f}" not in alerts[0].text:
            problems.append(f"{metric}: Slack shows {alerts[0].text!r}, the score is {score:.2f}")
    return problems
