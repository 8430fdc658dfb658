"""The scorer's batch steps with no broker: messages from an in-memory topic, dead letters and
score changes to an in-memory producer, a real SQLite database for the store.

One test per rule of services/scorer/steps.py: bad messages and events the database refuses go
to the dead letters with the reason; the fold, the rescore and the outbox are one transaction;
when a batch rescores; a batch queued behind a failed one never reaches the database; offsets
are committed only after the batch's score changes are published.
"""

from __future__ import annotations

import threading
from datetime import date, timedelta

import orjson
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from services.scorer.metrics import ScorerMetrics
from services.scorer.steps import (DeadLetters, FoldAndRescore, InOrder, Prepared, PublishOutbox, Record, Rescore,
                                   RescoreRule, StoreBatch, Validate)
from shared.core.catalog import load_catalog
from shared.store.engine import make_engine, migrate
from shared.store.published_scores import PublishedScores
from shared.store.score_writer import ScoreWriter

from tests.helpers.score_parts import ScoreParts, score_parts

CATALOG = load_catalog()
AS_OF = date(2026, 6, 30)
EVENTS, DLQ, SCORES = "cityscore.events", "cityscore.events.dlq", "cityscore.scores"


class InMemoryTopic:
    """The events topic, one partition, in memory: each message gets the next offset."""

    def __init__(self) -> None:
        self.offset = 0
        self.records: list[Record] = []

    def messages(self, *values: dict | bytes) -> list[Record]:
        found = []
        for value in values:
            raw = value if isinstance(value, bytes) else orjson.dumps(value)
            key = value["metric"].encode() if isinstance(value, dict) else None
            found.append(Record(EVENTS, 0, self.offset, key, raw))
            self.offset += 1
        self.records += found
        return found

    def reread(self, origins) -> list[Record]:
        """What the scorer reads again to dead-letter an event the database refused."""
        return [self.records[origin.offset] for origin in origins]


class Sent:
    """A send kafka-python's way: `get` returns once the broker acknowledged, or raises."""

    def __init__(self, error: Exception | None = None):
        self.error = error

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error


class InMemoryProducer:
    """What was sent, per topic, and in one journal with the offset commits (to see their order).
    Sends to a topic in `refusing` fail, as with the broker away."""

    def __init__(self, journal: list) -> None:
        self.journal = journal
        self.sent: dict[str, list[tuple[bytes | None, bytes]]] = {}
        self.refusing: set[str] = set()

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None) -> Sent:
        if topic in self.refusing:
            return Sent(ConnectionError(f"{topic}: the broker is away"))
        self.sent.setdefault(topic, []).append((key, value))
        self.journal.append(("sent", topic))
        return Sent()

    def flush(self, timeout: float | None = None) -> None:
        pass

    def dead_letters(self) -> list[dict]:
        return [orjson.loads(value) for _, value in self.sent.get(DLQ, [])]


def incident(event_id: str, day: int = 29, metric: str = "shootings") -> dict:
    return {"event_id": event_id, "type": "incident", "metric": metric,
            "occurred_at": f"2026-06-{day:02d}T22:00:00-04:00"}


class Steps:
    """The steps wired as services/scorer/consumer.py wires them, around in-memory Kafka."""

    def __init__(self, store: ScoreParts, writer=None):
        self.store = store
        self.topic = InMemoryTopic()
        self.journal: list = []
        self.producer = InMemoryProducer(self.journal)
        self.metrics = ScorerMetrics()
        self.rule = RescoreRule(lambda: AS_OF)
        self.dead_letters = DeadLetters(self.producer, DLQ, self.metrics)
        self.validate = Validate(CATALOG, store.writer.prepare, self.dead_letters)
        self.fold = FoldAndRescore(writer or store.writer, store.scores, self.rule)
        self.publish = PublishOutbox(store.scores, store.engine, self.producer, SCORES, self.metrics)
        self.store_batch = StoreBatch(self.fold, self.dead_letters, self.publish, self.metrics, self.topic.reread)
        self.in_order = InOrder(self.store_batch, self.commit)

    def commit(self, offsets: dict, wait: bool) -> None:
        self.journal.append(("commit", dict(offsets)))

    def commits(self) -> list[dict]:
        return [entry[1] for entry in self.journal if entry[0] == "commit"]


@pytest.fixture
def engine(tmp_path):
    made = make_engine(f"sqlite:///{tmp_path}/scores.db")
    migrate(made)
    yield made
    made.dispose()


def count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.scalar(text(f"SELECT count(*) FROM {table}"))


# -- step 1: validation and dead letters ----------------------------------------------------


class WriterThatCannotFoldOne(ScoreWriter):
    """A real writer, except that one event cannot be prepared (as one the contract let through by
    mistake, with a date past what Python holds, could not be)."""

    def prepare(self, event):
        if event.event_id == "unfoldable":
            raise OverflowError("date value out of range")
        return super().prepare(event)


