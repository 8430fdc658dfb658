"""Open data from the read API, on a real port over PostgreSQL: /v1/scoreboard.csv and /v1/scores.csv.

35 generated days of Boston's 23 metrics are folded and the board published as the
scorer would; the CSVs' header must be Boston's "Full Metric List" header and every
value the JSON board's of the same date, with the trailing windows Boston shipped in
2016 and the calendar windows it publishes today. A history has one row per metric per
as-of date; only the current as-of date's rows are flagged latest, in a history or a
board, so an export of the past has no latest run; its refusals name the field.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from services.scorer.app import MAX_HISTORY_DAYS, create_app
from services.scorer.settings import ScorerSettings
from shared.core.catalog import load_catalog
from shared.dev.generator import generate
from shared.store.published_scores import PublishedScores
from shared.store.score_reader import ScoreReader
from shared.store.tables.scorer import CurrentScore
from tests.fakes.clock import ManualClock
from tests.helpers.ingest import fresh_database
from tests.helpers.open_data import BOSTON_COLUMNS, assert_rows_equal_board, read_csv
from tests.helpers.score_parts import fold_in_batches
from tests.helpers.serving import served

BOSTON = load_catalog()
END = date(2026, 6, 30)
NOW = datetime(2026, 7, 1, 13, 30, tzinfo=timezone.utc)  # 9:30 AM in Boston: the board is as of yesterday
PUBLISHED = datetime(2026, 7, 1, 4, 0, 12, tzinfo=timezone.utc)  # the midnight rescore


CALENDAR = load_catalog("boston-calendar.yaml")  # Boston's calendar windows, as it publishes today


@pytest.fixture(scope="module")
def engine(database_url):
    """The events folded, as the scorer would have (the day totals are the same whatever the windows)."""
    made = fresh_database(database_url)
    fold_in_batches(made, BOSTON, generate(BOSTON, 35, 11, END))
    yield made
    made.dispose()


def publish(engine, catalog) -> None:
    """The board for END published with `catalog`'s windows, as its scorer would have."""
    with engine.begin() as conn:
        PublishedScores(ScoreReader(engine, catalog)).rescore(conn, END)
        conn.execute(update(CurrentScore.__table__).values(updated_at=PUBLISHED))


def serve(engine, catalog, **settings):
    app = create_app(ScorerSettings(**settings), engine=engine, catalog=catalog, clock=ManualClock(NOW))
    return served(app, "open-data-http")


@pytest.fixture(scope="module", params=[BOSTON, CALENDAR], ids=["trailing", "calendar"])
def server(request, engine):
    publish(engine, request.param)
    # A generous read bound: these tests are about what is answered, not how fast (bench/ times it).
    with serve(engine, request.param, SCORER_READ_TIMEOUT=120) as base:
        yield base, request.param


