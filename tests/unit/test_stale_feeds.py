"""Stale feeds (docs/scoring.md §4c): the catalog's `expect_data`, the rule at its edges, and the
same "feed" from `cityscore score` and the read API (SQLite here; PostgreSQL in
tests/integration/test_stale_feeds_api.py), with the board page, the metric page and the Slack
board marking a stale metric "no data since …"."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from services.notifier.blocks import board_message
from services.scorer.app import create_app
from shared.core.catalog import CatalogError, load_catalog, parse_catalog
from shared.core.staleness import FeedStatus, feed_status, last_day_with_data, no_data_words, stale_marks
from shared.store.score_reader import ScoreReader
from tests.fakes.clock import ManualClock
from tests.helpers.stale_feeds import AS_OF, CATALOG, catalog_data, events, offline_board
from tests.helpers.score_parts import sqlite_scores
from tests.helpers.statements import statements_run

CALLS, INSPECTIONS, SHOOTINGS = (CATALOG.by_id[m] for m in ("calls", "inspections", "shootings"))


# -- the catalog ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["weekly", 0, -6, 2.5, True, "48"])
def test_expect_data_refuses_anything_but_daily_or_whole_hours_naming_the_metric(value):
    with pytest.raises(CatalogError) as refused:
        parse_catalog(catalog_data(expect_data=value))
    assert refused.value.problems == [
        f"metrics[0] (calls).expect_data: {value!r}: give 'daily' or a whole number of hours above 0 (e.g. 48)"]


def test_expect_data_is_optional_and_unset_means_never_stale():
    assert SHOOTINGS.expect_data is None
    assert feed_status(SHOOTINGS, None, AS_OF) is None
    assert INSPECTIONS.expect_data == 48 and CALLS.expect_data == "daily"


def test_boston_expects_daily_data_only_where_a_quiet_day_means_a_broken_feed():
    boston = load_catalog()
    assert {m.id for m in boston.metrics if m.expect_data is not None} == {
        "311-call-center", "bfd-incidents", "bfd-response-time", "ems-response-time", "part-1-crimes"}
    assert all(boston.by_id[m].expect_data is None for m in ("shootings", "homicides", "stabbings"))


# -- the rule at its edges --------------------------------------------------------------------


def test_daily_forgives_a_quiet_as_of_day_and_is_stale_when_the_day_before_is_quiet_too():
    assert feed_status(CALLS, AS_OF, AS_OF) == FeedStatus(AS_OF, False, "daily")
    assert feed_status(CALLS, AS_OF - timedelta(days=1), AS_OF) == FeedStatus(AS_OF - timedelta(days=1), False, "daily")
    assert feed_status(CALLS, AS_OF - timedelta(days=2), AS_OF) == FeedStatus(AS_OF - timedelta(days=2), True, "daily")


def test_every_48_hours_is_stale_after_three_quiet_days():
    assert not feed_status(INSPECTIONS, AS_OF - timedelta(days=2), AS_OF).stale
    stale = feed_status(INSPECTIONS, AS_OF - timedelta(days=3), AS_OF)
    assert stale.stale and stale.expected == "every 48 hours"


def test_hours_between_whole_days_round_the_quiet_up_to_the_next_day():
    every_36 = parse_catalog(catalog_data(expect_data=36)).by_id["calls"]
    assert not feed_status(every_36, AS_OF - timedelta(days=1), AS_OF).stale  # 24 hours quiet
    assert feed_status(every_36, AS_OF - timedelta(days=2), AS_OF).stale  # 48 hours quiet


def test_no_data_ever_is_stale():
    assert feed_status(CALLS, None, AS_OF) == FeedStatus(None, True, "daily")


def test_a_last_day_after_the_as_of_day_is_refused():
    with pytest.raises(ValueError, match="after the as-of day"):
        feed_status(CALLS, AS_OF + timedelta(days=1), AS_OF)


def test_the_last_day_with_data_ignores_days_after_the_as_of_day():
    days = [date(2026, 2, 1), date(2026, 2, 3), date(2026, 2, 12)]
    assert last_day_with_data(days, AS_OF) == date(2026, 2, 3)
    assert last_day_with_data(days, date(2026, 1, 31)) is None


def test_the_words_name_the_last_day_with_data():
    assert no_data_words(FeedStatus(date(2026, 2, 3), True, "daily"), AS_OF) == "no data since 3 February"
    assert no_data_words(FeedStatus(date(2025, 12, 30), True, "daily"), AS_OF) == "no data since 30 December 2025"
    assert no_data_words(FeedStatus(None, True, "daily"), AS_OF) == "no data yet"
    assert stale_marks(CATALOG.metrics, None, AS_OF) == {}


# -- the same feed from files and from the database --------------------------------------------


NOW = datetime(2026, 2, 11, 15, 0, tzinfo=timezone.utc)  # the board is as of 10 February


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    engine = sqlite_scores(tmp_path_factory.mktemp('stale') / "scores.db", CATALOG, events())
    app = create_app(engine=engine, catalog=CATALOG, clock=ManualClock(NOW))
    yield app.test_client(), ScoreReader(engine, CATALOG)
    engine.dispose()


def test_cityscore_score_says_each_expected_feed(client):
    metrics = offline_board(AS_OF)["metrics"]
    assert metrics["calls"]["feed"] == {"last_data": "2026-02-03", "stale": True, "expected": "daily"}
    assert metrics["inspections"]["feed"] == {"last_data": "2026-02-09", "stale": False, "expected": "every 48 hours"}
    assert metrics["never"]["feed"] == {"last_data": None, "stale": True, "expected": "daily"}
    assert "feed" not in metrics["shootings"]


@pytest.mark.parametrize("as_of", [date(2026, 2, 4), date(2026, 2, 5), date(2026, 2, 10), date(2026, 1, 1)])
def test_the_read_api_s_feed_is_cityscore_score_s(client, as_of):
    http, _ = client
    answer = http.get(f"/v1/scoreboard?as_of={as_of}")
    assert answer.status_code == 200
    api, offline = answer.get_json()["metrics"], offline_board(as_of)["metrics"]
    assert {m: api[m].get("feed") for m in api} == {m: offline[m].get("feed") for m in offline}
    assert api["calls"]["feed"]["stale"] is (as_of >= date(2026, 2, 5))


def test_the_board_marks_a_stale_metric_with_its_last_day_of_data(client):
    http, _ = client
    html = http.get("/").get_data(as_text=True)
    row = html[html.index('<tr data-metric="calls">'):]
    row = row[:row.index("</tr>")]
    assert 'class="stale"' in row and "No data since 3 February" in row
    fresh = html[html.index('<tr data-metric="inspections">'):]
    assert "No data since" not in fresh[:fresh.index("</tr>")]


def test_the_metric_page_marks_a_stale_feed_and_says_what_is_expected(client):
    http, _ = client
    html = http.get("/metric/calls").get_data(as_text=True)
    assert "No data since 3 February" in html and "data is expected daily" in html
    assert "No data since" not in http.get("/metric/inspections").get_data(as_text=True)


def test_the_slack_board_says_no_data_since_beside_the_metric(client):
    _, reader = client
    board = reader.scoreboard(AS_OF)._replace(last_data=reader.last_data(AS_OF))
    message = board_message(board, None, CATALOG, "https://example.org/", chart=False)
    table = next(block for block in message["blocks"] if block["type"] == "table")
    names = {row[0]["text"] for row in table["rows"][1:]}
    assert "Calls Answered · no data since 3 February" in names
    assert "Inspections On Time" in names and "Never Sent · no data yet" in names


def test_a_catalog_where_no_metric_expects_data_reads_no_last_days(client, tmp_path):
    """The notifier's board, slash command and feed check ask for the last days unguarded: with no
    metric's expect_data set, the reader answers nothing without a query."""
    _, reader = client
    assert set(reader.last_data(AS_OF)) == {m.id for m in CATALOG.metrics if m.expect_data is not None}
    quiet = catalog_data()
    for metric in quiet["metrics"]:
        metric.pop("expect_data", None)
    unexpecting = ScoreReader(reader.engine, parse_catalog(quiet, "test"))
    with statements_run(reader.engine) as statements:
        assert unexpecting.last_data(AS_OF) == {}
    assert statements == []