def test_bad_messages_go_to_the_dead_letters_with_field_and_reason_and_the_good_ones_on_in_order(engine):
    steps = Steps(score_parts(engine, CATALOG, WriterThatCannotFoldOne))
    topic = steps.topic
    messages = topic.messages(incident("g0"), b"{not json", {"event_id": "p1", "type": "incident", "metric": "shootings"},
                              incident("p2", metric="potholes"), incident("g1"), incident("unfoldable"), incident("g2"))

    prepared = steps.validate(messages)

    assert [folding[0] for folding in prepared.events] == [("police", "g0"), ("police", "g1"), ("police", "g2")]
    assert [prepared.origins[i].offset for i in range(len(prepared.origins))] == [0, 4, 6]
    assert (prepared.messages, prepared.dead_letters) == (7, 4)
    dead = {letter["offset"]: letter for letter in steps.producer.dead_letters()}
    assert sorted(dead) == [1, 2, 3, 5]
    assert "not valid JSON" in dead[1]["problems"][0]["reason"]
    assert dead[2]["problems"] == [{"field": "occurred_at", "reason": "required field is missing"}]
    assert "unknown metric 'potholes'" in dead[3]["problems"][0]["reason"]
    assert dead[5]["problems"] == [{"field": "", "reason": "cannot be folded: date value out of range"}]
    assert all(letter["topic"] == EVENTS and letter["partition"] == 0 for letter in dead.values())
    assert steps.journal[-1] == ("sent", DLQ)  # written before the batch goes on to the database


def test_events_the_database_refuses_are_dead_lettered_and_the_rest_of_the_batch_folded(engine, caplog):
    with engine.begin() as conn:  # the database refuses these ids, as PostgreSQL refuses a NUL
        conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON processed_events "
                          "WHEN NEW.event_id LIKE 'refused-%' BEGIN SELECT RAISE(ABORT, 'refused by a check'); END"))
    steps = Steps(score_parts(engine, CATALOG))
    ids = ["a", "b", "refused-1", "c", "d", "e", "refused-2", "f"]
    prepared = steps.validate(steps.topic.messages(*[incident(i) for i in ids]))

    report = steps.store_batch(prepared)

    assert (report.folded, report.dead_letters) == (6, 2)
    with engine.connect() as conn:
        assert sorted(conn.scalars(text("SELECT event_id FROM processed_events"))) == ["a", "b", "c", "d", "e", "f"]
        assert conn.scalar(text("SELECT count FROM day_totals WHERE metric = 'shootings'")) == 6
    dead = steps.producer.dead_letters()
    assert [(letter["offset"], orjson.loads(letter["value"])["event_id"]) for letter in dead] == [
        (2, "refused-1"), (6, "refused-2")]
    assert all(letter["problems"] == [{"field": "", "reason": "refused by the database: refused by a check"}]
               for letter in dead)
    assert "the database refused a batch; folding it again in halves" in caplog.messages


# -- step 2: one transaction ----------------------------------------------------------------


class ScoresThatFail:
    """Real published scores, except that the rescore fails after writing its changes."""

    def __init__(self, scores: PublishedScores):
        self.scores = scores

    def rescore(self, conn, as_of, metric_ids=None):
        self.scores.rescore(conn, as_of, metric_ids)
        raise OperationalError("UPDATE current_scores ...", {}, Exception("disk I/O error"))


def test_the_fold_the_rescore_and_the_outbox_are_one_transaction(engine):
    store = score_parts(engine, CATALOG)
    steps = Steps(store)
    prepared = steps.validate(steps.topic.messages(*[incident(f"e{i}") for i in range(5)]))

    failing = FoldAndRescore(store.writer, ScoresThatFail(store.scores), steps.rule)
    with pytest.raises(OperationalError, match="disk I/O error"):
        failing(prepared.events)
    assert [count(engine, t) for t in ("processed_events", "day_totals", "current_scores", "score_outbox")] == [
        0, 0, 0, 0]  # the rescore failed, so the fold is not there either: the batch comes again whole
    assert steps.rule.as_of is None  # and nothing counts as rescored

    commits = []
    sa_event.listen(engine, "commit", lambda conn: commits.append(1))
    folded = steps.fold(prepared.events)
    assert folded.outcome.folded == 5 and folded.changes > 0
    assert len(commits) == 1
    assert count(engine, "processed_events") == 5 and count(engine, "score_outbox") == folded.changes


