"""The scorer against real Kafka and a real database (PostgreSQL and SQLite).

The read API's scoreboard must equal the offline `cityscore score` of the same events,
including after late events and case corrections.
"""

from __future__ import annotations

import hashlib
import random
from datetime import date, datetime, timedelta, timezone

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import text

from services.cli.offline import board_document, fold_lines, score_ledger
from services.scorer.app import create_app
from services.scorer.consumer import Scorer
from services.scorer.replay import replay
from services.scorer.steps import Prepared
from shared.core.catalog import load_catalog
from shared.core.folding import Ledger
from shared.dev.generator import generate
from shared.platform.kafka import kafka_security
from shared.core.score_change import CITY
from shared.store.score_writer import ScoreWriter

from tests.helpers.ingest import fresh_database
from tests.helpers.boards import board_differences
from tests.helpers.score_parts import ScoreParts, score_parts
from tests.fakes.clock import ManualClock
from tests.helpers.scorer import Stream, clock_for, run_in_thread
from tests.helpers.waiting import wait_until

CATALOG = load_catalog()
END = date(2026, 6, 30)
AS_OF_DATES = [END, date(2026, 6, 14), date(2026, 5, 31), date(2026, 4, 2)]
# Calendar windows move on Mondays and on the first and last days of months: Sundays 14 June
# and 31 May (a month end), Mondays 15 June and 1 June (a month's first day), Tuesday 30 June.
CALENDAR_AS_OF_DATES = AS_OF_DATES + [date(2026, 6, 15), date(2026, 6, 1)]


@pytest.fixture(scope="module")
def events():
    """100 live days and their trend history: about 190,000 events."""
    return list(generate(CATALOG, 100, 5, END))


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request, tmp_path):
    url = request.getfixturevalue("database_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/s.db"
    engine = fresh_database(url)
    yield engine
    engine.dispose()


@pytest.fixture
def stream(kafka_bootstrap, database):
    url = database.url.render_as_string(hide_password=False)
    made = Stream(kafka_bootstrap, url)
    yield made
    made.close()


# The offline command's folds by (events' digest, catalog): the PostgreSQL and the SQLite run of a
# test compare with the same fold, and folding 190,000 events takes seconds; each as-of date's
# board is then scored from it by the command's own functions (services/cli/offline.py).
_OFFLINE_LEDGERS: dict[tuple[str, str | None], Ledger] = {}


def offline(events, as_of, catalog: str | None = None) -> dict:
    """`cityscore score --events F --as-of AS_OF [--catalog C]`'s JSON for these events."""
    key = (hashlib.sha256(orjson.dumps(events)).hexdigest(), catalog)
    if key not in _OFFLINE_LEDGERS:
        ledger = Ledger(load_catalog(catalog) if catalog else CATALOG)
        report = fold_lines((orjson.dumps(e) for e in events), ledger)
        assert report.invalid == 0, report.reasons
        _OFFLINE_LEDGERS[key] = ledger
    ledger = _OFFLINE_LEDGERS[key]
    # Through JSON, as the command prints it (dates and numbers as the API's JSON has them).
    return orjson.loads(orjson.dumps(board_document(score_ledger(ledger, as_of), ledger)))


def api_board(client, as_of) -> dict:
    response = client.get(f"/v1/scoreboard?as_of={as_of.isoformat()}")
    assert response.status_code == 200
    return response.json


def assert_published(client, expected: dict, timeout_s: float = 60) -> None:
    """The board the API serves for the current day (the one the scorer published) comes to equal
    `expected`. Waited for, not read once: every event is folded when its transaction commits, but
    in a backlog a batch may leave its rescore to a later one or to the loop once it is idle
    (RescoreRule), so the published board may lag the last fold by a moment. Any other difference
    persists and fails the wait, naming what differs."""
    differences: list[str] = []

    def equal() -> bool:
        board = api_board(client, END)
        differences[:] = board_differences(expected, board)
        return not differences and board["updated_at"] is not None

    wait_until(equal, timeout_s, "the published board equal to the offline scores",
               problems=lambda: "\n".join(differences[:20]))


def folded(store: ScoreParts) -> int:
    from sqlalchemy import func, select

    from shared.store.tables.scorer import ProcessedEvent

    with store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(ProcessedEvent))


def read_all(bootstrap, topic):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **kafka_security(), enable_auto_commit=False,
                             consumer_timeout_ms=2000)
    partitions = consumer.partitions_for_topic(topic) or set()
    assigned = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(assigned)
    consumer.seek_to_beginning(*assigned)
    records = [orjson.loads(m.value) for m in consumer]
    consumer.close()
    return records


