"""Prometheus metrics of the ingest service."""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest


class IngestMetrics:
    """One registry per app, so tests can build several apps in one process.

    Under gunicorn with PROMETHEUS_MULTIPROC_DIR set, values live in shared files and
    /metrics adds up every worker's.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("cityscore_ingest_requests_total", "HTTP requests by route and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("cityscore_ingest_request_seconds", "HTTP request duration", ["route"],
                                 registry=self.registry,
                                 buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.accepted = Counter("cityscore_ingest_events_accepted_total", "Events accepted (202) by metric",
                                ["metric"], registry=self.registry)
        self.kafka_latency = Histogram("cityscore_ingest_kafka_seconds",
                                       "Time from receiving a batch to Kafka's acknowledgement of all of it",
                                       registry=self.registry,
                                       buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))
        self.kafka_failures = Counter("cityscore_ingest_kafka_failures_total",
                                      "Batches refused with 503 because Kafka did not confirm in time",
                                      registry=self.registry)

    def exposition(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