# -- when a batch rescores -------------------------------------------------------------------


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_rescore_rule():
    today, ticks = [AS_OF], Ticks()
    rule = RescoreRule(lambda: today[0], monotonic=ticks)
    assert rule.has_work_when_idle()  # never scored: the first as-of date
    # The first batch (a new as-of date) rescores every metric, touched or not.
    assert rule.plan({"shootings"}, has_events=True) == Rescore(AS_OF, None)
    rule.done({"shootings"}, Rescore(AS_OF, None))
    assert not rule.has_work_when_idle()
    # In a backlog, within 0.4 s of that rescore, a batch leaves its rescore to a later one...
    ticks.now += 0.1
    assert rule.plan({"shootings"}, has_events=True) is None
    rule.done({"shootings"}, None)
    ticks.now += 0.1
    assert rule.plan({"potholes-closed"}, has_events=True) is None
    rule.done({"potholes-closed"}, None)
    assert rule.has_work_when_idle()  # ...which the loop's empty batch makes at once when it idles,
    assert rule.plan((), has_events=False) == Rescore(AS_OF, ["potholes-closed", "shootings"])
    # ...as does the first batch 0.4 s after the last rescore, with what it touched itself.
    ticks.now += 0.25
    assert rule.plan({"bps-attendance"}, has_events=True) == Rescore(
        AS_OF, ["bps-attendance", "potholes-closed", "shootings"])
    rule.done({"bps-attendance"}, Rescore(AS_OF, ["bps-attendance", "potholes-closed", "shootings"]))
    assert not rule.has_work_when_idle()
    # A batch that touched nothing has nothing to rescore.
    ticks.now += 1
    assert rule.plan((), has_events=True) is None
    # Local midnight: every metric again, events or not.
    today[0] = AS_OF + timedelta(days=1)
    assert rule.has_work_when_idle()
    assert rule.plan((), has_events=False) == Rescore(AS_OF + timedelta(days=1), None)


def test_a_replay_never_rescores_between_batches():
    rule = RescoreRule(lambda: AS_OF, each_batch=False)
    assert not rule.has_work_when_idle()
    assert rule.plan({"shootings"}, has_events=True) is None
    rule.done({"shootings"}, None)
    assert not rule.has_work_when_idle() and rule.unscored == set()


# -- the database worker: order, and offsets after publishing -------------------------------------


class WriterThatLosesItsDisk:
    """The store's real write side, whose folds fail (not for their data, and not worth a retry)
    while `broken` is set."""

    broken = False

    def __init__(self, writer: ScoreWriter):
        self.writer = writer
        self.engine = writer.engine

    def fold_prepared(self, conn, batch):
        if self.broken:
            raise OperationalError("INSERT INTO processed_events ...", {}, Exception("disk I/O error"))
        return self.writer.fold_prepared(conn, batch)


def test_a_batch_queued_behind_one_that_failed_never_reaches_the_database_and_neither_commits(engine):
    store = score_parts(engine, CATALOG)
    writer = WriterThatLosesItsDisk(store.writer)
    steps = Steps(store, writer)
    topic = steps.topic
    first = steps.validate(topic.messages(*[incident(f"first-{i}") for i in range(3)]))
    second = steps.validate(topic.messages(*[incident(f"second-{i}") for i in range(3)]))
    # The first batch waits in the worker until the second is queued behind it.
    release = threading.Event()
    store_batch = steps.in_order.store_batch

    def held(batch: Prepared):
        if batch is first:
            release.wait(10)
            writer.broken = True
        else:
            writer.broken = False  # the disk is back: only the order keeps the second batch out
        return store_batch(batch)

    steps.in_order.store_batch = held
    steps.in_order.submit(first, {"p0": 3})
    steps.in_order.submit(second, {"p0": 6})
    release.set()
    with pytest.raises(OperationalError, match="disk I/O error"):
        steps.in_order.finish()
    with pytest.raises(RuntimeError, match="an earlier batch failed"):
        steps.in_order.finish()
    steps.in_order.close()
    assert count(engine, "processed_events") == 0
    assert steps.commits() == []  # both batches come again, in order


def test_offsets_are_committed_only_after_the_batch_s_score_changes_are_published(engine):
    steps = Steps(score_parts(engine, CATALOG))
    topic = steps.topic
    steps.in_order.submit(steps.validate(topic.messages(*[incident(f"e{i}") for i in range(4)])), {"p0": 4})
    steps.in_order.finish()
    steps.in_order.close()
    published = [n for n, entry in enumerate(steps.journal) if entry == ("sent", SCORES)]
    assert published, "the first batch rescored (a new as-of date) and published its changes"
    assert steps.journal[-1] == ("commit", {"p0": 4})
    assert max(published) < len(steps.journal) - 1
    assert count(engine, "score_outbox") == 0


def test_a_batch_whose_changes_cannot_be_published_commits_no_offset_and_keeps_its_outbox(engine):
    steps = Steps(score_parts(engine, CATALOG))
    steps.producer.refusing.add(SCORES)
    steps.in_order.submit(steps.validate(steps.topic.messages(incident("e0"), incident("e1"))), {"p0": 2})
    with pytest.raises(ConnectionError):
        steps.in_order.finish()
    steps.in_order.close()
    assert steps.commits() == []
    assert count(engine, "processed_events") == 2  # folded and claimed: read again, it changes nothing
    assert count(engine, "score_outbox") > 0  # published by the next batch, or on the next start
