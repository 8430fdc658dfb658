"""The read API's bounds against the real app and a real database (PostgreSQL and SQLite).

An `as_of` outside the data's range (before the first day any metric has data, or after
today) and a `days` out of range are refused at once with the field named, instead of
scoring centuries of empty trend baselines (minutes of CPU for as_of=5000-01-01) or
failing on date arithmetic (a 500 for as_of=0001-01-05). A score computed on request has
a time bound (SCORER_READ_TIMEOUT): past it the API answers 503 saying so.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import text

from services.scorer.app import MAX_HISTORY_DAYS, create_app
from shared.core.catalog import load_catalog
from shared.core.contract import parse_event
from shared.store.published_scores import PublishedScores
from shared.store.score_reader import ScoreReader
from shared.store.score_writer import ScoreWriter
from services.scorer.settings import ScorerSettings

from tests.helpers.ingest import fresh_database
from tests.helpers.scorer import clock_for
from tests.helpers.statements import statements_run

CATALOG = load_catalog()
END = date(2026, 6, 30)  # the clock makes it 'yesterday': the current as-of day
TODAY = END + timedelta(days=1)  # the last as_of the API answers for
FIRST = date(2024, 6, 20)  # the first day with data (a shooting)


def at(day: date, hour: int) -> str:
    return datetime(day.year, day.month, day.day, hour, tzinfo=CATALOG.zone).isoformat()


def events() -> list[dict]:
    """Shootings in three years (a trend metric with a past) and a pothole case."""
    shootings = [{"event_id": f"bpd-{day}", "type": "incident", "metric": "shootings", "occurred_at": at(day, 22)}
                 for day in (FIRST, date(2025, 6, 22), date(2026, 6, 25))]
    return [*shootings, {"event_id": "311-1", "type": "case", "metric": "pothole-on-time", "case_id": "311-1",
                         "opened_at": at(END - timedelta(days=1), 9), "closed_at": at(END, 12)}]


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    url = request.getfixturevalue("database_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/s.db"
    made = fresh_database(url)
    yield made
    made.dispose()


def scored(engine) -> ScoreReader:
    """The events folded and their scores published, as the scorer would have; the reader over them."""
    reader = ScoreReader(engine, CATALOG)
    with engine.begin() as conn:
        ScoreWriter(engine, CATALOG).fold(conn, [parse_event(e) for e in events()])
        PublishedScores(reader).rescore(conn, END)
    return reader


@pytest.fixture
def store(engine):
    return scored(engine)


def client_for(engine, **settings):
    return create_app(ScorerSettings(**settings), engine=engine, catalog=CATALOG, clock=clock_for(END)).test_client()


@pytest.fixture
def client(store):
    return client_for(store.engine)


def refused_field(response) -> dict:
    assert response.status_code == 400, (response.status_code, response.get_data(as_text=True)[:300])
    body = response.get_json()
    (problem,) = body["errors"]
    return problem


OUTSIDE = ["5000-01-01", "0001-01-05", "0001-01-01", "9999-12-31", (TODAY + timedelta(days=1)).isoformat(),
           (FIRST - timedelta(days=1)).isoformat()]


@pytest.mark.timeout(10)  # today's code scores 3,000 years of baselines for minutes: fail, do not wait
def test_history_of_a_trend_metric_far_in_the_future_is_refused_at_once(client):
    problem = refused_field(client.get("/v1/metrics/shootings/history?days=730&as_of=5000-01-01"))
    assert problem["field"] == "as_of"
    assert FIRST.isoformat() in problem["reason"] and TODAY.isoformat() in problem["reason"], problem


@pytest.mark.timeout(20)
@pytest.mark.parametrize("path", ["/v1/scoreboard", "/v1/metrics/shootings/history?days=730&",
                                  "/v1/metrics/pothole-on-time/history?"])
@pytest.mark.parametrize("as_of", OUTSIDE)
def test_as_of_outside_the_datas_range_is_refused_naming_the_field_and_the_range(client, path, as_of):
    joiner = "?" if "?" not in path else ""
    problem = refused_field(client.get(f"{path}{joiner}as_of={as_of}"))
    assert problem["field"] == "as_of"
    assert FIRST.isoformat() in problem["reason"] and TODAY.isoformat() in problem["reason"], problem


@pytest.mark.parametrize("as_of", [FIRST, END, TODAY])
def test_as_of_within_the_range_is_answered(client, as_of):
    board = client.get(f"/v1/scoreboard?as_of={as_of}")
    assert board.status_code == 200 and board.json["as_of"] == as_of.isoformat()
    history = client.get(f"/v1/metrics/shootings/history?days={MAX_HISTORY_DAYS}&as_of={as_of}")
    assert history.status_code == 200
    assert len(history.json["history"]) == MAX_HISTORY_DAYS and history.json["history"][-1]["as_of"] == str(as_of)


@pytest.mark.parametrize("days", ["0", "-1", str(MAX_HISTORY_DAYS + 1), "100000000000000000000", "x", "7.5"])
def test_days_out_of_range_is_refused_naming_the_field(client, days):
    problem = refused_field(client.get(f"/v1/metrics/shootings/history?days={days}&as_of={END}"))
    assert problem["field"] == "days" and str(MAX_HISTORY_DAYS) in problem["reason"], problem


@pytest.mark.timeout(20)
@pytest.mark.parametrize("path", ["/", "/metric/shootings", "/metric/pothole-on-time"])
@pytest.mark.parametrize("as_of", ["5000-01-01", "0001-01-05", (FIRST - timedelta(days=1)).isoformat()])
def test_pages_refuse_an_as_of_outside_the_datas_range(client, path, as_of):
    response = client.get(f"{path}?as_of={as_of}")
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert ("no scores before" in response.get_data(as_text=True)
            or "no scores after" in response.get_data(as_text=True))


def test_the_board_offers_no_day_before_the_first_with_data(client):
    html = client.get(f"/?as_of={FIRST}").get_data(as_text=True)
    assert f'min="{FIRST}"' in html
    assert 'rel="prev"' not in html  # the day before has no data: no link to a refusal
    assert 'rel="prev"' in client.get(f"/?as_of={FIRST + timedelta(days=1)}").get_data(as_text=True)


def test_with_no_data_yet_only_the_current_days_are_answered(engine):
    client = client_for(engine)
    assert client.get(f"/v1/scoreboard?as_of={END}").status_code == 200
    assert client.get(f"/v1/scoreboard?as_of={TODAY}").status_code == 200
    problem = refused_field(client.get(f"/v1/scoreboard?as_of={END - timedelta(days=1)}"))
    assert problem["field"] == "as_of" and "no data yet" in problem["reason"], problem


def test_scoring_on_request_past_its_time_bound_answers_503(store):
    """A history scored on request stops at SCORER_READ_TIMEOUT (here far less than one day's score takes)."""
    client = client_for(store.engine, SCORER_READ_TIMEOUT=1e-6)
    response = client.get(f"/v1/metrics/shootings/history?days=730&as_of={END}")
    assert response.status_code == 503
    assert "SCORER_READ_TIMEOUT" in response.json["error"] and response.headers["Retry-After"]
    page = client.get("/metric/shootings")
    assert page.status_code == 503 and page.mimetype == "text/html"


def test_the_published_board_is_read_not_scored_on_request(store):
    """The current board is the one the scorer published: served from its rows, with none of the
    reads of a score computed on request (the change log its kept day totals follow, the day
    totals' sums). Told by the statements run, not by a time bound, which a loaded machine can
    pass on any statement (PostgreSQL's statement_timeout counts in whole milliseconds)."""
    client = client_for(store.engine, SCORER_READ_TIMEOUT=1.0)
    with statements_run(store.engine) as statements:
        published = client.get("/v1/scoreboard")
        statements_published = list(statements)
        statements.clear()
        past = client.get(f"/v1/scoreboard?as_of={END - timedelta(days=1)}")
    assert published.status_code == 200 and published.json["as_of"] == END.isoformat()
    assert published.json["updated_at"] is not None  # the published board, not one scored now
    assert not [s for s in statements_published if "day_changes" in s], statements_published
    # The same question for a past day is scored on request, and its reads say so.
    assert past.status_code == 200 and past.json["updated_at"] is None
    assert [s for s in statements if "day_changes" in s], statements


@pytest.fixture
def postgres_store(database_url):
    engine = fresh_database(database_url)
    yield scored(engine)
    engine.dispose()


def test_a_statement_held_past_the_time_bound_is_cancelled_on_postgresql(postgres_store):
    """PostgreSQL cancels an on-demand read after SCORER_READ_TIMEOUT (statement_timeout, for the read's
    transaction only): here a lock holds the daily totals, and the read gives up instead of queueing."""
    store = postgres_store
    client = client_for(store.engine, SCORER_READ_TIMEOUT=0.3)
    past = END - timedelta(days=3)
    with store.engine.connect() as locker:
        locker.execute(text("LOCK TABLE day_totals IN ACCESS EXCLUSIVE MODE"))
        board = client.get(f"/v1/scoreboard?as_of={past}")
        history = client.get(f"/v1/metrics/pothole-on-time/history?days=30&as_of={END}")
        page = client.get(f"/?as_of={past}")
        locker.rollback()
    for response in (board, history, page):
        assert response.status_code == 503, response.get_data(as_text=True)[:300]
    assert "0.3" in board.json["error"] and board.headers["Retry-After"]
    # The lock gone, the same requests answer, and no pooled connection kept the timeout
    # (the scorer's folds share the pool in `scorer run`).
    assert client.get(f"/v1/scoreboard?as_of={past}").status_code == 200
    held = [store.engine.connect() for _ in range(store.engine.pool.size())]
    try:
        assert {conn.execute(text("SHOW statement_timeout")).scalar() for conn in held} == {"0"}
    finally:
        for conn in held:
            conn.close()


def test_inside_one_connection_a_cancelled_read_is_read_timed_out_and_the_next_read_works(postgres_store):
    """A request's reads share one connection (ScoreReader.one_connection): a read cancelled there is
    ReadTimedOut to whoever made it, as outside a scope, and the scope can still read afterwards with
    its bound (a caller that shows the rest without the part that ran out of time)."""
    from shared.store.score_reader import ReadTimedOut

    reader = ScoreReader(postgres_store.engine, CATALOG)
    with reader.one_connection(0.05) as conn:
        with pytest.raises(ReadTimedOut, match="0.05"):
            with reader.bounded_reads(0.05) as inner:
                inner.execute(text("SELECT pg_sleep(0.3)"))
        assert reader.backlogs(END) is not None  # the scope reads on
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "50ms"
    assert postgres_store.engine.pool.checkedout() == 0
