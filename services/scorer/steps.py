"""The scorer's steps for one batch of events, in the order a batch goes through them.

    Validate         decode and validate each message and work out what it adds to the
                     scores; a bad one goes to the dead letters at once, with the field and
                     the reason.
    FoldAndRescore   claim and fold the batch's events, rescore the metrics they touched
                     (when `RescoreRule` says so) and queue the changed scores in the outbox:
                     ONE database transaction, run again after a deadlock or a lost
                     connection. A batch the database refuses for its data is folded again
                     in halves down to the events it refuses, which go to the dead letters.
    PublishOutbox    the queued score changes to the scores topic.
    (commit)         the consumer commits the batch's offsets: services/scorer/consumer.py.

`StoreBatch` runs the database steps for one validated batch; `InOrder` runs them on one
worker thread, one batch at a time and in the order read, while the consumer reads the
next ones, and commits each batch's offsets only once its steps are done.

Nothing here reads from Kafka: the steps take the messages the consumer read, and write
through a producer (kafka-python's, or an in-memory one in the unit tests).
"""

from __future__ import annotations

import logging
import time
from array import array
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Callable, Iterable, NamedTuple, Protocol

import orjson
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from shared.core.catalog import Catalog
from shared.core.contract import InvalidEvent, Problem, validate_event

from .metrics import ScorerMetrics

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from shared.core.contract import Event
    from shared.store.score_writer import FoldOutcome, Folding

log = logging.getLogger("cityscore.scorer")


class Message(Protocol):
    """A message read from the events topic (kafka-python's ConsumerRecord has these)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Record(NamedTuple):
    """A `Message` held in memory: what the rebuild's reader process hands over (pickled), and
    what the steps' unit tests feed them."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Producer(Protocol):
    """Where dead letters and score changes go (kafka-python's KafkaProducer)."""

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None): ...

    def flush(self, timeout: float | None = None) -> None: ...


@dataclass
class BatchReport:
    messages: int
    folded: int
    duplicates: int
    dead_letters: int
    changes: int
    fold_s: float

    def add(self, other: "BatchReport") -> None:
        for name in ("messages", "folded", "duplicates", "dead_letters", "changes", "fold_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Origin(NamedTuple):
    """Where a message came from: enough to read it again from the topic."""

    topic: str
    partition: int
    offset: int


# Reads messages again from the topic, in the order asked (to dead-letter them whole).
Reread = Callable[[list[Origin]], list[Message]]


class Origins:
    """Where each event of a batch prepared for folding came from, in the same order: enough to
    read again, and dead-letter, one the database refuses. 12 bytes an event in two arrays; the
    messages themselves are freed once validated (keeping each value for the rare refusal
    held about 250 bytes an event for every batch in flight)."""

    __slots__ = ("topic", "partitions", "offsets")

    def __init__(self) -> None:
        self.topic = ""  # the scorer reads one topic
        self.partitions = array("i")
        self.offsets = array("q")

    def add(self, message: Message) -> None:
        self.topic = message.topic
        self.partitions.append(message.partition)
        self.offsets.append(message.offset)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, index: int) -> Origin:
        return Origin(self.topic, self.partitions[index], self.offsets[index])


@dataclass
class Prepared:
    """A batch after validation: its good events ready to fold, where each came from, how many
    messages it had and how many of them went to the dead letters."""

    events: list[Folding]
    origins: Origins | None
    messages: int
    dead_letters: int
    started: float  # time.perf_counter() when the batch was taken

    @classmethod
    def of(cls, events: list[Folding]) -> "Prepared":
        """Events prepared elsewhere (no origins: a refusal of one of them is raised, not dead-lettered)."""
        return cls(events, None, len(events), 0, time.perf_counter())


# -- dead letters --------------------------------------------------------------------------


class DeadLetters:
    """Messages the scorer cannot count, each with the reasons, to the dead-letter topic. Each
    is written (and acknowledged) before its batch's offsets are committed."""

    def __init__(self, producer: Producer, topic: str, metrics: ScorerMetrics):
        self.producer = producer
        self.topic = topic
        self.metrics = metrics

    def send(self, dead: list[tuple[Message, list[dict]]]) -> None:
        futures = []
        for message, problems in dead:
            payload = {
                "topic": message.topic, "partition": message.partition, "offset": message.offset,
                "key": message.key.decode("utf-8", "replace") if message.key else None,
                "value": message.value.decode("utf-8", "replace") if message.value else None,
                "problems": problems,
                "dead_at": datetime.now(timezone.utc).isoformat(),
            }
            futures.append(self.producer.send(self.topic, key=message.key, value=orjson.dumps(payload)))
        self.producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)
        self.metrics.dead_letters.inc(len(dead))
        log.warning("messages sent to the dead-letter topic", extra={"count": len(dead), "first": dead[0][1][:3]})


