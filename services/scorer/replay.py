"""Replay: rebuild the scorer's state from the whole events topic (`cityscore rebuild`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from shared.core.catalog import Catalog
from shared.store.tables.scorer import ProcessedEvent
from shared.platform.kafka import kafka_security
from shared.platform.clock import Clock, current_as_of, system_clock
from shared.store.published_scores import PublishedScores
from shared.store.score_writer import ScoreWriter

from .consumer import Scorer
from .rebuild import CannotFoldInBulk, commit_group, rebuild_in_bulk
from .settings import ScorerSettings

log = logging.getLogger("cityscore.scorer")


@dataclass
class ReplayReport:
    messages: int
    folded: int
    duplicates: int
    dead_letters: int
    changes: int
    seconds: float


class PartialHistory(Exception):
    """The events topic no longer holds every event: a rebuild from it would count only part."""

    def __init__(self, topic: str, reasons: list[str]):
        self.reasons = reasons
        super().__init__(
            f"not rebuilt: {topic} no longer holds every event, so the rebuilt scores would count only part of "
            f"the history and be published as the city's: {'; '.join(reasons)}. Restore the events, or run "
            f"`cityscore rebuild --allow-partial-history` to rebuild from only what the topic still holds.")


def missing_history(topic: str, starts: dict[int, int], ends: dict[int, int], folded: int) -> list[str]:
    """Why the topic (each partition's first and next offsets) cannot hold every event the
    database folded; empty when nothing says so.

    A partition's log starts past 0 only when events were deleted from it (retention, or
    deleted records), whatever the database holds. And the database can never have folded
    more events than the topic ever had messages (only the scorer folds, each message at
    most once): more than a whole topic holds means a topic deleted and made again."""
    reasons = [f"partition {p} of {topic} starts at offset {starts[p]}: its first {starts[p]} events were "
               "deleted (by retention, or deleted records)" for p in sorted(starts) if starts[p] > 0]
    held = sum(ends[p] - starts[p] for p in starts)
    if not reasons and folded > held:
        reasons.append(f"the database folded {folded} events but {topic} holds {held} "
                       "(was it deleted and made again?)")
    return reasons


def check_history(settings: ScorerSettings, engine: Engine) -> list[str]:
    """missing_history() of the events topic as it is now and the events folded in the database."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                             **kafka_security(settings))
    try:
        partitions = [TopicPartition(settings.events_topic, p)
                      for p in sorted(consumer.partitions_for_topic(settings.events_topic) or ())]
        starts = consumer.beginning_offsets(partitions) if partitions else {}
        ends = consumer.end_offsets(partitions) if partitions else {}
    finally:
        consumer.close(autocommit=False)
    with engine.connect() as conn:
        folded = conn.scalar(select(func.count()).select_from(ProcessedEvent))
    return missing_history(settings.events_topic, {tp.partition: starts[tp] for tp in partitions},
                           {tp.partition: ends[tp] for tp in partitions}, folded)


def rewind_group(settings: ScorerSettings) -> int:
    """Move the scorer group's committed offsets to the start of every partition."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=settings.scorer_group,
                             enable_auto_commit=False, **kafka_security(settings))
    try:
        partitions = consumer.partitions_for_topic(settings.events_topic) or set()
        assigned = [TopicPartition(settings.events_topic, p) for p in sorted(partitions)]
        if not assigned:
            return 0
        starts = consumer.beginning_offsets(assigned)
    finally:
        consumer.close(autocommit=False)
    commit_group(settings, starts)
    return len(assigned)


def replay(settings: ScorerSettings, writer: ScoreWriter, scores: PublishedScores, catalog: Catalog,
           clock: Clock = system_clock, *, allow_partial_history: bool = False, in_bulk: bool = True) -> ReplayReport:
    """Forget the folded state and fold the whole events topic again. Refuses (PartialHistory),
    before touching anything, when the topic no longer holds every event, unless
    `allow_partial_history`: then the scores count only what the topic still holds.

    `in_bulk`: fold the topic in memory and write the result at once (services/scorer/rebuild.py),
    the same rows as the scorer's pipeline would write, faster; the pipeline when that cannot be."""
    started = time.perf_counter()
    missing = check_history(settings, writer.engine)
    if missing and not allow_partial_history:
        raise PartialHistory(settings.events_topic, missing)
    if missing:
        log.warning("rebuilding from part of the history, as asked: the scores will count only the events "
                    "the topic still holds", extra={"topic": settings.events_topic, "missing": missing})
    # Offsets first: if we stop half-way, the state is still whole and re-reading changes nothing.
    rewind_group(settings)
    scorer = Scorer(settings, writer, scores, catalog, clock=clock, client_id="cityscore-rebuild",
                    rescore_each_batch=False)
    try:
        bulk = None
        if in_bulk:
            scorer.connect(join_group=False)  # the topics and a producer, for dead letters and scores
            try:
                bulk = rebuild_in_bulk(settings, writer, catalog, scorer.dead_letters)
            except CannotFoldInBulk as exc:
                log.warning("rebuilding through the scorer's pipeline instead, which isolates what the fast "
                            "path cannot", extra={"reason": str(exc)})
        if bulk is None:
            with writer.engine.begin() as conn:
                writer.reset(conn)
            scorer.run(until_idle=True)
        changes = scorer.rescore(current_as_of(clock, catalog))
        scorer.publish_outbox()
    finally:
        scorer.close()
    totals = scorer.totals if bulk is None else bulk
    report = ReplayReport(totals.messages, totals.folded, totals.duplicates, totals.dead_letters, changes,
                          time.perf_counter() - started)
    log.info("replay finished", extra=report.__dict__)
    return report
