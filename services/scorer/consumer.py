"""The scorer's consumer: events from Kafka into daily totals and scores, exactly once in effect.

For each batch (bounded by size and time):
  1. decode and validate every message and work out what it adds; bad ones (and any the
     fold could not take) go to the dead-letter topic with the reason;
  2. fold the good ones in ONE database transaction (event ids are unique keys, so a
     redelivered batch changes nothing) and commit it. Should the database refuse the
     batch for its data (a NUL it cannot store, a number out of range, a constraint:
     whatever slipped past the contract), fold it again in halves, in order, down to the
     single events it refuses, and dead-letter just those with the reason;
  3. rescore what the batch touched, writing changed scores and an outbox row in a
     second short transaction (at most every 0.4 s: in a backlog, a batch may leave
     its rescore to the next);
  4. publish the outbox to `cityscore.scores`, then commit the Kafka offsets.
A crash between any two steps is safe: the batch comes again and its events are
already claimed; the outbox is published on the next start.

While one batch is in the database (steps 2-4, on a worker thread that mostly waits
for PostgreSQL), the loop fetches and validates the next ones, up to `queue_depth`
batches ahead, so that neither side waits for a slow batch of the other. Batches still
reach the database one at a time and in order; one queued behind a batch that failed
never does. A batch's offsets are committed only once its step 4 is done. If a
rebalance moves a partition while its batch is in the database, the new owner reads
the batch again; its claim of the same event ids waits for ours to commit and then
finds them taken, so the batch still counts once and in order. (No rebalance listener
commits for us: kafka-python 3 calls listeners on its network loop, where a blocking
commit stalls.)
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from array import array
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timezone
from typing import NamedTuple

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError
from kafka.structs import OffsetAndMetadata
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from shared.core.catalog import Catalog
from shared.core.contract import InvalidEvent, Problem, validate_event
from shared.platform.clock import Clock, current_as_of, system_clock
from shared.platform.kafka import ensure_topics, events_topic_configs, kafka_security, make_producer, poll
from shared.store.score_store import FoldOutcome, Folding, ScoreStore
from shared.platform.settings import Settings

from .metrics import ScorerMetrics

log = logging.getLogger("cityscore.scorer")

class EventsLost(RuntimeError):
    """Events the scorers had not folded are no longer in the topic: the scorer stops."""


@dataclass
class BatchReport:
    messages: int
    folded: int
    duplicates: int
    dead_letters: int
    changes: int
    fold_s: float


class Origin(NamedTuple):
    """Where a message came from, and what it held: all a dead letter needs of it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Origins:
    """Where each event of a batch prepared for folding came from, in the same order: enough to
    dead-letter one the database refuses. Cheap: partitions and offsets in arrays, the value
    bytes the consumer already read (not copied) and one copy of each key (a metric's name):
    about 270 bytes an event, most of it the value."""

    __slots__ = ("topic", "partitions", "offsets", "keys", "values", "_key")

    def __init__(self) -> None:
        self.topic = ""  # the scorer reads one topic
        self.partitions = array("i")
        self.offsets = array("q")
        self.keys: list[bytes | None] = []
        self.values: list[bytes | None] = []
        self._key: dict[bytes | None, bytes | None] = {}

    def add(self, message) -> None:
        self.topic = message.topic
        self.partitions.append(message.partition)
        self.offsets.append(message.offset)
        self.keys.append(self._key.setdefault(message.key, message.key))
        self.values.append(message.value)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, index: int) -> Origin:
        return Origin(self.topic, self.partitions[index], self.offsets[index], self.keys[index], self.values[index])


@dataclass
class Batch:
    """Messages read together, and the offset to commit for each partition once they are in."""

    messages: list = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)


