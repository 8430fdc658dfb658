"""A notifier wired to a test schema, the fake Slack server, and (optionally) real Kafka."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from services.notifier.consumer import consume, make_consumer
from services.notifier.main import build
from services.notifier.scheduler import NotifierScheduler
from services.notifier.settings import NotifierSettings
from shared.platform.clock import Clock
from shared.platform.settings import Settings
from tests.helpers.waiting import wait_until

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"

ROUTING = {
    "default_channel": "C0DEFAULT",
    "departments": {
        "public-works": {"channel": "C0PWD", "owners": ["U0PWD1", "U0PWD2"]},
        "police": {"channel": "C0BPD", "owners": ["U0BPD1"]},
        "boston-311": {"channel": "C0311", "owners": ["U0311"]},
    },
    "metrics": {"pothole-on-time": {"owners": ["U0POTHOLE"]}},
}


def notifier_settings(tmp_path: Path, slack, **overrides) -> NotifierSettings:
    routing = tmp_path / "routing.json"
    routing.write_text(json.dumps(ROUTING))
    values = dict(slack_bot_token=slack.token, slack_base_url=slack.base_url, slack_signing_secret=SECRET,
                  slack_timeout_s=2, slack_rate_limit_retries=2, mayor_channel="C0MAYOR", default_channel="C0DEFAULT",
                  routing_file=str(routing), public_board_url="https://cityscore.example/", quiet_hours="off",
                  retry_base_s=0.05, retry_max_s=0.5, lease_s=5.0, send_poll_s=0.05, chart_days=90,
                  # Off unless a test is about them: on by default in a city (their own tests say so),
                  # they would post a digest or print eleven PDFs into every other test's channels.
                  department_digest=False, packets=False)
    values.update(overrides)
    return NotifierSettings(**values)


class Harness:
    def __init__(self, schema, settings: NotifierSettings, clock: Clock | None = None,
                 kafka_bootstrap: str | None = None, topic: str = "unused") -> None:
        self.base = Settings(DATABASE_URL=schema.url, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap or "127.0.0.1:1",
                             CITYSCORE_SCORES_TOPIC=topic)
        self.runtime = build(self.base, settings, clock=clock, engine=schema.engine)
        # A clock the test gave moves only when the test moves it: so do the scheduled jobs.
        self.timer = clock is None
        self.notifier = self.runtime.notifier
        self.sender = self.runtime.sender
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.scheduler: NotifierScheduler | None = None
        self.consumer = None

    def start_sender(self) -> "Harness":
        thread = threading.Thread(target=self.sender.run, args=(self.stop_event, 0.05), daemon=True)
        thread.start()
        self.threads.append(thread)
        return self

    def start_consumer(self, group: str) -> "Harness":
        self.consumer = make_consumer(self.base.kafka_bootstrap_servers, self.base.scores_topic, group)
        thread = threading.Thread(target=consume, args=(self.consumer, self.notifier, self.stop_event, 100),
                                  daemon=True)
        thread.start()
        self.threads.append(thread)
        return self

    def start_scheduler(self) -> NotifierScheduler:
        self.scheduler = NotifierScheduler(self.notifier, self.runtime.engine, self.runtime.clock, timer=self.timer)
        self.scheduler.start()
        return self.scheduler

    def drain(self, timeout: float = 60.0) -> None:
        """Deliver until nothing is pending (in this thread)."""
        from services.notifier import outbox

        def delivered() -> bool:
            self.sender.deliver_due()
            with self.runtime.engine.connect() as conn:
                return not outbox.pending_keys(conn)

        wait_until(delivered, timeout, "the outbox to have nothing pending", interval_s=0.05)

    def stop(self) -> None:
        self.stop_event.set()
        self.sender.wake()
        for thread in self.threads:
            thread.join(timeout=10)
        if self.consumer is not None:
            self.consumer.close()
        if self.scheduler is not None:
            self.scheduler.shutdown()


def sign(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    from slack_sdk.signature import SignatureVerifier

    signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body.decode())
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded"}