# -- step 1: validate ------------------------------------------------------------------------


class Validate:
    """Step 1: each message decoded, validated and prepared for the fold; the bad ones to the
    dead letters (now, before any commit)."""

    def __init__(self, catalog: Catalog, prepare: Callable[[Event], Folding], dead_letters: DeadLetters):
        self.catalog = catalog
        self.prepare = prepare
        self.dead_letters = dead_letters

    def __call__(self, messages: list[Message]) -> Prepared:
        started = time.perf_counter()
        events = []
        origins = Origins()
        dead = []
        prepare, catalog = self.prepare, self.catalog
        for message in messages:
            try:
                event = validate_event(message.value, catalog)
            except InvalidEvent as exc:
                dead.append((message, [p.as_dict() for p in exc.problems]))
                continue
            try:
                # Prepared at once: the validated event is freed here, and the batch waits
                # for the database holding only what the fold needs of it.
                events.append(prepare(event))
            except OverflowError as exc:
                # The contract refuses the dates the fold cannot take (a due date past year
                # 9999); should one slip through, it goes to the dead letters with the reason
                # rather than stop the scorer on it at every restart. Only this error: any
                # other is a bug, which should stop the scorer, not empty the scores quietly.
                log.error("an event could not be folded; sent to the dead-letter topic", exc_info=True)
                dead.append((message, [Problem("", f"cannot be folded: {exc}").as_dict()]))
                continue
            origins.add(message)
        if dead:
            self.dead_letters.send(dead)
        return Prepared(events, origins, len(messages), len(dead), started)


# -- when a batch rescores -------------------------------------------------------------------


class Rescore(NamedTuple):
    as_of: date
    metric_ids: list[str] | None  # None: every metric


class RescoreRule:
    """When a batch rescores, and what: decided here alone.

    - A new as-of date (the first batch, or local midnight passed): every metric.
    - Otherwise the metrics folded into and not rescored yet, at most once per `every_s`
      (0.4 s). Batches come every half second or less often unless the scorer is behind, so
      this only thins the rescores of a backlog, where each batch would otherwise reread the
      same windows; a rescore after several batches gives the same scores as one after each.
    - A batch without events is the loop's (it is idle): it rescores what is left unscored
      at once, so the published board never waits for the next event.
    - A replay (`each_batch=False`) folds first and scores once at the end: never.

    `plan` only asks; `done` records what the committed transaction did. The worker thread
    calls both; the loop asks `has_work_when_idle`.
    """

    def __init__(self, today: Callable[[], date], *, each_batch: bool = True, every_s: float = 0.4,
                 monotonic: Callable[[], float] = time.monotonic):
        self.today = today
        self.each_batch = each_batch
        self.every_s = every_s
        self.monotonic = monotonic
        self.as_of: date | None = None  # the as-of date of the last rescore
        self.unscored: set[str] = set()  # metrics folded into but not rescored yet
        self._last: float | None = None

    def has_work_when_idle(self) -> bool:
        """Whether an empty batch has work: a new as-of date, or metrics still unscored."""
        return self.each_batch and (bool(self.unscored) or self.today() != self.as_of)

    def plan(self, touched: Iterable[str], has_events: bool) -> Rescore | None:
        """The rescore a batch that folded into `touched` makes with its fold, if any."""
        if not self.each_batch:
            return None
        as_of = self.today()
        if as_of != self.as_of:
            return Rescore(as_of, None)
        unscored = self.unscored.union(touched)
        due = self._last is None or self.monotonic() - self._last >= self.every_s
        if unscored and (not has_events or due):
            return Rescore(as_of, sorted(unscored))
        return None

    def done(self, touched: Iterable[str], rescore: Rescore | None) -> None:
        """The batch's transaction committed, with this rescore (or none)."""
        if rescore is not None:
            self.rescored(rescore.as_of)
        elif self.each_batch:
            self.unscored.update(touched)

    def rescored(self, as_of: date) -> None:
        self.as_of = as_of
        self.unscored.clear()
        self._last = self.monotonic()


