"""Prometheus metrics of the scorer: batches, fold time, lag, dead letters, score changes."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class ScorerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.batch_size = Histogram("cityscore_scorer_batch_messages", "Messages per folded batch", registry=r,
                                    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 20000))
        self.fold_seconds = Histogram("cityscore_scorer_batch_seconds", "Time to fold, rescore and commit a batch",
                                      registry=r, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.events = Counter("cityscore_scorer_events_folded_total", "Events folded into daily totals", registry=r)
        self.duplicates = Counter("cityscore_scorer_duplicates_total", "Events ignored as already folded", registry=r)
        self.dead_letters = Counter("cityscore_scorer_dead_letters_total", "Messages sent to the dead-letter topic",
                                    registry=r)
        self.score_changes = Counter("cityscore_scorer_score_changes_total", "Score changes published", registry=r)
        self.lag = Gauge("cityscore_scorer_consumer_lag", "Events on the topic not yet folded by this scorer",
                         registry=r)
        self._lag_checked = 0.0

    def observe_batch(self, report) -> None:
        if report.messages:
            self.batch_size.observe(report.messages)
            self.fold_seconds.observe(report.fold_s)
        self.events.inc(report.folded)
        self.duplicates.inc(report.duplicates)

    def observe_lag(self, consumer, every_s: float = 5.0) -> None:
        """Sample the lag now and then: it costs a request to the broker."""
        now = time.monotonic()
        if consumer is None or now - self._lag_checked < every_s:
            return
        self._lag_checked = now
        try:
            assigned = list(consumer.assignment())
            if not assigned:
                self.lag.set(0)
                return
            # Briefly: while the broker is away this would otherwise hold the loop for the
            # consumer's 30 s request timeout.
            ends = consumer.end_offsets(assigned, timeout_ms=2000)
            self.lag.set(sum(max(0, ends[tp] - consumer.position(tp)) for tp in assigned))
        except Exception:  # noqa: BLE001 - a metric must never stop the scorer
            pass

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
