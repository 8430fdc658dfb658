"""Fixtures the integration tests share: an empty migrated database and a stream of events
through Kafka into it (a module that needs another kind of `engine` defines its own, which
pytest prefers to these), and for the pages tests a headless browser and a folder for
screenshots, one of each per module."""

from __future__ import annotations

import pytest

from tests.helpers.ingest import fresh_database
from tests.helpers.scorer import Stream


@pytest.fixture
def engine(database_url):
    made = fresh_database(database_url)
    yield made
    made.dispose()


@pytest.fixture
def stream(kafka_bootstrap, engine):
    made = Stream(kafka_bootstrap, engine.url.render_as_string(hide_password=False), partitions=2)
    yield made
    made.close()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, one for each module of pages tests (tests/helpers/browser.py)."""
    from tests.helpers.browser import chromium

    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """A folder for a module's screenshots."""
    return tmp_path_factory.mktemp("screenshots")