# -- step 2: fold and rescore, in one transaction ----------------------------------------------


@dataclass
class Folded:
    outcome: FoldOutcome | None  # None: nothing folded
    refused: list[tuple[int, DBAPIError]]  # the events the database refused: index in the batch, error
    changes: int  # score changes queued in the outbox


class Writer(Protocol):
    """The store's write side, as the fold step uses it."""

    engine: Engine

    def fold_prepared(self, conn: Connection, batch: list[Folding]) -> FoldOutcome: ...


class Scores(Protocol):
    """The store's published scores, as the fold and publish steps use them."""

    def rescore(self, conn: Connection, as_of: date, metric_ids: list[str] | None = None) -> list: ...

    def pending_outbox(self, conn: Connection, limit: int = 5000) -> list[tuple[int, str, bytes]]: ...

    def clear_outbox(self, conn: Connection, ids: list[int]) -> None: ...


class FoldAndRescore:
    """Step 2: claim and fold a batch's events, rescore what the rule says, queue the changes:
    in ONE transaction, so a crash leaves all of it or none (the batch comes again, and its
    claimed events are found and skipped).

    The database's own trouble is handled here too. A transaction that fails on a deadlock, a
    lost connection or another scorer's claim racing ours is run again (`in_transaction`).
    A batch the database refuses for its data (a NUL it cannot store, a number out of range,
    a constraint: whatever slipped past the contract) is folded again in halves, in order,
    down to the single events it refuses (`fold_in_halves`), and the changes are then
    rescored in a transaction of their own."""

    def __init__(self, writer: Writer, scores: Scores, rule: RescoreRule, attempts: int = 5):
        self.writer = writer
        self.scores = scores
        self.rule = rule
        self.attempts = attempts

    def __call__(self, events: list[Folding]) -> Folded:
        rule = self.rule
        if not events:  # the loop's empty batch, or one the contract refused whole: a rescore at most
            rescore = rule.plan((), has_events=False)
            changes = self.rescore(*rescore) if rescore else 0
            return Folded(None, [], changes)

        def fold_and_rescore(conn: Connection) -> tuple[FoldOutcome | None, Rescore | None, int]:
            outcome = self.writer.fold_prepared(conn, events)
            rescore = rule.plan(outcome.touched, has_events=True)
            changes = self.scores.rescore(conn, *rescore) if rescore else ()
            return outcome, rescore, len(changes)

        refused: list[tuple[int, DBAPIError]] = []
        try:
            outcome, rescore, changes = self.in_transaction(fold_and_rescore)
        except DBAPIError as exc:
            if not refused_data(exc):
                raise  # a lost connection (after its retries) or a bug: stop, the batch comes again
            # The fold alone, from the whole batch (the refusal may have been the rescore's:
            # then the whole folds, and the rescore below raises it again), in halves.
            outcome, refused = self.fold_in_halves(events)
            rescore = rule.plan(outcome.touched if outcome else (), has_events=True)
            changes = len(self.in_transaction(lambda conn: self.scores.rescore(conn, *rescore))) if rescore else 0
        rule.done(outcome.touched if outcome else (), rescore)
        return Folded(outcome, refused, changes)

    def rescore(self, as_of: date, metric_ids: list[str] | None = None) -> int:
        """Rescore (these metrics, or all) as of `as_of` on its own and queue the changes; how many."""
        changes = len(self.in_transaction(lambda conn: self.scores.rescore(conn, as_of, metric_ids)))
        self.rule.rescored(as_of)
        return changes

    def fold_in_halves(self, events: list[Folding]) -> tuple[FoldOutcome | None, list[tuple[int, DBAPIError]]]:
        """Fold the events in one transaction. Should the database refuse them for their data, fold
        them again in halves, each in its own transaction, down to the single events it refuses;
        returns the outcome of what was folded and the refused events' indexes with the error.

        Exactly once, in order: a refused transaction is rolled back whole, halves are folded
        first half first (a case's later version still replaces its earlier one), and every
        event's claim commits with what it adds, so a batch read again after a crash between
        halves finds the folded ones claimed."""
        outcome: FoldOutcome | None = None
        refused: list[tuple[int, DBAPIError]] = []
        ranges = [(0, len(events))]  # a stack: the next range to fold is the last
        while ranges:
            start, stop = ranges.pop()
            part = events if stop - start == len(events) else events[start:stop]
            try:
                folded = self.in_transaction(lambda conn, part=part: self.writer.fold_prepared(conn, part))
            except DBAPIError as exc:
                if not refused_data(exc):
                    raise
                if stop - start == 1:
                    log.error("the database refused an event; sent to the dead-letter topic",
                              extra={"error": refusal(exc)})
                    refused.append((start, exc))
                else:
                    log.warning("the database refused a batch; folding it again in halves",
                                extra={"events": stop - start, "error": refusal(exc)})
                    middle = (start + stop) // 2
                    ranges += [(middle, stop), (start, middle)]
                continue
            outcome = folded if outcome is None else _combined(outcome, folded)
        return outcome, refused

    def in_transaction(self, work: Callable[[Connection], object]):
        """Run `work(conn)` in a transaction, again after a deadlock or a lost connection."""
        for attempt in range(1, self.attempts + 1):
            try:
                with self.writer.engine.begin() as conn:
                    return work(conn)
            except (OperationalError, DBAPIError) as exc:
                if attempt == self.attempts or not retryable(exc):
                    raise
                log.warning("database transaction retried", extra={"attempt": attempt, "error": str(exc)[:200]})
                time.sleep(0.05 * 2 ** attempt)
        raise AssertionError("unreachable")


