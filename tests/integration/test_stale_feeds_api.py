"""Stale feeds from the read API on a real port over PostgreSQL (docs/scoring.md §4c).

The small catalog of tests/helpers/stale_feeds.py: calls stop after 3 February, inspections
come every third day, shootings set no expect_data, `never` sends nothing. The "feed" of every
metric must be `cityscore score`'s on the same events, for the board the scorer published
(as of the current day) and for boards scored on request, before and after the calls stop.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import date, datetime, timezone

import pytest

from services.scorer.app import create_app
from services.scorer.settings import ScorerSettings
from shared.core.contract import parse_event
from shared.store.published_scores import PublishedScores
from shared.store.score_reader import ScoreReader
from shared.store.score_writer import ScoreWriter
from tests.fakes.clock import ManualClock
from tests.helpers.ingest import fresh_database
from tests.helpers.stale_feeds import AS_OF, CATALOG, events, offline_board
from tests.helpers.serving import served

NOW = datetime(2026, 2, 11, 15, 0, tzinfo=timezone.utc)  # 10 AM in the city: the board is as of 10 February


@pytest.fixture(scope="module")
def server(database_url):
    engine = fresh_database(database_url)
    with engine.begin() as conn:
        ScoreWriter(engine, CATALOG).fold(conn, [parse_event(e) for e in events()])
    with engine.begin() as conn:
        PublishedScores(ScoreReader(engine, CATALOG)).rescore(conn, AS_OF)
    app = create_app(ScorerSettings(SCORER_READ_TIMEOUT=120), engine=engine, catalog=CATALOG, clock=ManualClock(NOW))
    with served(app, "stale-feeds-http") as url:
        yield url
    engine.dispose()


def feeds(body: dict) -> dict:
    return {metric_id: scores.get("feed") for metric_id, scores in body["metrics"].items()}


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        assert response.status == 200
        return json.loads(response.read())


def test_the_published_board_s_feeds_are_cityscore_score_s(server):
    body = get_json(f"{server}/v1/scoreboard")
    assert body["updated_at"] is not None  # the board the scorer published, not one scored on request
    assert feeds(body) == feeds(offline_board(AS_OF))
    assert body["metrics"]["calls"]["feed"] == {"last_data": "2026-02-03", "stale": True, "expected": "daily"}
    assert "feed" not in body["metrics"]["shootings"]


@pytest.mark.parametrize("as_of", [date(2026, 1, 1), date(2026, 2, 3), date(2026, 2, 4), date(2026, 2, 5),
                                   date(2026, 2, 9)])
def test_a_board_scored_on_request_has_cityscore_score_s_feeds(server, as_of):
    body = get_json(f"{server}/v1/scoreboard?as_of={as_of}")
    assert feeds(body) == feeds(offline_board(as_of))
    assert body["metrics"]["calls"]["feed"]["stale"] is (as_of >= date(2026, 2, 5))