@pytest.mark.parametrize("catalog_name, as_of_dates", [
    ("boston.yaml", AS_OF_DATES),                    # trailing windows
    ("boston-calendar.yaml", CALENDAR_AS_OF_DATES),  # Boston's calendar windows
])
def test_api_equals_offline_scoring_including_late_events_and_corrections(stream, database, events, catalog_name,
                                                                          as_of_dates):
    catalog = load_catalog(catalog_name)
    store = score_parts(database, catalog)
    clock = clock_for(END)
    scorer = Scorer(stream.settings(), store.writer, store.scores, catalog, clock=clock)
    thread = run_in_thread(scorer)
    client = create_app(stream.settings(), engine=database, catalog=catalog, clock=clock).test_client()
    try:
        first, later = events[: len(events) * 3 // 4], events[len(events) * 3 // 4:]
        stream.send(first)
        expected_count = len({e["event_id"] for e in first})
        wait_until(lambda: folded(store) >= expected_count, 120, "the first part folded")
        assert_published(client, offline(first, END, catalog_name))
        assert board_differences(offline(first, date(2026, 5, 31), catalog_name),
                                 api_board(client, date(2026, 5, 31))) == []

        # The rest arrives out of order (late events), with case corrections and repeats.
        rng = random.Random(9)
        rng.shuffle(later)
        cases = [e for e in first if e["type"] == "case" and e.get("closed_at")]
        corrections = []
        for original in rng.sample(cases, 200):
            reopened_late = datetime.fromisoformat(original["closed_at"]) + timedelta(days=rng.choice([1, 8, 40]))
            corrections.append({**original, "event_id": original["event_id"] + "-corrected",
                                "closed_at": reopened_late.isoformat()})
        repeats = rng.sample(first, 300)
        tail = later + corrections + repeats
        stream.send(tail)
        everything = first + tail
        wait_until(lambda: folded(store) >= len({e["event_id"] for e in everything}), 120, "everything folded")
        assert_published(client, offline(everything, END, catalog_name))
        for as_of in as_of_dates:
            assert board_differences(offline(everything, as_of, catalog_name),
                                     api_board(client, as_of)) == [], as_of
        non_null = sum(1 for m in api_board(client, END)["metrics"].values() if m["week"]["score"] is not None)
        assert non_null >= 21

        # The default board is what the scorer published for 'yesterday'.
        default = client.get("/v1/scoreboard").json
        assert default["updated_at"] is not None
        assert default["as_of"] == END.isoformat()
        assert board_differences(offline(everything, END, catalog_name), default) == []
    finally:
        scorer.stopping.set()
        thread.join(timeout=30)
        scorer.close()

    published = read_all(stream.bootstrap, stream.scores_topic)
    latest = {}
    for change in published:
        latest[(change["metric"], change["window"])] = change
    board = api_board(client, END)
    assert latest[(CITY, "week")]["score"] == pytest.approx(board["cityscore"]["week"], rel=1e-9)
    pothole = latest[("pothole-on-time", "month")]
    assert pothole["as_of"] == END.isoformat()
    assert pothole["numerator"] == board["metrics"]["pothole-on-time"]["month"]["numerator"]
    assert {"metric", "window", "as_of", "score", "numerator", "denominator", "previous_score",
            "changed_at"} <= set(pothole)


def test_batches_that_leave_their_rescore_to_a_later_one_are_rescored_once_the_scorer_is_idle(
        stream, database, events):
    """In a backlog the scorer rescores at most every `rescore_every_s`; what the batches in
    between touched must still reach the published board when the stream goes quiet."""
    store = score_parts(database, CATALOG)
    clock = clock_for(END)
    scorer = Scorer(stream.settings(), store.writer, store.scores, CATALOG, clock=clock)
    scorer.rescore_every_s = 3600  # only the first batch (a new as-of date) and the idle loop rescore
    client = create_app(stream.settings(), engine=database, catalog=CATALOG, clock=clock).test_client()
    sent = events[:30000]
    stream.send(sent)
    thread = run_in_thread(scorer)
    try:
        wait_until(lambda: folded(store) >= len({e["event_id"] for e in sent}), 120, "the events folded")
        assert scorer.totals.messages > 2 * int(stream.env()["SCORER_BATCH_MAX"])  # several batches, one rescore due
        assert_published(client, offline(sent, END), timeout_s=120)
    finally:
        scorer.stopping.set()
        thread.join(timeout=30)
        scorer.close()


class WriterThatCannotFoldOne(ScoreWriter):
    """A real writer, except that one event id cannot be folded (as an event the contract let
    through by mistake would not be)."""

    def prepare(self, event):
        if event.event_id == "unfoldable":
            raise OverflowError("date value out of range")
        return super().prepare(event)


def test_poison_messages_go_to_the_dead_letter_topic_and_do_not_stop_the_good_ones(stream, database):
    store = score_parts(database, CATALOG, WriterThatCannotFoldOne)
    scorer = Scorer(stream.settings(), store.writer, store.scores, CATALOG, clock=clock_for(END))
    good = [{"event_id": f"g{i}", "type": "incident", "metric": "shootings",
             "occurred_at": "2026-06-29T22:00:00-04:00"} for i in range(5)]
    poison = [(b"shootings", b"{not json"),
              (b"shootings", orjson.dumps({"event_id": "p1", "type": "incident", "metric": "shootings"})),
              (b"potholes", orjson.dumps({"event_id": "p2", "type": "incident", "metric": "potholes",
                                          "occurred_at": "2026-06-29T22:00:00-04:00"})),
              (None, b""),
              # a year-9999 case would have no due date (past the last date Python holds)
              (b"pothole-on-time", orjson.dumps({"event_id": "p3", "type": "case", "metric": "pothole-on-time",
                                                 "case_id": "c9999", "opened_at": "9999-12-30T00:00:00+00:00",
                                                 "closed_at": "9999-12-31T00:00:00+00:00"})),
              (b"shootings", orjson.dumps({**good[0], "event_id": "unfoldable"}))]
    stream.send(good[:2], raw=poison)
    stream.send(good[2:])
    thread = run_in_thread(scorer)
    try:
        wait_until(lambda: folded(store) == 5, 120, "the good events folded")
    finally:
        scorer.stopping.set()
        thread.join(timeout=30)
        scorer.close()
    with database.connect() as conn:
        from shared.store.tables.scorer import DayTotal

        from sqlalchemy import select

        count = conn.scalar(select(DayTotal.count).where(DayTotal.metric == "shootings",
                                                         DayTotal.day == date(2026, 6, 29)))
    assert count == 5
    dead = read_all(stream.bootstrap, stream.dlq_topic)
    assert len(dead) == 6
    by_value = {d["value"]: d for d in dead}
    assert "not valid JSON" in by_value["{not json"]["problems"][0]["reason"]
    p1 = next(d for d in dead if d["value"] and '"p1"' in d["value"])
    assert p1["problems"] == [{"field": "occurred_at", "reason": "required field is missing"}]
    p2 = next(d for d in dead if d["value"] and '"p2"' in d["value"])
    assert "unknown metric 'potholes'" in p2["problems"][0]["reason"]
    p3 = next(d for d in dead if d["value"] and '"p3"' in d["value"])
    assert p3["problems"] == [{"field": "opened_at", "reason": "must fall between 2000-01-01 and 2099-12-31 (UTC)"},
                              {"field": "closed_at", "reason": "must fall between 2000-01-01 and 2099-12-31 (UTC)"}]
    unfoldable = next(d for d in dead if d["value"] and '"unfoldable"' in d["value"])
    assert unfoldable["problems"] == [{"field": "", "reason": "cannot be folded: date value out of range"}]
    assert all({"topic", "partition", "offset"} <= set(d) for d in dead)


def test_midnight_moves_the_windows_without_events(stream, database):
    """No event arrives, yet at local midnight the as-of date moves and the scores change."""
    store = score_parts(database, CATALOG)
    # 23:59 in Boston on 1 July: 'yesterday' is 30 June.
    clock = ManualClock(datetime(2026, 7, 2, 3, 59, tzinfo=timezone.utc))
    closed = [{"event_id": f"c{i}", "type": "case", "metric": "pothole-on-time", "case_id": f"c{i}",
               "opened_at": "2026-06-30T09:00:00-04:00", "closed_at": "2026-06-30T11:00:00-04:00"} for i in range(4)]
    stream.send(closed)
    scorer = Scorer(stream.settings(), store.writer, store.scores, CATALOG, clock=clock)
    thread = run_in_thread(scorer)
    client = create_app(stream.settings(), engine=database, catalog=CATALOG, clock=clock).test_client()
    try:
        wait_until(lambda: client.get("/v1/scoreboard").json["metrics"]["pothole-on-time"]["day"]["score"] == 1.25,
                   120, "the day score of 30 June")
        assert client.get("/v1/scoreboard").json["as_of"] == "2026-06-30"
        clock.set(datetime(2026, 7, 2, 4, 1, tzinfo=timezone.utc))  # 00:01 on 2 July in Boston
        def published_new_day():
            board = client.get("/v1/scoreboard").json
            return board["as_of"] == "2026-07-01" and board["updated_at"] is not None  # the scorer's, not on demand

        wait_until(published_new_day, 120, "the scorer to publish the new as-of date")
        board = client.get("/v1/scoreboard").json
        assert board["metrics"]["pothole-on-time"]["day"]["score"] is None  # no case closed on 1 July
        assert board["metrics"]["pothole-on-time"]["week"]["score"] == 1.25  # 30 June is still in the week
    finally:
        scorer.stopping.set()
        thread.join(timeout=30)
        scorer.close()
    changes = [c for c in read_all(stream.bootstrap, stream.scores_topic)
               if c["metric"] == "pothole-on-time" and c["window"] == "day"]
    assert [c["as_of"] for c in changes][-2:] == ["2026-06-30", "2026-07-01"]
    assert changes[-1]["score"] is None and changes[-1]["previous_score"] == 1.25


def test_rebuild_replays_the_topic_to_the_same_scores(stream, database, events):
    store = score_parts(database, CATALOG)
    clock = clock_for(END)
    sample = events[-40000:]
    stream.send(sample)
    scorer = Scorer(stream.settings(), store.writer, store.scores, CATALOG, clock=clock)
    scorer.run_until = None
    thread = run_in_thread(scorer)
    try:
        wait_until(lambda: folded(store) >= len({e["event_id"] for e in sample}), 120, "the sample folded")
        wait_until(lambda: scorer.as_of == END, 120, "the first scoring")
    finally:
        scorer.stopping.set()
        thread.join(timeout=30)
        scorer.close()
    before = store.reader.scoreboard(END).as_dict(CATALOG)
    with database.connect() as conn:
        published_before = {k: (r.score, r.as_of) for k, r in store.reader.current(conn).items()}

    report = replay(stream.settings(), store.writer, store.scores, CATALOG, clock=clock)

    assert report.messages == len(sample)
    assert report.folded == len({e["event_id"] for e in sample})
    assert report.changes == 0  # nothing published: the scores are the same
    assert board_differences(before, store.reader.scoreboard(END).as_dict(CATALOG)) == []
    with database.connect() as conn:
        assert {k: (r.score, r.as_of) for k, r in store.reader.current(conn).items()} == published_before


def test_api_errors_and_history(stream, database):
    client = create_app(stream.settings(), engine=database, catalog=CATALOG, clock=clock_for(END)).test_client()
    assert client.get("/v1/scoreboard?as_of=30-06-2026").status_code == 400
    assert client.get("/v1/metrics/potholes/history").status_code == 404
    assert client.get("/v1/metrics/pothole-on-time/history?window=year").status_code == 400
    assert client.get("/v1/metrics/pothole-on-time/history?days=0").status_code == 400
    history = client.get("/v1/metrics/pothole-on-time/history?window=month&days=30").json
    assert len(history["history"]) == 30 and history["history"][-1]["as_of"] == END.isoformat()
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    assert b"cityscore_scorer_api_seconds" in client.get("/metrics").data


def test_healthz_follows_the_consumer_loop(stream, database):
    beats = {"alive": True}
    client = create_app(stream.settings(), engine=database, catalog=CATALOG, clock=clock_for(END),
                        liveness=lambda: beats["alive"]).test_client()
    assert client.get("/healthz").status_code == 200
    beats["alive"] = False
    assert client.get("/healthz").status_code == 503
    store = score_parts(database, CATALOG)
    scorer = Scorer(stream.settings(), store.writer, store.scores, CATALOG, clock=clock_for(END))
    assert scorer.alive()
    scorer.last_beat -= 600
    assert not scorer.alive()


def test_a_batch_queued_behind_one_that_failed_never_reaches_the_database(tmp_path):
    """Batches queue for the database worker; after one fails, the ones behind it must not be
    folded (they would count before it, and an older case version could win when it comes again)."""
    from shared.core.contract import parse_event
    from shared.store.engine import make_engine, migrate
    from services.scorer.settings import ScorerSettings

    engine = make_engine(f"sqlite:///{tmp_path}/queued.db")  # no tables yet: the first fold fails for real
    store = score_parts(engine, CATALOG)
    scorer = Scorer(ScorerSettings(), store.writer, store.scores, CATALOG, clock=clock_for(END))
    sample = list(generate(CATALOG, 2, 1, END))[:50]
    first = [store.writer.prepare(parse_event(orjson.dumps(e))) for e in sample]
    second = [store.writer.prepare(parse_event(orjson.dumps({**e, "event_id": "again-" + e["event_id"]})))
              for e in sample]
    try:
        with pytest.raises(Exception, match="no such table"):
            scorer.in_order.store_in_order(Prepared.of(first))
        migrate(engine)  # the database is back, but the batch behind the failed one still waits its turn
        with pytest.raises(RuntimeError, match="earlier batch failed"):
            scorer.in_order.store_in_order(Prepared.of(second))
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM processed_events")) == 0
    finally:
        scorer.close()
        engine.dispose()
