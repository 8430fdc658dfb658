"""Fixtures the integration tests share: an empty migrated database and a stream of events
through Kafka into it (a module that needs another kind of `engine` defines its own, which
pytest prefers to these), and for the pages tests a headless browser and a folder for
screenshots, one of each per module, and a folded history they publish their boards from."""

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


@pytest.fixture(scope="session")
def folded_history(tmp_path_factory):
    """A migrated SQLite database file with 120 generated days of Boston's events (seed 7, to
    30 June 2026) folded, made once per run: a pages module copies it and publishes its own board
    on the copy (folding the 220,000 events took each module about 15 s)."""
    from datetime import date

    from shared.core.catalog import load_catalog
    from shared.dev.generator import generate
    from shared.store.engine import make_engine, migrate
    from tests.helpers.score_parts import fold_in_batches

    path = tmp_path_factory.mktemp("history") / "scores.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    catalog = load_catalog()
    fold_in_batches(engine, catalog, generate(catalog, 120, 7, date(2026, 6, 30)))
    engine.dispose()  # the last connection closed: the file holds everything
    return path