def retryable(exc: Exception) -> bool:
    if refused_data(exc):
        return False  # the same data is refused again (and its message may hold any word below)
    text = str(exc).lower()
    # A duplicate key: another scorer claimed one of the batch's event ids (or made one of its
    # parts) while this transaction ran. Run again, the batch finds them and skips them.
    return any(word in text for word in ("deadlock", "could not serialize", "database is locked",
                                         "connection", "server closed", "duplicate key value"))


def refused_data(exc: Exception) -> bool:
    """The database refused the data, not the work: a data exception (SQLSTATE class 22: a NUL
    it cannot store, a number out of range, a string too long) or a constraint the data breaks
    (class 23), but not a duplicate key, which is another scorer's claim racing ours (retried)."""
    if isinstance(exc, DataError):
        return True
    if isinstance(exc, IntegrityError):
        if getattr(exc.orig, "sqlstate", None) == "23505":
            return False
        text = str(exc.orig).lower()
        return "duplicate key value" not in text and "unique constraint failed" not in text
    return False


def refusal(exc: DBAPIError) -> str:
    """The database's reason, for a dead letter: its message, detail and SQLSTATE."""
    diag = getattr(exc.orig, "diag", None)
    message = getattr(diag, "message_primary", None) or str(exc.orig).strip().split("\n")[0]
    detail = getattr(diag, "message_detail", None)
    sqlstate = getattr(exc.orig, "sqlstate", None)
    reason = f"refused by the database: {message}"
    if detail:
        reason += f" ({detail})"
    if sqlstate:
        reason += f" [SQLSTATE {sqlstate}]"
    return reason[:1000]


def _combined(outcome: FoldOutcome, more: FoldOutcome) -> FoldOutcome:
    """Two folds' outcomes as one: counts added, touched days joined (whatever else it counts)."""
    for name in (f.name for f in fields(outcome)):
        mine, theirs = getattr(outcome, name), getattr(more, name)
        if isinstance(mine, dict):
            for metric, days in theirs.items():
                mine.setdefault(metric, set()).update(days)
        else:
            setattr(outcome, name, mine + theirs)
    return outcome


# -- step 3: publish ---------------------------------------------------------------------------


class PublishOutbox:
    """Step 3: the queued score changes (this batch's, and any a crash left behind) to the scores
    topic, oldest first; each row is deleted once Kafka has acknowledged it."""

    def __init__(self, scores: Scores, engine: Engine, producer: Producer, topic: str, metrics: ScorerMetrics):
        self.scores = scores
        self.engine = engine
        self.producer = producer
        self.topic = topic
        self.metrics = metrics

    def __call__(self) -> int:
        published = 0
        while True:
            with self.engine.connect() as conn:
                pending = self.scores.pending_outbox(conn)
            if not pending:
                return published
            futures = [self.producer.send(self.topic, key=key.encode(), value=payload) for _, key, payload in pending]
            self.producer.flush(timeout=30)
            for future in futures:
                future.get(timeout=30)
            with self.engine.begin() as conn:
                self.scores.clear_outbox(conn, [row_id for row_id, _, _ in pending])
            published += len(pending)
            self.metrics.score_changes.inc(len(pending))


