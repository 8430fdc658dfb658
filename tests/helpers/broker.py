"""A Kafka broker of a test's own, on a port of its own, that the test may kill and start again."""

from __future__ import annotations

import json
import os
import signal

from shared.dev import local_kafka

from tests.helpers.waiting import wait_until

OWN_BROKER_PORT = int(os.environ.get("CITYSCORE_TEST_E2E_KAFKA_PORT", "19492"))


def kill_broker(port: int = OWN_BROKER_PORT) -> None:
    """SIGKILL the broker on `port` (no clean shutdown: Kafka recovers its logs on the next start)."""
    state = json.loads((local_kafka.state_dir(port) / "state.json").read_text())
    os.kill(state["pid"], signal.SIGKILL)
    # A dying broker may answer its readiness probe with an error: that is "not yet".
    wait_until(lambda: local_kafka.status(port)["running"] is False, 30, "the broker to die", interval_s=0.1,
               retry_on=Exception)
    local_kafka.stop(port)  # forgets the dead process


def start_broker_again(port: int = OWN_BROKER_PORT) -> None:
    """The killed broker back on the same port, with the same data."""
    local_kafka.start(port=port, wait=120)
