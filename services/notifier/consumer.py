"""The consumer of `cityscore.scores`: score changes in, offsets committed after the database."""

from __future__ import annotations

import logging
import threading
from typing import Callable

import orjson
from kafka import KafkaConsumer

from shared.platform.kafka import METADATA_MAX_AGE_MS, kafka_security, poll, subscribe_once_known
from shared.platform.settings import KAFKA_RECONNECT_BACKOFF_MAX_MS

from .service import Notifier

log = logging.getLogger("cityscore.notifier.consumer")


def make_consumer(bootstrap: str, topic: str, group: str, session_timeout_ms: int = 45000,
                  reconnect_backoff_max_ms: int = KAFKA_RECONNECT_BACKOFF_MAX_MS,
                  security: dict | None = None, bootstrap_timeout_ms: int = 30000) -> KafkaConsumer:
    """A member of `group` reading `topic`, subscribed once it knows the topic's partitions.

    `security`: kafka_security() of the settings (default: the environment's).
    `bootstrap_timeout_ms`: how long to try to reach a broker before raising (kafka-python's default).
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, client_id="cityscore-notifier",
                         **(kafka_security() if security is None else security),
                         enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=500,
                         session_timeout_ms=session_timeout_ms,
                         heartbeat_interval_ms=max(1000, session_timeout_ms // 6),
                         metadata_max_age_ms=METADATA_MAX_AGE_MS,
                         reconnect_backoff_max_ms=reconnect_backoff_max_ms,
                         bootstrap_timeout_ms=bootstrap_timeout_ms)
    subscribe_once_known(consumer, topic)
    return consumer


def consume(consumer: KafkaConsumer, notifier: Notifier, stop: threading.Event, poll_ms: int = 500,
            beat: Callable[[], None] = lambda: None) -> None:
    """Apply batches of score changes; commit each batch's offsets only after its transaction.

    A crash between the two redelivers the batch, which changes nothing the second
    time (each (metric, window) remembers the newest change applied). A message that
    is not JSON is logged and skipped, so it never stops the consumer. `beat` is called
    each time round (the notifier's liveness): a loop stuck anywhere stops calling it.
    """
    while not stop.is_set():
        beat()
        batch = poll(consumer, timeout_ms=poll_ms)
        if not batch:
            continue
        payloads = []
        for records in batch.values():
            for record in records:
                try:
                    payloads.append(orjson.loads(record.value))
                except orjson.JSONDecodeError:
                    log.warning("not JSON; skipped", extra={"partition": record.partition, "offset": record.offset})
        try:
            notifier.handle_changes(payloads)
        except Exception:  # noqa: BLE001 - e.g. the database is away: read the batch again
            log.exception("could not apply score changes; will read them again")
            for tp, records in batch.items():
                consumer.seek(tp, records[0].offset)
            stop.wait(2.0)
            continue
        try:
            consumer.commit()
        except Exception as exc:  # noqa: BLE001 - e.g. the broker is restarting
            # Safe: the next commit covers this batch too, and a batch read again changes nothing.
            log.warning("offset commit failed; the next commit covers this batch",
                        extra={"error": str(exc)[:200]})
