"""The real notifier's /healthz and /readyz, against real Kafka, PostgreSQL and the fake Slack.

The notifier runs as a process (`python -m services.notifier run`), as in production.
Readiness asks Slack whether the bot token still works: revoked, it answers 503 with
Slack's reason. Health follows the consumer and the sender threads: a consumer that
stops (here held on a database lock that never comes free) answers 503 naming it,
and 200 again once it moves on.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from shared.store.tables.notifier import AlertTrack
from shared.platform.kafka import ensure_topics
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier_harness import ROUTING, SECRET
from tests.helpers.waiting import wait_until
from tests.helpers.notifier import Changes
from tests.integration.test_notifier import publish

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def notifier(schema, kafka_bootstrap, slack, tmp_path):
    """A running notifier process; yields (its base URL, the scores topic)."""
    topic = f"cityscore.scores.health-{uuid.uuid4().hex[:10]}"
    ensure_topics(kafka_bootstrap, {topic: 1})
    routing = tmp_path / "routing.json"
    routing.write_text(json.dumps(ROUTING))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "DATABASE_URL": schema.url,
           "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CITYSCORE_SCORES_TOPIC": topic,
           "CITYSCORE_TOPIC_PARTITIONS": "1", "NOTIFIER_CONSUMER_GROUP": f"notifier-health-{uuid.uuid4().hex[:8]}",
           "SLACK_BOT_TOKEN": slack.token, "SLACK_BASE_URL": slack.base_url, "SLACK_SIGNING_SECRET": SECRET,
           "NOTIFIER_ROUTING": str(routing), "NOTIFIER_QUIET_HOURS": "off", "NOTIFIER_SEND_POLL": "0.1",
           "NOTIFIER_HTTP_PORT": str(port), "NOTIFIER_KAFKA_SESSION_TIMEOUT_MS": "6000",
           # short enough for a test to see a stall and a revoked token
           "NOTIFIER_STALL_AFTER": "3", "NOTIFIER_SLACK_AUTH_CHECK_EVERY": "0.5"}
    log = tmp_path / "notifier.log"
    process = subprocess.Popen([sys.executable, "-m", "services.notifier", "run"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=log.open("ab"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is None and status(base, "/readyz") == 200, 120,
                   "the notifier to be ready", problems=lambda: f"its log:\n{log.read_text() if log.exists() else ''}")
        yield base, topic
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def get(base: str, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(base + path, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def status(base: str, path: str) -> int | None:
    try:
        return get(base, path)[0]
    except OSError:  # not listening yet
        return None


def test_a_revoked_slack_token_makes_the_notifier_not_ready_saying_why(notifier, slack):
    base, _ = notifier
    code, ready = get(base, "/readyz")
    assert code == 200 and ready["checks"]["slack"] is True
    assert slack.calls_to("auth.test")

    slack.revoke()
    wait_until(lambda: status(base, "/readyz") == 503, 30, "/readyz to notice the revoked token")
    code, answer = get(base, "/readyz")
    assert code == 503
    assert answer["checks"]["slack"] is False
    assert answer["problems"] == {"slack": "token_revoked"}
    assert answer["checks"]["database"] is True and answer["checks"]["kafka"] is True
    assert status(base, "/healthz") == 200  # alive: a new token, not a restart, is what it needs


def test_a_stopped_consumer_makes_the_notifier_unhealthy_naming_it(notifier, schema, kafka_bootstrap):
    base, topic = notifier
    assert get(base, "/healthz") == (200, {"status": "ok"})

    # Hold the table the consumer writes every score change to: its thread stops there.
    blocker = sa.create_engine(schema.url)
    try:
        with blocker.connect() as conn:
            conn.execute(sa.text("LOCK TABLE notifier_alert_tracks IN ACCESS EXCLUSIVE MODE"))
            change = Changes()("pothole-on-time", 0.7)
            publish(kafka_bootstrap, topic, [change])
            wait_until(lambda: status(base, "/healthz") == 503, 60, "/healthz to notice the stall")
            code, answer = get(base, "/healthz")
            assert code == 503 and answer["status"] == "unhealthy"
            assert set(answer["problems"]) == {"consumer"}  # the sender still comes round
            assert answer["problems"]["consumer"].startswith("stalled: no progress for")
            conn.rollback()  # the lock goes
        wait_until(lambda: status(base, "/healthz") == 200, 60, "/healthz to recover")
        with schema.engine.connect() as conn:  # and the change it held was applied
            assert conn.scalar(select(AlertTrack.score).where(AlertTrack.metric == "pothole-on-time",
                                                             AlertTrack.window == "week")) == 0.7
    finally:
        blocker.dispose()
