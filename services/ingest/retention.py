"""Idempotency records are kept INGEST_IDEMPOTENCY_TTL_HOURS, then purged.

A record holds the whole first answer to a request, so the table would only grow.
A retry within the TTL still gets that answer back (what makes a retried batch count
once); after it, the record goes, in chunks of `CHUNK` rows, each its own short
transaction, so a purge never holds a lock on many rows for long, whatever the backlog.

Every ingest process purges in a background thread at start and then every
INGEST_PURGE_EVERY seconds; `cityscore ingest purge` does one pass by hand (or from a
cron job where the thread is turned off with INGEST_PURGE_EVERY=0).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import delete, select, tuple_
from sqlalchemy.engine import Engine

from shared.store.engine import utcnow
from shared.store.tables.ingest import IdempotencyRecord

log = logging.getLogger("cityscore.ingest.retention")

CHUNK = 1000
T = IdempotencyRecord.__table__


def purge_idempotency_records(engine: Engine, ttl_hours: float, *, chunk: int = CHUNK,
                              now: datetime | None = None) -> int:
    """Delete the records older than `ttl_hours`, `chunk` at a time; returns how many went."""
    cutoff = (now or utcnow()) - timedelta(hours=ttl_hours)
    doomed = (select(T.c.api_key_id, T.c.idempotency_key).where(T.c.created_at < cutoff)
              .order_by(T.c.created_at).limit(chunk))
    if engine.dialect.name == "postgresql":
        # Two ingest processes purging at once take different rows instead of waiting on each other.
        doomed = doomed.with_for_update(skip_locked=True)
    statement = delete(T).where(tuple_(T.c.api_key_id, T.c.idempotency_key).in_(doomed))
    purged = 0
    while True:
        with engine.begin() as connection:
            gone = connection.execute(statement).rowcount or 0
        purged += gone
        if gone < chunk:
            return purged


class IdempotencyPurger:
    """A daemon thread that purges expired records now and then every `every_s` seconds."""

    def __init__(self, engine: Engine, ttl_hours: float, every_s: float) -> None:
        self.engine = engine
        self.ttl_hours = ttl_hours
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-purge", daemon=True)

    def start(self) -> "IdempotencyPurger":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                purged = purge_idempotency_records(self.engine, self.ttl_hours)
                if purged:
                    log.info("idempotency records purged", extra={"purged": purged, "ttl_hours": self.ttl_hours})
            except Exception:  # noqa: BLE001 - e.g. the database is away: the next pass tries again
                log.exception("purging idempotency records failed")
            self._stop.wait(self.every_s)
