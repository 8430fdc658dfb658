"""Ingest's own settings, from environment variables, on top of the common ones (shared/platform/settings.py)."""

from __future__ import annotations

from pydantic import Field

from shared.platform.settings import Settings


class IngestSettings(Settings):
    kafka_timeout_s: float = Field(5.0, alias="INGEST_KAFKA_TIMEOUT", gt=0,
                                   description="How long ingest waits for Kafka to confirm before answering 503")
    rate_limit: str = Field("50/second;2000/minute", alias="INGEST_RATE_LIMIT",
                            description="Requests per API key (Flask-Limiter syntax)")
    rate_limit_storage: str = Field("memory://", alias="INGEST_RATE_LIMIT_STORAGE",
                                    description="Where rate-limit counters live (memory:// is per process)")
    max_batch: int = Field(1000, alias="INGEST_MAX_BATCH", ge=1)
    max_body_bytes: int = Field(1024 * 1024, alias="INGEST_MAX_BODY_BYTES", ge=1024)
    idempotency_ttl_hours: int = Field(24, alias="INGEST_IDEMPOTENCY_TTL_HOURS", ge=1,
                                       description="A retry with the same Idempotency-Key within this gets the "
                                                   "first answer back; older records are purged")
    purge_every_s: float = Field(600, alias="INGEST_PURGE_EVERY", ge=0,
                                 description="Seconds between purges of expired idempotency records by each "
                                             "ingest process (0: none; run `cityscore ingest purge` instead)")