# -- steps 2 and 3 for one batch, in order --------------------------------------------------------


class StoreBatch:
    """What the database worker does with one validated batch: fold and rescore (step 2), send
    the events the database refused to the dead letters, publish the outbox (step 3)."""

    def __init__(self, fold: FoldAndRescore, dead_letters: DeadLetters, publish: PublishOutbox,
                 metrics: ScorerMetrics, reread: Reread):
        self.fold = fold
        self.dead_letters = dead_letters
        self.reread = reread
        self.publish = publish
        self.metrics = metrics
        self.totals = BatchReport(0, 0, 0, 0, 0, 0.0)

    def __call__(self, batch: Prepared) -> BatchReport:
        folded = self.fold(batch.events)
        dead = batch.dead_letters
        if folded.refused:
            origins = batch.origins
            if origins is None or len(origins) != len(batch.events):
                raise folded.refused[0][1]
            # Read again from the topic, and written (and acknowledged) before the batch's
            # offsets are committed.
            messages = self.reread([origins[index] for index, _ in folded.refused])
            self.dead_letters.send([(message, [Problem("", refusal(error)).as_dict()])
                                    for message, (_, error) in zip(messages, folded.refused)])
            dead += len(folded.refused)
        self.publish()
        outcome = folded.outcome
        report = BatchReport(batch.messages, outcome.folded if outcome else 0, outcome.duplicates if outcome else 0,
                             dead, folded.changes, time.perf_counter() - batch.started)
        self.metrics.observe_batch(report)
        self.totals.add(report)
        return report


# -- the database worker -------------------------------------------------------------------------


Offsets = dict  # TopicPartition -> the offset to resume from


class InOrder:
    """Validated batches to the database worker, one at a time and in the order read.

    The loop validates the next batches while one is in the database (on a worker thread
    that mostly waits for PostgreSQL), up to `depth` batches ahead, so neither side waits
    for a slow batch of the other. A batch's offsets are committed (`commit(offsets, wait)`)
    only once its steps are done, oldest first; a batch queued behind one that failed never
    reaches the database (its events would count before the failed batch's, and a case's
    older version could then replace its newer one when the failed batch comes again)."""

    def __init__(self, store_batch: Callable[[Prepared], BatchReport], commit: Callable[[Offsets, bool], None],
                 depth: int = 2):
        self.store_batch = store_batch
        self.commit = commit
        self.depth = depth
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer-db")
        # Queued batches keep only their offsets (and, in `Prepared.origins`, what a dead
        # letter needs of each event): the records themselves are done with.
        self.in_flight: deque[tuple[Future, Offsets]] = deque()
        self._failed = False

    def submit(self, batch: Prepared, offsets: Offsets) -> None:
        """Queue a validated batch behind the ones before it (waiting while `depth` are queued)."""
        self.finish(done_only=True)
        while len(self.in_flight) >= self.depth:
            self._finish_oldest(wait_for_commit=False)
        self.in_flight.append((self._worker.submit(self.store_in_order, batch), offsets))

    def store_in_order(self, batch: Prepared) -> BatchReport:
        """The worker's: the batch's steps, unless an earlier batch failed."""
        if self._failed:
            raise RuntimeError("an earlier batch failed; this one will be read again")
        try:
            return self.store_batch(batch)
        except BaseException:
            self._failed = True
            raise

    def finish(self, done_only: bool = False) -> BatchReport | None:
        """Wait for the queued batches (or, with `done_only`, take those already done) and commit
        their offsets in order; a batch's failure is raised here."""
        report = None
        while self.in_flight and (not done_only or self.in_flight[0][0].done()):
            report = self._finish_oldest(wait_for_commit=not done_only)
        return report

    def _finish_oldest(self, wait_for_commit: bool = True) -> BatchReport:
        future, offsets = self.in_flight.popleft()
        report = future.result()
        self.commit(offsets, wait_for_commit)
        if report.messages:
            log.info("batch folded", extra={"messages": report.messages, "folded": report.folded,
                                            "duplicates": report.duplicates, "dead_letters": report.dead_letters,
                                            "changes": report.changes, "ms": round(report.fold_s * 1000, 1)})
        return report

    def close(self) -> None:
        self._worker.shutdown(wait=True)
