"""Configuration from environment variables, with defaults that work on a laptop.

Twelve-factor: every setting is an environment variable (named in the field's
alias); nothing needs a config file. Defaults: a SQLite file, Kafka on 127.0.0.1.

This module holds what every service reads (the catalog, the database, Kafka and its
security); each service's own settings are a class built on `Settings` in its own folder:
services/ingest/settings.py, services/scorer/settings.py, services/notifier/settings.py.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# kafka-python waits up to 30 s between attempts to reach a broker that was away;
# Kafka's Java clients wait at most 1 s, and so do we, so the services are back
# within a second of the broker.
KAFKA_RECONNECT_BACKOFF_MAX_MS = 1000


class Settings(BaseSettings):
    # Errors name the setting but do not echo the input: it holds passwords (DATABASE_URL, KAFKA_SASL_PASSWORD).
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", hide_input_in_errors=True)

    catalog: str | None = Field(None, alias="CITYSCORE_CATALOG",
                                description="Catalog YAML file, or a shipped catalog's name (boston-calendar.yaml); "
                                            "default Boston's")
    database_url: str = Field("sqlite:///cityscore.db", alias="DATABASE_URL")
    # The public board and read API (services.scorer.wsgi) read through this URL when it is set:
    # in production a role that may only SELECT (deploy/postgres/start.sh makes cityscore_reader).
    board_database_url: str | None = Field(None, alias="BOARD_DATABASE_URL",
                                           description="Read-only database URL of the board and read API")
    # The laptop migrates on start; production migrates once, in its own job (cityscore db upgrade),
    # so services run with a role that cannot change the schema and refuse a schema not at head.
    migrate_on_start: bool = Field(True, alias="MIGRATE_ON_START",
                                   description="Bring the schema up to date when a service starts")
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
    # How every Kafka client (producer, consumer, admin) reaches the brokers: TLS, SASL or both.
    # shared.platform.kafka.kafka_security() turns these into kafka-python's arguments.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", alias="KAFKA_SECURITY_PROTOCOL", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, alias="KAFKA_SASL_MECHANISM", description="Required with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    kafka_sasl_username: str | None = Field(None, alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(None, alias="KAFKA_SASL_PASSWORD")
    kafka_ssl_cafile: str | None = Field(None, alias="KAFKA_SSL_CAFILE",
                                        description="CA bundle (PEM) for the brokers' certificates; default: the system's")
    kafka_ssl_certfile: str | None = Field(None, alias="KAFKA_SSL_CERTFILE", description="Client certificate (PEM), mutual TLS")
    kafka_ssl_keyfile: str | None = Field(None, alias="KAFKA_SSL_KEYFILE", description="Client private key (PEM), mutual TLS")
    kafka_ssl_password: SecretStr | None = Field(None, alias="KAFKA_SSL_PASSWORD", description="Password of the key file")
    kafka_ssl_check_hostname: bool = Field(True, alias="KAFKA_SSL_CHECK_HOSTNAME")

    @model_validator(mode="after")
    def _kafka_security_is_whole(self) -> "Settings":
        """Refuse a Kafka security setting that would be ignored or could not connect, naming it."""
        protocol = self.kafka_security_protocol
        sasl = (("KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism),
                ("KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                ("KAFKA_SASL_PASSWORD", self.kafka_sasl_password))
        for alias, value in sasl:
            if protocol.startswith("SASL_") and not value:
                raise ValueError(f"{alias}: required when KAFKA_SECURITY_PROTOCOL is {protocol}")
            if not protocol.startswith("SASL_") and value:
                raise ValueError(f"{alias}: set, but KAFKA_SECURITY_PROTOCOL {protocol} does not use SASL "
                                 "(SASL_PLAINTEXT or SASL_SSL does)")
        if not protocol.endswith("SSL"):
            for alias, value in (("KAFKA_SSL_CAFILE", self.kafka_ssl_cafile),
                                 ("KAFKA_SSL_CERTFILE", self.kafka_ssl_certfile),
                                 ("KAFKA_SSL_KEYFILE", self.kafka_ssl_keyfile)):
                if value:
                    raise ValueError(f"{alias}: set, but KAFKA_SECURITY_PROTOCOL {protocol} does not use TLS "
                                     "(SSL or SASL_SSL does)")
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("KAFKA_SSL_KEYFILE: a client certificate needs its key and the key its certificate "
                             "(set both KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE, or neither)")
        return self


S = TypeVar("S", bound=Settings)


@lru_cache(maxsize=None)
def get_settings(kind: type[S] = Settings) -> S:
    """The settings of `kind` (a service's own class, or the common ones) from the environment, read once."""
    return kind()
