"""The Kafka adapter of ingest: write a batch and wait until Kafka has it (acks=all)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol, Sequence

from kafka.errors import KafkaError

from shared.platform.kafka import broker_reachable, ensure_topics, make_producer
from shared.platform.settings import KAFKA_RECONNECT_BACKOFF_MAX_MS

log = logging.getLogger(__name__)


class PublishFailed(Exception):
    """Kafka did not confirm every record in time; the caller must not say 202."""


class EventPublisher(Protocol):
    def publish(self, records: Sequence[tuple[bytes, bytes]]) -> float: ...

    def ready(self) -> bool: ...

    def close(self) -> None: ...


class KafkaEventPublisher:
    """Writes (key, value) records to the events topic and waits for every acknowledgement.

    The producer is made on first use, so each gunicorn worker gets its own after
    the fork, and a broker that is down at start-up does not stop the service from
    starting: requests answer 503 until it is back, then succeed without a restart.
    """

    def __init__(self, bootstrap: str, topic: str, timeout_s: float, partitions: int, dead_letter_topic: str,
                 reconnect_backoff_max_ms: int = KAFKA_RECONNECT_BACKOFF_MAX_MS, security: dict | None = None,
                 topic_configs: dict[str, str] | None = None):
        self.bootstrap = bootstrap
        self.topic_configs = topic_configs  # the events topic's retention when ingest creates it
        self.security = security  # kafka_security() of the settings; None: the environment's
        self.reconnect_backoff_max_ms = reconnect_backoff_max_ms
        self.topic = topic
        self.timeout_s = timeout_s
        self.partitions = partitions
        self.dead_letter_topic = dead_letter_topic
        self._producer = None
        self._topic_ready = False
        self._lock = threading.Lock()

    def _ensure(self, deadline: float):
        """The producer, made (and the topics created) within what is left of the deadline."""
        with self._lock:
            if not self._topic_ready:
                ensure_topics(self.bootstrap, {self.topic: self.partitions, self.dead_letter_topic: 1},
                              timeout_s=max(0.1, deadline - time.monotonic()), security=self.security,
                              configs={self.topic: self.topic_configs} if self.topic_configs else None)
                self._topic_ready = True
            if self._producer is None:
                self._producer = make_producer(self.bootstrap, self.timeout_s, client_id="cityscore-ingest",
                                               security=self.security,
                                               bootstrap_timeout_ms=max(100, int((deadline - time.monotonic()) * 1000)),
                                               reconnect_backoff_max_ms=self.reconnect_backoff_max_ms)
            return self._producer

    def publish(self, records: Sequence[tuple[bytes, bytes]]) -> float:
        """Send every record and wait for all acknowledgements; returns the seconds it took."""
        started = time.monotonic()
        deadline = started + self.timeout_s
        producer = None
        try:
            producer = self._ensure(deadline)
            futures = [producer.send(self.topic, key=key, value=value) for key, value in records]
            producer.flush(timeout=max(0.0, deadline - time.monotonic()))
            for future in futures:
                future.get(timeout=max(0.001, deadline - time.monotonic()))
        except (KafkaError, OSError, AssertionError) as exc:
            self._discard(producer)
            raise PublishFailed(f"Kafka did not confirm the write: {exc.__class__.__name__}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - anything else from the client is still "not confirmed"
            log.exception("unexpected error from the Kafka client")
            self._discard(producer)
            raise PublishFailed(f"Kafka did not confirm the write: {exc.__class__.__name__}") from exc
        return time.monotonic() - started

    def _discard(self, producer) -> None:
        """Drop a producer that failed to deliver, so the next request makes a new one.

        kafka-python's idempotent producer does not recover when its batches expire
        while the broker is down (a broker killed mid-write): every later send times
        out, and ingest would answer 503 until restarted.
        """
        if producer is None:
            return
        with self._lock:
            if self._producer is producer:
                self._producer = None
        try:
            producer.close(timeout=0)
        except Exception:  # noqa: BLE001 - close() stops at its flush while records are pending
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                sender.force_close()  # fails what is pending (answered 503 already) and ends its thread

    def ready(self, timeout_s: float = 3.0) -> bool:
        """Kafka answers and the events topic exists, within `timeout_s`."""
        if not broker_reachable(self.bootstrap, timeout_s, security=self.security):
            return False
        try:
            producer = self._ensure(time.monotonic() + timeout_s)
            return bool(producer.partitions_for(self.topic))
        except Exception:  # noqa: BLE001 - readiness is a yes/no question
            return False

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                try:
                    self._producer.close(timeout=self.timeout_s)
                except Exception:  # noqa: BLE001 - nothing unconfirmed was ever answered 202
                    log.warning("Kafka producer did not close cleanly", exc_info=True)
                self._producer = None
