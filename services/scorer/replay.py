"""Replay: rebuild the scorer's state from the whole events topic (`cityscore rebuild`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from shared.catalog import Catalog
from shared.score_store import ScoreStore
from shared.settings import Settings

from .consumer import Clock, Scorer, current_as_of, system_clock

log = logging.getLogger("cityscore.scorer")


@dataclass
class ReplayReport:
    messages: int
    folded: int
    duplicates: int
    dead_letters: int
    changes: int
    seconds: float


def rewind_group(settings: Settings) -> int:
    """Move the scorer group's committed offsets to the start of every partition."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=settings.scorer_group,
                             enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(settings.events_topic) or set()
        assigned = [TopicPartition(settings.events_topic, p) for p in sorted(partitions)]
        if not assigned:
            return 0
        starts = consumer.beginning_offsets(assigned)
        consumer.commit({tp: OffsetAndMetadata(starts[tp], "", -1) for tp in assigned})
        return len(assigned)
    finally:
        consumer.close(autocommit=False)


def replay(settings: Settings, store: ScoreStore, catalog: Catalog, clock: Clock = system_clock) -> ReplayReport:
    started = time.perf_counter()
    # Offsets first: if we stop half-way, the state is still whole and re-reading changes nothing.
    rewind_group(settings)
    with store.engine.begin() as conn:
        store.reset(conn)
    scorer = Scorer(settings, store, catalog, clock=clock, client_id="cityscore-rebuild", rescore_each_batch=False)
    try:
        scorer.run(until_idle=True)
        changes = scorer.rescore(current_as_of(clock, catalog))
        scorer.publish_outbox()
    finally:
        scorer.close()
    totals = scorer.totals
    report = ReplayReport(totals.messages, totals.folded, totals.duplicates, totals.dead_letters, changes,
                          time.perf_counter() - started)
    log.info("replay finished", extra=report.__dict__)
    return report
