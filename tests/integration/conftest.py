"""Fixtures the integration tests share (the real servers themselves come from tests/conftest.py)."""

from __future__ import annotations

import pytest

from shared.dev import local_kafka
from tests.fakeslack.notifier_support import Schema

from .broker_support import OWN_BROKER_PORT


@pytest.fixture
def schema(database_url):
    created = Schema(database_url)
    try:
        yield created
    finally:
        created.drop()


@pytest.fixture
def own_broker():
    """A broker this test may kill (broker_support.kill_broker); fails (never skips) when none can be run.

    Always a local broker (shared.dev.local_kafka), even where the shared one comes from testcontainers:
    the test kills its process and starts it again on the same port with the same data.
    """
    started = local_kafka.start(port=OWN_BROKER_PORT, wait=120, fresh=True)
    assert started.started, (f"a broker was already running on port {OWN_BROKER_PORT}: stop it, or set "
                             "CITYSCORE_TEST_E2E_KAFKA_PORT to a free port")
    try:
        yield started.bootstrap_servers
    finally:
        local_kafka.stop(OWN_BROKER_PORT)
