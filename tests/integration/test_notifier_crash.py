"""The notifier killed with SIGKILL mid-send, twice, and restarted: every message exactly once.

The notifier runs as a real process (`python -m services.notifier run`) against real
Kafka, a PostgreSQL schema of its own and the fake Slack server. Each kill lands in
the worst window: Slack has accepted the post (or the file) but the notifier has not
yet recorded it. The restarted process must find it in the channel or thread by its
outbox key instead of posting again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from shared.store.tables.notifier import Alert, OutboxMessage
from services.notifier.settings import WEEKDAYS
from shared.core.catalog import load_catalog
from shared.platform.kafka import ensure_topics
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier_harness import ROUTING, SECRET
from tests.helpers.waiting import wait_until
from tests.helpers.notifier import Changes, seed_scores
from tests.integration.test_notifier import publish

REPO = Path(__file__).resolve().parents[2]


def start(env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "services.notifier", "run"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("ab"))


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def outbox(engine):
    with engine.connect() as conn:
        return conn.execute(select(OutboxMessage.__table__).order_by(OutboxMessage.id)).all()


def alerts(engine):
    with engine.connect() as conn:
        return conn.execute(select(Alert.__table__)).all()


def test_sigkill_mid_send_and_restart_deliver_every_message_exactly_once(schema, kafka_bootstrap, tmp_path):
    topic = f"cityscore.scores.crash-{uuid.uuid4().hex[:10]}"
    ensure_topics(kafka_bootstrap, {topic: 3})
    routing = tmp_path / "routing.json"
    routing.write_text(json.dumps(ROUTING))
    today = datetime.now(ZoneInfo("America/New_York"))
    weekday = WEEKDAYS[today.weekday()]
    # Scores for yesterday, as the scorer would have written them: the board has figures to post.
    seed_scores(schema.engine, load_catalog(), today.date() - timedelta(days=1))
    log = tmp_path / "notifier.log"
    with FakeSlack() as slack:
        env = {**os.environ, "PYTHONPATH": str(REPO), "DATABASE_URL": schema.url,
               "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CITYSCORE_SCORES_TOPIC": topic,
               "CITYSCORE_TOPIC_PARTITIONS": "3", "NOTIFIER_CONSUMER_GROUP": f"notifier-crash-{uuid.uuid4().hex[:8]}",
               "SLACK_BOT_TOKEN": slack.token, "SLACK_BASE_URL": slack.base_url, "SLACK_SIGNING_SECRET": SECRET,
               "SLACK_TIMEOUT": "30", "NOTIFIER_ROUTING": str(routing), "NOTIFIER_MAYOR_CHANNEL": "C0MAYOR",
               "NOTIFIER_QUIET_HOURS": "off", "NOTIFIER_FIRE_AFTER": "1", "NOTIFIER_RESOLVE_AFTER": "1",
               "NOTIFIER_LEASE": "3", "NOTIFIER_RETRY_BASE": "0.1", "NOTIFIER_RETRY_MAX": "1",
               "NOTIFIER_SEND_POLL": "0.1", "NOTIFIER_HTTP_PORT": "0",
               # a killed process's partitions go to the next one sooner than Kafka's 45 s default
               "NOTIFIER_KAFKA_SESSION_TIMEOUT_MS": "6000",
               # the board and the recap are due at once, so the process has a board and a file to send
               "NOTIFIER_BOARD_TIME": "00:00", "NOTIFIER_RECAP_TIME": "00:00", "NOTIFIER_RECAP_DAY": weekday,
               "NOTIFIER_CHART_DAYS": "30"}
        # First kill: Slack posts the first message (the board) but the answer never comes back.
        slack.fail_next(1, "hang", {"chat.postMessage"}, hang_s=20)
        process = start(env, log)
        try:
            change = Changes()
            metrics = ["pothole-on-time", "graffiti-on-time", "shootings", "homicides", "311-call-center",
                       "library-users"]
            publish(kafka_bootstrap, topic, [change(metric, 0.7) for metric in metrics])
            wait_until(lambda: any(c.fault == "hang" for c in slack.calls), 90, "the board's post to hang",
                       interval_s=0.05, problems=log.read_text)
            # (the hang lasts 20 s: time for the consumer to apply the changes before the kill)
            wait_until(lambda: len(alerts(schema.engine)) == 6, 18, "the alerts to fire")
            kill(process)
            assert len(slack.messages("C0MAYOR")) == 1  # in Slack, not yet recorded by the notifier

            # Second kill: the chart upload is accepted by Slack, the answer lost.
            slack.fail_next(1, "hang", {"files.completeUploadExternal"}, hang_s=20)
            process = start(env, log)
            wait_until(lambda: sum(c.fault == "hang" for c in slack.calls) == 2, 90, "the chart's upload to hang",
                       interval_s=0.05, problems=log.read_text)
            kill(process)

            # Third run: finishes everything; more changes arrive meanwhile (edits, replies, resolutions).
            process = start(env, log)
            publish(kafka_bootstrap, topic, [change(metric, 0.55) for metric in metrics[:3]]
                    + [change(metric, 1.2) for metric in metrics[3:]])
            wait_until(lambda: len(outbox(schema.engine)) >= 2 + 6 + 3 * 2 + 3 * 2
                       and all(row.status == "sent" for row in outbox(schema.engine)), 120,
                       "every message sent")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
        finally:
            if process.poll() is None:
                kill(process)

        counts = Counter(slack.outbox_keys())
        assert [key for key, n in counts.items() if n > 1] == [], log.read_text()[-5000:]
        rows = outbox(schema.engine)
        assert set(counts) == {row.key for row in rows if row.kind == "post"}
        mayor = slack.messages("C0MAYOR")
        assert len(mayor) == 2  # the board and the recap
        board = next(m for m in mayor if "CityScore —" in m["text"])
        assert len([m for m in slack.thread("C0MAYOR", board["ts"]) if m.get("files")]) == 1
        posted = [m for channel in ("C0PWD", "C0BPD", "C0311", "C0DEFAULT") for m in slack.messages(channel)]
        assert len(posted) == 6
        resolved = [m for m in posted if m["text"].startswith("Resolved")]
        assert len(resolved) == 3
        assert slack.calls_to("conversations.history") and slack.calls_to("conversations.replies")
        text = log.read_text()
        assert "found a message from an earlier attempt" in text  # the board, after the first kill
        assert "found an upload from an earlier attempt" in text  # the chart, after the second
