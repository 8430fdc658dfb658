"""Configuration from environment variables, with defaults that work on a laptop.

Twelve-factor: every setting is an environment variable (named in the field's
alias); nothing needs a config file. Defaults: a SQLite file, Kafka on 127.0.0.1.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# kafka-python waits up to 30 s between attempts to reach a broker that was away;
# Kafka's Java clients wait at most 1 s, and so do we, so the services are back
# within a second of the broker.
KAFKA_RECONNECT_BACKOFF_MAX_MS = 1000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    catalog: str | None = Field(None, alias="CITYSCORE_CATALOG", description="Catalog YAML file; default Boston's")
    database_url: str = Field("sqlite:///cityscore.db", alias="DATABASE_URL")
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", alias="KAFKA_BOOTSTRAP_SERVERS")
    events_topic: str = Field("cityscore.events", alias="CITYSCORE_EVENTS_TOPIC")
    dead_letter_topic: str = Field("cityscore.events.dlq", alias="CITYSCORE_DLQ_TOPIC")
    scores_topic: str = Field("cityscore.scores", alias="CITYSCORE_SCORES_TOPIC")
    topic_partitions: int = Field(6, alias="CITYSCORE_TOPIC_PARTITIONS", ge=1)
    # The events topic is the record `cityscore rebuild` replays: kept for ever (-1) unless set.
    # Applied when the topic is created; an existing topic keeps its own, with a warning.
    events_retention_ms: int = Field(-1, alias="CITYSCORE_EVENTS_RETENTION_MS", ge=-1,
                                     description="retention.ms of a new events topic (-1: for ever)")
    events_retention_bytes: int = Field(-1, alias="CITYSCORE_EVENTS_RETENTION_BYTES", ge=-1,
                                        description="retention.bytes of each partition of a new events topic "
                                                    "(-1: no limit)")
    kafka_reconnect_backoff_max_ms: int = Field(KAFKA_RECONNECT_BACKOFF_MAX_MS, alias="KAFKA_RECONNECT_BACKOFF_MAX_MS",
                                                ge=10, description="Longest wait between attempts to reach a broker")

    # ingest
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

    # scorer
    scorer_group: str = Field("cityscore-scorer", alias="SCORER_GROUP", description="Kafka consumer group")
    batch_max: int = Field(20000, alias="SCORER_BATCH_MAX", ge=1, description="Events folded per transaction, at most")
    batch_wait_s: float = Field(0.5, alias="SCORER_BATCH_WAIT", gt=0,
                                description="Seconds a batch waits to fill before it is folded")
    scorer_check_crcs: bool = Field(False, alias="SCORER_CHECK_CRCS",
                                    description="Verify record CRCs in the consumer (slow in kafka-python)")
    # The notifier's posts (alert threads, staff notes, Slack user ids, channels) are internal;
    # only a laptop without Slack (the demo) shows them, on a page of their own.
    scorer_show_slack_posts: bool = Field(False, alias="SCORER_SHOW_SLACK_POSTS",
                                          description="Serve /slack-posts, the notifier's recent posts (laptop only)")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
