"""The scorer's consumer: events from Kafka into daily totals and scores, exactly once in effect.

This module is the Kafka loop alone: it reads batches (bounded by size and time), hands
each to the batch steps (services/scorer/steps.py) and commits the offsets of the batches
whose steps are done. For each batch, in order:
  1. `Validate`: decode and validate every message and work out what it adds; bad ones go
     to the dead-letter topic with the reason;
  2. `FoldAndRescore`: claim and fold the good ones, rescore what they touched (when the
     `RescoreRule` says: at most every 0.4 s, so in a backlog a batch may leave its rescore
     to the next) and queue the score changes in the outbox, all in ONE database
     transaction (event ids are unique keys, so a redelivered batch changes nothing).
     Should the database refuse the batch for its data (a NUL it cannot store, a number out
     of range, a constraint: whatever slipped past the contract), it is folded again in
     halves, in order, down to the single events it refuses, which are dead-lettered with
     the reason;
  3. `PublishOutbox`: publish the outbox to `cityscore.scores`;
  4. here: commit the Kafka offsets.
A crash between any two steps is safe: the batch comes again and its events are
already claimed; the outbox is published on the next start.

While one batch is in the database (steps 2-3, on a worker thread that mostly waits for
PostgreSQL: `InOrder`), the loop fetches and validates the next ones, up to `queue_depth`
batches ahead, so that neither side waits for a slow batch of the other. Batches still
reach the database one at a time and in order; one queued behind a batch that failed
never does. A batch's offsets are committed only once its step 3 is done. If a
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
from dataclasses import dataclass, field
from datetime import date

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError
from kafka.structs import OffsetAndMetadata

from shared.core.catalog import Catalog
from shared.platform.clock import Clock, current_as_of, system_clock
from shared.platform.kafka import (METADATA_MAX_AGE_MS, ensure_topics, events_topic_configs, kafka_security, make_producer,
                                   poll, subscribe_once_known)
from shared.store.published_scores import PublishedScores
from shared.store.score_writer import ScoreWriter

from .metrics import ScorerMetrics
from .settings import ScorerSettings
from .steps import (BatchReport, DeadLetters, FoldAndRescore, InOrder, Origin, PublishOutbox, RescoreRule,
                    StoreBatch, Validate)

log = logging.getLogger("cityscore.scorer")


# Records taken per poll while a batch fills (up to SCORER_BATCH_MAX): kafka-python hands out
# 5,000 at a time faster than 20,000 (bench/bench_scorer.py's bare reader: 91,700 against
# 81,000 events/s in five alternating pairs), and the batch is as large either way.
POLL_RECORDS = 5000
# Bytes a fetch brings at most, in all and from one partition: large enough that a backlog
# comes in few round trips (the rebuild's reader fetches the same).
FETCH_SIZES = {"fetch_max_bytes": 16 * 1024 * 1024, "max_partition_fetch_bytes": 8 * 1024 * 1024}


class EventsLost(RuntimeError):
    """Events the scorers had not folded are no longer in the topic: the scorer stops."""


@dataclass
class Batch:
    """Messages read together, and the offset to commit for each partition once they are in."""

    messages: list = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)


class Scorer:
    """One scorer process: a member of the consumer group on the events topic."""

    def __init__(self, settings: ScorerSettings, writer: ScoreWriter, scores: PublishedScores, catalog: Catalog, *,
                 clock: Clock = system_clock, metrics: ScorerMetrics | None = None, client_id: str = "cityscore-scorer",
                 rescore_each_batch: bool = True, queue_depth: int = 2):
        self.settings = settings
        self.writer = writer
        self.scores = scores
        self.catalog = catalog
        self.clock = clock
        self.metrics = metrics or ScorerMetrics()
        self.client_id = client_id
        self.stopping = threading.Event()
        self.last_beat = time.monotonic()  # the loop's heartbeat, for the liveness probe
        self._consumer: KafkaConsumer | None = None
        self._producer = None
        self._committed_async: dict[TopicPartition, int] = {}  # offsets committed without waiting
        self._commit_failed = False  # a waited commit failed in the finish under way

        # The batch steps, top-down (services/scorer/steps.py). The producer they write
        # through is made in connect(). A replay folds first and scores once at the end:
        # no stream of intermediate changes (rescore_each_batch=False).
        self.rule = RescoreRule(lambda: current_as_of(self.clock, catalog), each_batch=rescore_each_batch)
        self.dead_letters = DeadLetters(None, settings.dead_letter_topic, self.metrics)
        self.validate = Validate(catalog, writer.prepare, self.dead_letters)  # a test's writer may refuse one
        self.fold_and_rescore = FoldAndRescore(writer, scores, self.rule)
        self.publish_outbox = PublishOutbox(scores, writer.engine, None, settings.scores_topic, self.metrics)
        self.store_batch = StoreBatch(self.fold_and_rescore, self.dead_letters, self.publish_outbox, self.metrics,
                                      self.reread)
        self.in_order = InOrder(self.store_batch, self.commit_offsets, depth=queue_depth)

    @property
    def totals(self) -> BatchReport:
        return self.store_batch.totals

    @property
    def as_of(self) -> date | None:
        """The as-of date last rescored."""
        return self.rule.as_of

    @property
    def rescore_every_s(self) -> float:
        return self.rule.every_s

    @rescore_every_s.setter
    def rescore_every_s(self, seconds: float) -> None:
        self.rule.every_s = seconds

    # -- Kafka ----------------------------------------------------------------------

    def connect(self, join_group: bool = True) -> None:
        """Make sure of the topics, make the producer, and (unless not `join_group`) join the group."""
        s = self.settings
        security = kafka_security(s)
        if self._producer is None:
            self._connect_producer(s, security)
        if join_group and self._consumer is None:
            self._join_group(s, security)

    def _connect_producer(self, s: ScorerSettings, security: dict) -> None:
        ensure_topics(s.kafka_bootstrap_servers, {s.events_topic: s.topic_partitions, s.dead_letter_topic: 1,
                                                   s.scores_topic: s.topic_partitions}, timeout_s=30,
                      security=security, configs={s.events_topic: events_topic_configs(s)})
        self._producer = make_producer(s.kafka_bootstrap_servers, 30, client_id=self.client_id + "-out",
                                       reconnect_backoff_max_ms=s.kafka_reconnect_backoff_max_ms, security=security)
        self.dead_letters.producer = self.publish_outbox.producer = self._producer

    def _join_group(self, s: ScorerSettings, security: dict) -> None:
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
            **FETCH_SIZES,
            # kafka-python checks record-batch CRCs in pure Python, which costs three quarters
            # of the consumer's time. The broker verified each batch's CRC when it accepted
            # it, TCP checksums the wire, and a damaged record fails validation and goes to
            # the dead-letter topic, so the check is off unless SCORER_CHECK_CRCS=true.
            check_crcs=s.scorer_check_crcs,
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
            reconnect_backoff_max_ms=s.kafka_reconnect_backoff_max_ms,
        )
        subscribe_once_known(self._consumer, s.events_topic)

    def reread(self, origins: list[Origin]) -> list:
        """These messages read again from the topic, in the order asked (the database worker's, for
        the dead letters of events it refused: rare, so a consumer of its own each time)."""
        s = self.settings
        consumer = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap_servers, **kafka_security(s),
                                 client_id=self.client_id + "-reread", enable_auto_commit=False,
                                 check_crcs=s.scorer_check_crcs)
        try:
            found: dict[Origin, object] = {}
            for origin in sorted(set(origins)):
                tp = TopicPartition(origin.topic, origin.partition)
                consumer.assign([tp])
                consumer.seek(tp, origin.offset)
                deadline = time.monotonic() + 60
                while origin not in found:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"offset {origin.offset} of {tp} could not be read again")
                    for record in poll(consumer, timeout_ms=1000, max_records=1).get(tp, ()):
                        found[Origin(record.topic, record.partition, record.offset)] = record
                        if record.offset > origin.offset:  # compacted or deleted meanwhile
                            raise RuntimeError(f"offset {origin.offset} of {tp} is no longer in the topic")
            return [found[origin] for origin in origins]
        finally:
            consumer.close(autocommit=False)

    def close(self) -> None:
        if self.in_order.in_flight:
            try:
                self.finish_in_flight()
            except Exception:  # noqa: BLE001 - not committed: the batch comes again and is ignored
                log.warning("the last batch did not finish", exc_info=True)
        self.in_order.close()
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
                                max_records=min(POLL_RECORDS, self.settings.batch_max - len(messages)))
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

    # -- batches to the steps --------------------------------------------------------------

    def submit(self, batch: Batch) -> None:
        """Validate this batch here, then queue it for the database worker behind the ones before it."""
        self.in_order.submit(self.validate(batch.messages), batch.offsets)

    def finish_in_flight(self, done_only: bool = False) -> BatchReport | None:
        """Wait for the batches in the database (or, with `done_only`, take those already done) and
        commit their offsets in order; a batch's failure is raised here."""
        # Once a waited commit fails here (the broker away, say), the later batches' offsets (and the
        # loop's unwaited ones) are kept for the next idle loop instead of each waiting
        # SCORER_COMMIT_TIMEOUT again: a scorer stopping with batches in flight is held once, not once a batch.
        try:
            report = self.in_order.finish(done_only)
            if not done_only and self._committed_async and not self._commit_failed:
                # Make sure of what the loop committed without waiting (a lost one is covered here).
                self.commit_offsets(self._committed_async)
        finally:
            self._commit_failed = False
        return report

    @property
    def _in_flight(self):
        return self.in_order.in_flight

    def fold(self, events: list) -> tuple:
        """Fold prepared events (in halves around those the database refuses): (outcome, refused)."""
        return self.fold_and_rescore.fold_in_halves(events)

    def rescore(self, as_of: date, metric_ids: list[str] | None = None) -> int:
        """Rescore (these metrics, or all) as of `as_of` and queue the changes; returns how many."""
        return self.fold_and_rescore.rescore(as_of, metric_ids)

    def _in_transaction(self, work, attempts: int = 5):
        """Run `work(conn)` in a transaction, again after a deadlock or a lost connection."""
        return self.fold_and_rescore.in_transaction(work)

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
        if self._commit_failed:
            self._committed_async.update(offsets)
            return
        # Later batches' offsets are never behind earlier ones for the same partition.
        pending = {tp: offset for tp, offset in {**self._committed_async, **offsets}.items() if tp in assigned}
        self._committed_async.clear()
        try:
            self._consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in pending.items()},
                                  timeout_ms=int(self.settings.commit_timeout_s * 1000))
        except Exception as exc:  # noqa: BLE001 - a rebalance is under way or took the partition; the broker is away
            # Safe: the batch is in the database and its event ids are claimed. Kept to commit
            # again when the loop next idles (only for partitions still ours by then): with no
            # new event to read, nothing else would ever commit them, and the group would
            # look behind for good (after a rebalance while the scorer caught up, say).
            self._committed_async.update(pending)
            self._commit_failed = True
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
                # Nothing read, but a new as-of date, or metrics the last batches left unscored:
                # an empty batch goes through the steps to rescore them.
                if batch.messages or self.rule.has_work_when_idle():
                    self.submit(batch)
                else:
                    self.finish_in_flight()  # idle: nothing to overlap with, so don't hold its commit
                self.metrics.observe_lag(self._consumer)
                if until_idle:
                    idle_batches = 0 if batch.messages else idle_batches + 1
                    if idle_batches >= 2 and not self.in_order.in_flight and self.caught_up():
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


def _log_failed_commit(offsets, response) -> None:
    # Called on kafka-python's network thread: log, nothing more.
    if isinstance(response, Exception):
        log.warning("offset commit failed; a later commit covers it, or the batch is read again and ignored",
                    extra={"error": str(response)[:200]})