class Scorer:
    """One scorer process: a member of the consumer group on the events topic."""

    def __init__(self, settings: Settings, store: ScoreStore, catalog: Catalog, *,
                 clock: Clock = system_clock, metrics: ScorerMetrics | None = None, client_id: str = "cityscore-scorer",
                 rescore_each_batch: bool = True, queue_depth: int = 2):
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.clock = clock
        self.metrics = metrics or ScorerMetrics()
        self.client_id = client_id
        self.stopping = threading.Event()
        self.as_of: date | None = None
        self.last_beat = time.monotonic()  # the loop's heartbeat, for the liveness probe
        # A replay folds first and scores once at the end: no stream of intermediate changes.
        self.rescore_each_batch = rescore_each_batch
        self.totals = BatchReport(0, 0, 0, 0, 0, 0.0)
        self._consumer: KafkaConsumer | None = None
        self._producer = None
        # One worker: batches reach the database one at a time, in the order read.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer-db")
        # Batches of prepared events waiting for the worker, oldest first, with their offsets to commit.
        self._in_flight: deque[tuple[Future, Batch]] = deque()
        self.queue_depth = queue_depth
        self._committed_async: dict[TopicPartition, int] = {}  # offsets committed without waiting
        self._unscored: set[str] = set()  # metrics folded into but not rescored yet
        self._last_rescore = 0.0
        self.rescore_every_s = 0.4
        self._failed = False

    # -- Kafka ----------------------------------------------------------------------

    def connect(self) -> None:
        s = self.settings
        security = kafka_security(s)
        ensure_topics(s.kafka_bootstrap_servers, {s.events_topic: s.topic_partitions, s.dead_letter_topic: 1,
                                                   s.scores_topic: s.topic_partitions}, timeout_s=30,
                      security=security, configs={s.events_topic: events_topic_configs(s)})
        self._producer = make_producer(s.kafka_bootstrap_servers, 30, client_id=self.client_id + "-out",
                                       reconnect_backoff_max_ms=s.kafka_reconnect_backoff_max_ms, security=security)
        self._consumer = KafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            **security,
            client_id=self.client_id,
            group_id=s.scorer_group,
            enable_auto_commit=False,  # offsets are committed only after the database has the batch
            # Never skip on our own: Kafka's "earliest" would quietly move a scorer whose next
            # event retention deleted to the log start. With "none" Kafka tells us, and _poll
            # starts a partition without a committed offset at its beginning itself.
            auto_offset_reset="none",
            max_poll_records=s.batch_max,
            max_poll_interval_ms=300_000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            # kafka-python checks record-batch CRCs in pure Python, which costs three quarters
            # of the consumer's time. The broker verified each batch's CRC when it accepted
            # it, TCP checksums the wire, and a damaged record fails validation and goes to
            # the dead-letter topic, so the check is off unless SCORER_CHECK_CRCS=true.
            check_crcs=s.scorer_check_crcs,
            # A member whose metadata lacked the topic when the group formed gets no partitions
            # until its next metadata refresh: 30 s rather than kafka-python's 5 minutes.
            metadata_max_age_ms=30_000,
            reconnect_backoff_max_ms=s.kafka_reconnect_backoff_max_ms,
        )
        # Join the group only once this client knows the topic's partitions: a topic created
        # a moment ago is otherwise assigned to nobody ("No partition metadata").
        deadline = time.monotonic() + 30
        while not self._consumer.partitions_for_topic(s.events_topic) and time.monotonic() < deadline:
            time.sleep(0.2)
        self._consumer.subscribe([s.events_topic])

    def close(self) -> None:
        if self._in_flight:
            try:
                self.finish_in_flight()
            except Exception:  # noqa: BLE001 - not committed: the batch comes again and is ignored
                log.warning("the last batch did not finish", exc_info=True)
        self._worker.shutdown(wait=True)
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
            self._consumer = None
        if self._producer is not None:
            try:
                self._producer.close(timeout=10)
            except Exception:  # noqa: BLE001
                log.warning("producer did not close cleanly", exc_info=True)
            self._producer = None

    def collect(self) -> Batch:
        """Messages until the batch is full or its time is up."""
        assert self._consumer is not None
        deadline = time.monotonic() + self.settings.batch_wait_s
        batch = Batch()
        messages = batch.messages
        while len(messages) < self.settings.batch_max and not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            polled = self._poll(timeout_ms=int(remaining * 1000) + 1,
                                max_records=self.settings.batch_max - len(messages))
            for tp, records in polled.items():
                messages.extend(records)
                # A partition's records come in offset order: its last one says where to resume.
                batch.offsets[tp] = records[-1].offset + 1
        return batch

    def _poll(self, timeout_ms: int, max_records: int) -> dict:
        """Poll, starting a partition the group never committed at its beginning, and stopping
        (EventsLost) where the next event to fold is no longer in the topic."""
        assert self._consumer is not None
        try:
            return poll(self._consumer, timeout_ms=timeout_ms, max_records=max_records)
        except NoOffsetForPartitionError as exc:
            # A new group (or a partition it never had an event from): from the beginning,
            # unless the beginning is gone, for then this group never saw those events.
            fresh = [tp for tp in (exc.args[0] if exc.args else ()) if tp in self._consumer.assignment()]
            starts = self._consumer.beginning_offsets(fresh) if fresh else {}
            gone = {tp: start for tp, start in starts.items() if start > 0}
            if gone:
                raise self._events_lost({tp: None for tp in gone}, gone)
            for tp in fresh:
                self._consumer.seek(tp, starts[tp])
            return {}
        except OffsetOutOfRangeError as exc:
            # The committed offset (or the position reached) is outside what the partition holds.
            nexts = dict(exc.args[0]) if exc.args and isinstance(exc.args[0], dict) else {}
            raise self._events_lost(nexts, self._consumer.beginning_offsets(list(nexts))) from exc

    def _events_lost(self, nexts: dict[TopicPartition, int | None], starts: dict[TopicPartition, int]) -> "EventsLost":
        """Log, and return to raise, why the scorer stops: for each partition, where it would
        read next (None: no committed offset) and where the log now starts."""
        s = self.settings
        ends = self._consumer.end_offsets(list(nexts)) if self._consumer is not None else {}
        said = []
        for tp in sorted(nexts):
            offset, start, end = nexts[tp], starts.get(tp), ends.get(tp)
            where = f"partition {tp.partition} of {tp.topic}"
            if offset is None:
                text = (f"{where}: the scorers have no committed offset and the log starts at {start}: "
                        f"its first {start} events were deleted before group {s.scorer_group} folded them")
            elif start is not None and offset < start:
                text = (f"{where}: the scorers' next event is at offset {offset} but the log starts at {start}: "
                        f"events {offset}-{start - 1} were deleted (retention or deleted records) before they "
                        f"were folded")
            else:
                text = (f"{where}: the scorers' next event is at offset {offset} but the log holds "
                        f"{start}-{end}: was the topic deleted and made again?")
            log.error(text + "; the scorer stops rather than skip them",
                      extra={"topic": tp.topic, "partition": tp.partition, "committed_offset": offset,
                             "log_start": start, "log_end": end, "group": s.scorer_group})
            said.append(text)
        return EventsLost(
            "; ".join(said) + ". The scorer stops rather than publish scores without those events. Restore them, "
            "or rebuild the scores from what the topic still holds (cityscore rebuild --allow-partial-history), "
            f"or accept the gap by moving the group past it (kafka-consumer-groups.sh --group {s.scorer_group} "
            f"--topic {s.events_topic} --reset-offsets --to-earliest --execute).")

    # -- one batch ------------------------------------------------------------------------

    def validate(self, messages: list) -> tuple[list[Folding], Origins, int]:
        """The batch's valid events, prepared for folding, where each came from, and how many
        others went to the dead-letter topic (now, before any commit)."""
        events = []
        origins = Origins()
        dead = []
        prepare = self.store.prepare
        for message in messages:
            try:
                event = validate_event(message.value, self.catalog)
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
            self.dead_letter(dead)
        return events, origins, len(dead)

    def store_batch(self, events: list[Folding], message_count: int, started: float, dead: int,
                    origins: Origins | None = None) -> BatchReport:
        """Steps 2-4: fold in one transaction, rescore what it touched, publish the outbox.

        `origins` says where each event came from (in the same order), to dead-letter those the
        database refuses; without it, a refusal is raised."""
        outcome = None
        if events:
            outcome, refused = self.fold(events)
            if refused:
                if origins is None or len(origins) != len(events):
                    raise refused[0][1]
                # Written (and acknowledged) before the batch's offsets are committed.
                self.dead_letter([(origins[index], [Problem("", _refusal(error)).as_dict()])
                                  for index, error in refused])
                dead += len(refused)
        as_of = current_as_of(self.clock, self.catalog)
        changes = 0
        if self.rescore_each_batch:
            if outcome:
                self._unscored.update(outcome.touched)
            new_day = as_of != self.as_of
            # A batch without events is the loop's: a new day, or it is idle with something unscored.
            if new_day or (self._unscored and (not events or self._rescore_due())):
                changes = self.rescore(as_of, None if new_day else sorted(self._unscored))
                self._unscored.clear()
                self._last_rescore = time.monotonic()
        self.publish_outbox()

        elapsed = time.perf_counter() - started
        report = BatchReport(message_count, outcome.folded if outcome else 0, outcome.duplicates if outcome else 0,
                             dead, changes, elapsed)
        self.metrics.observe_batch(report)
        for name in ("messages", "folded", "duplicates", "dead_letters", "changes", "fold_s"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(report, name))
        return report

    def fold(self, events: list[Folding]) -> tuple[FoldOutcome | None, list[tuple[int, DBAPIError]]]:
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
                folded = self._in_transaction(lambda conn, part=part: self.store.fold_prepared(conn, part))
            except DBAPIError as exc:
                if not _refused(exc):
                    raise  # a lost connection (after its retries) or a bug: stop, the batch comes again
                if stop - start == 1:
                    log.error("the database refused an event; sent to the dead-letter topic",
                              extra={"error": _refusal(exc)})
                    refused.append((start, exc))
                else:
                    log.warning("the database refused a batch; folding it again in halves",
                                extra={"events": stop - start, "error": _refusal(exc)})
                    middle = (start + stop) // 2
                    ranges += [(middle, stop), (start, middle)]
                continue
            outcome = folded if outcome is None else _combined(outcome, folded)
        return outcome, refused

    def _rescore_due(self) -> bool:
        """At most one rescore per `rescore_every_s` (0.4 s). Batches come every half second
        or less often unless the scorer is behind, so this only thins the rescores of a
        backlog, where each batch would otherwise reread the same windows. A rescore after
        several batches gives the same scores as one after each. What a batch without a
        rescore touched is rescored with a later batch, or by the loop once it is idle."""
        return time.monotonic() - self._last_rescore >= self.rescore_every_s

    def submit(self, batch: Batch) -> None:
        """Validate this batch here, then queue it for the database worker behind the ones before it."""
        started = time.perf_counter()
        events, origins, dead = self.validate(batch.messages)
        self.finish_in_flight(done_only=True)
        while len(self._in_flight) >= self.queue_depth:
            self._finish_oldest(wait_for_commit=False)
        future = self._worker.submit(self._store_in_order, events, len(batch.messages), started, dead, origins)
        # Queued batches keep only their offsets (and, in `origins`, what a dead letter needs
        # of each event): the records themselves are done with.
        self._in_flight.append((future, Batch(offsets=batch.offsets)))

    def _store_in_order(self, events: list[Folding], message_count: int, started: float, dead: int,
                        origins: Origins | None = None) -> BatchReport:
        # A batch queued behind one that failed must not reach the database: its events
        # would be counted before the failed batch's, and a case's older version could
        # then replace its newer one when the failed batch comes again.
        if self._failed:
            raise RuntimeError("an earlier batch failed; this one will be read again")
        try:
            return self.store_batch(events, message_count, started, dead, origins)
        except BaseException:
            self._failed = True
            raise

    def finish_in_flight(self, done_only: bool = False) -> BatchReport | None:
        """Wait for the batches in the database (or, with `done_only`, take those already done) and
        commit their offsets in order; a batch's failure is raised here."""
        report = None
        while self._in_flight and (not done_only or self._in_flight[0][0].done()):
            report = self._finish_oldest(wait_for_commit=not done_only)
        if not done_only and self._committed_async:
            # Make sure of what the loop committed without waiting (a lost one is covered here).
            self.commit_offsets(self._committed_async)
        return report

    def _finish_oldest(self, wait_for_commit: bool = True) -> BatchReport:
        future, batch = self._in_flight.popleft()
        report = future.result()
        self.commit_offsets(batch.offsets, wait=wait_for_commit)
        if report.messages:
            log.info("batch folded", extra={"messages": report.messages, "folded": report.folded,
                                            "duplicates": report.duplicates, "dead_letters": report.dead_letters,
                                            "changes": report.changes, "ms": round(report.fold_s * 1000, 1)})
        return report

    def rescore(self, as_of: date, metric_ids: list[str] | None = None) -> int:
        """Rescore (these metrics, or all) as of `as_of` and queue the changes; returns how many."""
        changes = len(self._in_transaction(lambda conn: self.store.rescore(conn, as_of, metric_ids)))
        self.as_of = as_of
        return changes

    def _in_transaction(self, work, attempts: int = 5):
        """Run `work(conn)` in a transaction, again after a deadlock or a lost connection."""
        for attempt in range(1, attempts + 1):
            try:
                with self.store.engine.begin() as conn:
                    return work(conn)
            except (OperationalError, DBAPIError) as exc:
                if attempt == attempts or not _retryable(exc):
                    raise
                log.warning("database transaction retried", extra={"attempt": attempt, "error": str(exc)[:200]})
                time.sleep(0.05 * 2 ** attempt)
        raise AssertionError("unreachable")

    def dead_letter(self, dead: list) -> None:
        assert self._producer is not None
        futures = []
        for message, problems in dead:
            payload = {
                "topic": message.topic, "partition": message.partition, "offset": message.offset,
                "key": message.key.decode("utf-8", "replace") if message.key else None,
                "value": message.value.decode("utf-8", "replace") if message.value else None,
                "problems": problems,
                "dead_at": datetime.now(timezone.utc).isoformat(),
            }
            futures.append(self._producer.send(self.settings.dead_letter_topic, key=message.key,
                                               value=orjson.dumps(payload)))
        self._producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)  # a dead letter is written before its offset is committed
        self.metrics.dead_letters.inc(len(dead))
        log.warning("messages sent to the dead-letter topic", extra={"count": len(dead),
                                                                     "first": dead[0][1][:3]})

    def publish_outbox(self) -> int:
        """Publish queued score changes (this batch's and any a crash left behind)."""
        assert self._producer is not None
        published = 0
        while True:
            with self.store.engine.connect() as conn:
                pending = self.store.pending_outbox(conn)
            if not pending:
                return published
            futures = [self._producer.send(self.settings.scores_topic, key=key.encode(), value=payload)
                       for _, key, payload in pending]
            self._producer.flush(timeout=30)
            for future in futures:
                future.get(timeout=30)
            with self.store.engine.begin() as conn:
                self.store.clear_outbox(conn, [row_id for row_id, _, _ in pending])
            published += len(pending)
            self.metrics.score_changes.inc(len(pending))

    def commit_offsets(self, offsets: dict[TopicPartition, int], wait: bool = True) -> None:
        """Commit where to resume. Without `wait` the loop goes on at once (the broker's answer
        is logged if it fails); a later commit, or the waited one when the loop idles or stops,
        covers a commit that was lost. Either way the batch is already in the database, so a
        lost commit means only that it is read again and found already claimed."""
        assert self._consumer is not None
        # Only partitions still ours: a stale offset for one that a rebalance moved to another
        # scorer would wind its position back (harmless, since claimed ids are ignored, but wasteful).
        assigned = self._consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        if not wait:
            self._committed_async.update(offsets)
            self._consumer.commit_async({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()},
                                        callback=_log_failed_commit)
            return
        # Later batches' offsets are never behind earlier ones for the same partition.
        pending = {tp: offset for tp, offset in {**self._committed_async, **offsets}.items() if tp in assigned}
        self._committed_async.clear()
        try:
            self._consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in pending.items()})
        except Exception as exc:  # noqa: BLE001 - a rebalance is under way, or took the partition
            # Safe: the batch is in the database and its event ids are claimed. Kept to commit
            # again when the loop next idles (only for partitions still ours by then): with no
            # new event to read, nothing else would ever commit them, and the group would
            # look behind for good (after a rebalance while the scorer caught up, say).
            self._committed_async.update(pending)
            log.warning("offset commit failed; it is tried again, or the batch is read again and ignored",
                        extra={"error": str(exc)[:200]})

    # -- the loop ---------------------------------------------------------------------------

    def run(self, until_idle: bool = False) -> None:
        """Consume until stopped (or, with `until_idle`, until the topic has no more events)."""
        if self._consumer is None:
            self.connect()
        # Start from a clean state: publish what a crash left, score the current day.
        self.publish_outbox()
        idle_batches = 0
        try:
            while not self.stopping.is_set():
                self.last_beat = time.monotonic()
                batch = self.collect()
                new_day = self.rescore_each_batch and current_as_of(self.clock, self.catalog) != self.as_of
                # Idle with metrics unscored (the last batches left their rescore to a later
                # one): an empty batch rescores them.
                if batch.messages or new_day or self._unscored:
                    self.submit(batch)
                else:
                    self.finish_in_flight()  # idle: nothing to overlap with, so don't hold its commit
                self.metrics.observe_lag(self._consumer)
                if until_idle:
                    idle_batches = 0 if batch.messages else idle_batches + 1
                    if idle_batches >= 2 and not self._in_flight and self.caught_up():
                        return
        finally:
            self.finish_in_flight()  # the database finishes the batch it has, then its offsets are committed

    def alive(self, stalled_after_s: float = 120.0) -> bool:
        """False when the consumer loop has not come round for too long (hung, or dead)."""
        return time.monotonic() - self.last_beat < stalled_after_s

    def caught_up(self) -> bool:
        assert self._consumer is not None
        assigned = list(self._consumer.assignment())
        if not assigned:
            return False
        ends = self._consumer.end_offsets(assigned)
        return all(self._consumer.position(tp) >= ends[tp] for tp in assigned)

    def install_signal_handlers(self) -> None:
        def stop(signum, _frame):
            log.info("stopping", extra={"signal": signum})
            self.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


def _retryable(exc: Exception) -> bool:
    if _refused(exc):
        return False  # the same data is refused again (and its message may hold any word below)
    text = str(exc).lower()
    # A duplicate key: another scorer claimed one of the batch's event ids (or made one of its
    # parts) while this transaction ran. Run again, the batch finds them and skips them.
    return any(word in text for word in ("deadlock", "could not serialize", "database is locked",
                                         "connection", "server closed", "duplicate key value"))


def _refused(exc: Exception) -> bool:
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


def _refusal(exc: DBAPIError) -> str:
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


def _log_failed_commit(offsets, response) -> None:
    # Called on kafka-python's network thread: log, nothing more.
    if isinstance(response, Exception):
        log.warning("offset commit failed; a later commit covers it, or the batch is read again and ignored",
                    extra={"error": str(response)[:200]})
