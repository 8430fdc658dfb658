"""Events the database refuses never stop the scorer (PostgreSQL).

A message produced straight to the topic skips ingest, and the database may refuse what
nobody foresaw. Whatever it refuses, the scorer folds the batch again in halves, in order,
down to the single events refused, dead-letters just those with the reason, and folds every
other event: the scores equal the offline scores of the events that were not refused.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import orjson
import pytest
from sqlalchemy import select

from services.scorer.consumer import Scorer
from shared.core.catalog import load_catalog
from shared.core.contract import IncidentEvent
from shared.store.tables.scorer import DayTotal, ProcessedEvent
from shared.core.folding import Ledger
from shared.dev.generator import generate
from services.cli.offline import fold_lines
from services.scorer.settings import ScorerSettings

from tests.helpers.ingest import fresh_database
from tests.helpers.boards import board_differences
from tests.helpers.score_parts import score_parts
from tests.helpers.scorer import Stream, clock_for, run_in_thread
from tests.helpers.waiting import wait_until

CATALOG = load_catalog()
END = date(2026, 6, 30)

# Refusals nobody foresaw, made by the database itself: a trigger that refuses some event ids
# the way PostgreSQL refuses a NUL (SQLSTATE 22P05, a data exception), and a check constraint
# that refuses others (SQLSTATE 23514, an integrity error). The contract accepts these events.
REFUSALS = [
    """CREATE OR REPLACE FUNCTION cityscore_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF starts_with(NEW.event_id, 'refused-nul-') THEN
        RAISE EXCEPTION 'unsupported Unicode escape sequence' USING ERRCODE = 'untranslatable_character',
          DETAIL = 'the event id cannot be converted to text';
      END IF;
      RETURN NEW;
    END $$""",
    "CREATE TRIGGER cityscore_test_refuse BEFORE INSERT ON processed_events "
    "FOR EACH ROW EXECUTE FUNCTION cityscore_test_refuse()",
    "ALTER TABLE processed_events ADD CONSTRAINT cityscore_test_refuse_check "
    "CHECK (NOT starts_with(event_id, 'refused-check-'))",
]


def folded(store) -> int:
    with store.engine.connect() as conn:
        return len(conn.execute(select(ProcessedEvent.event_id)).all())


def read_dead_letters(stream) -> list[dict]:
    from tests.integration.test_scorer import read_all

    return read_all(stream.bootstrap, stream.dlq_topic)


def incident(event_id: str, **more) -> dict:
    return {"event_id": event_id, "type": "incident", "metric": "shootings",
            "occurred_at": "2026-06-20T22:00:00-04:00", **more}


def case(event_id: str, case_id: str, closed_at: str) -> dict:
    return {"event_id": event_id, "type": "case", "metric": "pothole-on-time", "case_id": case_id,
            "opened_at": "2026-06-22T09:00:00-04:00", "closed_at": closed_at}


@pytest.fixture
def setup(kafka_bootstrap, database_url):
    engine = fresh_database(database_url)
    stream = Stream(kafka_bootstrap, database_url, partitions=3)
    yield engine, stream
    stream.close()
    engine.dispose()


@pytest.mark.timeout(600)
def test_events_the_database_refuses_go_to_the_dead_letter_topic_and_every_other_event_is_folded(setup, caplog):
    engine, stream = setup
    with engine.begin() as conn:
        for statement in REFUSALS:
            conn.exec_driver_sql(statement)
    store = score_parts(engine, CATALOG)
    good = list(generate(CATALOG, 20, 31, END))
    # One case in three versions with a refused event between them, one partition (the
    # metric's): the fold in halves must keep their order, so the last version (closed
    # late) is the one that counts, as offline.
    versions = [case("pothole-v1", "refusal-case", "2026-06-22T10:00:00-04:00"),
                case("refused-nul-case", "another-case", "2026-06-22T10:00:00-04:00"),
                case("pothole-v2", "refusal-case", "2026-06-29T10:00:00-04:00"),
                case("refused-check-case", "a-third-case", "2026-06-22T10:00:00-04:00"),
                case("pothole-v3", "refusal-case", "2026-06-30T10:00:00-04:00")]
    refused_by_database = [incident("refused-nul-1"), incident("refused-check-1"),
                           {"event_id": "refused-nul-2", "type": "measurement", "metric": "311-call-center",
                            "occurred_at": "2026-06-25T10:00:00-04:00", "value": 12.0}]
    # What the contract refuses now (it once let them through to the database): a NUL in an
    # event id written as raw JSON, and two counts of 10**308 (together, an infinite day).
    refused_by_contract = [
        (b"shootings", b'{"event_id": "nul-\\u0000-1", "type": "incident", "metric": "shootings", '
                       b'"occurred_at": "2026-06-20T22:00:00-04:00"}'),
        *[(b"shootings", b'{"event_id": "huge-%d", "type": "incident", "metric": "shootings", '
                         b'"occurred_at": "2026-06-20T22:00:00-04:00", "count": 1%s}' % (i, b"0" * 308))
          for i in range(2)]]

    half = len(good) // 2
    stream.send(good[:half] + refused_by_database[:1])
    stream.send(versions + good[half:half + 500] + refused_by_database[1:], raw=refused_by_contract)
    stream.send(good[half + 500:])
    accepted = good + [v for v in versions if not v["event_id"].startswith("refused-")]

    scorer = Scorer(stream.settings(), store.writer, store.scores, CATALOG, clock=clock_for(END))
    thread = run_in_thread(scorer)
    total = len({e["event_id"] for e in accepted})
    expected_dead = len(refused_by_database) + 2 + len(refused_by_contract)
    try:
        wait_until(lambda: not thread.is_alive() or (folded(store) >= total
                                                       and scorer.totals.dead_letters >= expected_dead),
                   timeout_s=300, what="every event folded or dead-lettered")
        assert thread.is_alive(), "the scorer stopped on an event the database refused"
    finally:
        scorer.stopping.set()
        thread.join(timeout=60)
        scorer.close()

    assert folded(store) == total
    assert scorer.totals.dead_letters == expected_dead
    # Refused within batches of other events, which were folded again in halves around them.
    assert any(r.getMessage() == "the database refused a batch; folding it again in halves" for r in caplog.records)
    ledger = Ledger(CATALOG)
    lines = [orjson.dumps(e) for e in accepted] + [value for _, value in refused_by_contract]
    report = fold_lines(lines, ledger)
    assert report.invalid == len(refused_by_contract)  # offline refuses them too
    for as_of in (END, date(2026, 6, 23)):
        assert board_differences(ledger.scoreboard(as_of).as_dict(CATALOG),
                                 store.reader.scoreboard(as_of).as_dict(CATALOG)) == [], as_of

    dead = read_dead_letters(stream)
    assert len(dead) == expected_dead
    by_id = {}
    for letter in dead:
        assert {"topic", "partition", "offset", "value", "problems"} <= set(letter)
        assert letter["topic"] == stream.events_topic
        event_id = orjson.loads(letter["value"])["event_id"]
        by_id[event_id] = letter["problems"]
    for event_id in ("refused-nul-1", "refused-nul-2", "refused-nul-case"):
        [problem] = by_id[event_id]
        assert problem["field"] == ""
        assert problem["reason"].startswith("refused by the database: unsupported Unicode escape sequence")
        assert "SQLSTATE 22P05" in problem["reason"]
    for event_id in ("refused-check-1", "refused-check-case"):
        [problem] = by_id[event_id]
        assert "cityscore_test_refuse_check" in problem["reason"] and "SQLSTATE 23514" in problem["reason"]
    assert by_id["nul-\x00-1"][0]["field"] == "event_id"
    assert by_id["nul-\x00-1"][0]["reason"].startswith("must not contain control characters (U+0000")
    for i in range(2):
        assert by_id[f"huge-{i}"][0]["field"] == "count"


def test_a_nul_and_an_overflow_that_slip_past_the_contract_are_isolated_by_the_fold(database_url):
    """PostgreSQL's own refusals, with nothing staged: a NUL in an event id (SQLSTATE 22P05) and a
    day's count past float8's range (SQLSTATE 22003). The events are built without validation,
    as a contract with a gap would let them through; the fold dead-letters exactly those two."""
    engine = fresh_database(database_url)
    store = score_parts(engine, CATALOG)
    scorer = Scorer(ScorerSettings(), store.writer, store.scores, CATALOG, clock=clock_for(END))
    moment = datetime(2026, 6, 20, 22, tzinfo=timezone.utc)

    def unchecked(event_id: str, count: int = 1) -> IncidentEvent:
        return IncidentEvent.model_construct(event_id=event_id, type="incident", metric="shootings",
                                             occurred_at=moment, count=count)

    events = [unchecked(f"ok-{i}") for i in range(5)] + [unchecked("nul-\x00")] + \
             [unchecked(f"ok-{i}") for i in range(5, 9)] + [unchecked("huge-1", 10 ** 308)] + \
             [unchecked(f"ok-{i}") for i in range(9, 12)] + [unchecked("huge-2", 10 ** 308)] + [unchecked("ok-12")]
    try:
        outcome, refused = scorer.fold([store.writer.prepare(event) for event in events])
        assert [index for index, _ in refused] == [5, 14]
        assert [error.orig.sqlstate for _, error in refused] == ["22P05", "22003"]
        assert outcome.folded == 13 + 1  # the good ones, and the first huge count (alone it fits)
        with engine.connect() as conn:
            ids = set(conn.scalars(select(ProcessedEvent.event_id)))
            day = conn.scalar(select(DayTotal.count).where(DayTotal.metric == "shootings",
                                                           DayTotal.day == (moment - timedelta(hours=4)).date()))
        assert ids == {f"ok-{i}" for i in range(13)} | {"huge-1"}
        assert day == 13 + 1e308
    finally:
        scorer.close()
        engine.dispose()