def get(url: str):
    """(status, headers, body text) of a GET, refusals included."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.headers, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode("utf-8")


def get_json(url: str) -> dict:
    status, _, body = get(url)
    assert status == 200, body[:300]
    return json.loads(body)


def get_csv(url: str):
    status, headers, body = get(url)
    assert status == 200, body[:300]
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    header, rows = read_csv(body)
    assert header == BOSTON_COLUMNS
    return headers, rows


def test_the_published_board_as_csv_is_the_jsons(server):
    base, catalog = server
    headers, rows = get_csv(f"{base}/v1/scoreboard.csv")
    board = get_json(f"{base}/v1/scoreboard")
    assert board["as_of"] == END.isoformat() and board["updated_at"] is not None
    assert_rows_equal_board(rows, board, catalog)
    assert {row["latest_score_flag"] for row in rows} == {"1"}
    # Calculated when the scorer published the board, written in Boston's time.
    assert {row["score_calculated_ts"] for row in rows} == {"2026-07-01T00:00:12-04:00"}
    assert datetime.fromisoformat(rows[0]["score_calculated_ts"]) == datetime.fromisoformat(board["updated_at"])
    assert headers["Content-Disposition"] == f'attachment; filename="boston-cityscore-{END}.csv"'


@pytest.mark.parametrize("as_of", [END - timedelta(days=1), END - timedelta(days=9), END + timedelta(days=1)])
def test_a_board_scored_on_request_as_csv_is_the_jsons(server, as_of):
    base, catalog = server
    headers, rows = get_csv(f"{base}/v1/scoreboard.csv?as_of={as_of}")
    assert_rows_equal_board(rows, get_json(f"{base}/v1/scoreboard?as_of={as_of}"), catalog)
    assert {row["score_calculated_ts"] for row in rows} == {NOW.astimezone(BOSTON.zone).isoformat()}
    # Not the latest scores: those are END's (the current as-of date), whether before or after it.
    assert {row["latest_score_flag"] for row in rows} == {"0"}
    assert f'filename="boston-cityscore-{as_of}.csv"' in headers["Content-Disposition"]


def test_the_history_has_one_row_per_metric_per_date_each_the_jsons(server):
    base, catalog = server
    start = END - timedelta(days=13)  # two calendar weeks, across the turn of a month in the calendar's quarter
    headers, rows = get_csv(f"{base}/v1/scores.csv?from={start}&to={END}")
    per_day = len(catalog.metrics)
    assert len(rows) == 14 * per_day
    assert [row["latest_score_flag"] for row in rows] == ["0"] * 13 * per_day + ["1"] * per_day
    for index in range(14):
        as_of = start + timedelta(days=index)
        block = rows[index * per_day:(index + 1) * per_day]
        assert_rows_equal_board(block, get_json(f"{base}/v1/scoreboard?as_of={as_of}"), catalog)
    assert headers["Content-Disposition"] == f'attachment; filename="boston-cityscore-{start}-to-{END}.csv"'


def test_a_history_of_one_day_is_that_days_board(server):
    base, catalog = server
    day = END - timedelta(days=4)
    _, rows = get_csv(f"{base}/v1/scores.csv?from={day}&to={day}")
    # A past day's board, not the latest: a portal loading this beside today's export finds one latest run.
    assert {row["latest_score_flag"] for row in rows} == {"0"}
    assert_rows_equal_board(rows, get_json(f"{base}/v1/scoreboard?as_of={day}"), catalog)


def test_a_history_past_the_current_date_flags_only_the_current_dates_rows(server):
    base, catalog = server
    start = END - timedelta(days=2)
    _, rows = get_csv(f"{base}/v1/scores.csv?from={start}&to={END + timedelta(days=1)}")  # to today
    per_day = len(catalog.metrics)
    assert [row["latest_score_flag"] for row in rows] == ["0"] * 2 * per_day + ["1"] * per_day + ["0"] * per_day


def refusals(url: str) -> dict[str, str]:
    status, headers, body = get(url)
    assert status == 400, (status, body[:300])
    assert headers["Content-Type"].startswith("application/json")
    return {problem["field"]: problem["reason"] for problem in json.loads(body)["errors"]}


def test_the_histories_refusals_name_the_field_and_the_reason(server, engine):
    base, _ = server
    with engine.connect() as conn:
        first = min(ScoreReader(engine, BOSTON).first_days(conn).values())
    assert (END - first).days > MAX_HISTORY_DAYS  # the trend metrics' past years: a long range is in the data
    path = f"{base}/v1/scores.csv"
    assert refusals(path) == {"from": "required: a date written YYYY-MM-DD", "to": "required: a date written YYYY-MM-DD"}
    assert refusals(f"{path}?from={END}") == {"to": "required: a date written YYYY-MM-DD"}
    assert refusals(f"{path}?from=30/06/2026&to={END}") == {"from": "'30/06/2026' is not YYYY-MM-DD"}
    assert refusals(f"{path}?from={END}&to=2026-06-31") == {"to": "'2026-06-31' is not YYYY-MM-DD"}
    assert refusals(f"{path}?from={END}&to={END - timedelta(days=1)}") == {
        "to": f"must be on or after from ({END})"}
    too_long = END - timedelta(days=MAX_HISTORY_DAYS)
    reason = refusals(f"{path}?from={too_long}&to={END}")["from"]
    assert f"at most {MAX_HISTORY_DAYS}" in reason and str(MAX_HISTORY_DAYS + 1) in reason, reason
    outside = refusals(f"{path}?from={first - timedelta(days=1)}&to={END + timedelta(days=2)}")
    assert set(outside) == {"from", "to"}
    assert all(str(first) in reason and str(END + timedelta(days=1)) in reason for reason in outside.values())
    # The longest range allowed is answered.
    status, _, _ = get(f"{path}?from={END - timedelta(days=MAX_HISTORY_DAYS - 1)}&to={END}")
    assert status == 200


@pytest.mark.parametrize("as_of, reason", [("30/06/2026", "is not YYYY-MM-DD"), ("5000-01-01", "(today)")])
def test_the_boards_csv_refuses_what_the_json_refuses(server, as_of, reason):
    base, _ = server
    for path in ("/v1/scoreboard", "/v1/scoreboard.csv"):
        refused = refusals(f"{base}{path}?as_of={as_of}")
        assert set(refused) == {"as_of"} and reason in refused["as_of"], (path, refused)


def test_a_history_past_the_read_timeout_answers_503(engine):
    publish(engine, BOSTON)
    with serve(engine, BOSTON, SCORER_READ_TIMEOUT=1e-6) as base:
        status, headers, body = get(f"{base}/v1/scores.csv?from={END - timedelta(days=90)}&to={END}")
    assert status == 503 and "SCORER_READ_TIMEOUT" in json.loads(body)["error"] and headers["Retry-After"]
