"""Kafka helpers shared by the services: topics, producers, readiness."""

from __future__ import annotations

import logging
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from shared.platform.settings import KAFKA_RECONNECT_BACKOFF_MAX_MS, Settings, get_settings

log = logging.getLogger(__name__)


def kafka_security(settings: Settings | None = None) -> dict:
    """kafka-python's arguments for TLS and SASL, from the settings (the environment by default).

    Every producer, consumer and admin client the project makes takes these, so one set of
    KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_* / KAFKA_SSL_* variables reaches every connection.
    """
    s = settings if settings is not None else get_settings()
    config: dict = {"security_protocol": s.kafka_security_protocol}
    if s.kafka_security_protocol.startswith("SASL_"):
        config.update(sasl_mechanism=s.kafka_sasl_mechanism, sasl_plain_username=s.kafka_sasl_username,
                      sasl_plain_password=s.kafka_sasl_password.get_secret_value() if s.kafka_sasl_password else None)
        if s.kafka_security_protocol == "SASL_PLAINTEXT" and s.kafka_sasl_mechanism == "PLAIN":
            _plain_in_clear.warn()
    if s.kafka_security_protocol.endswith("SSL"):
        config.update(ssl_cafile=s.kafka_ssl_cafile, ssl_certfile=s.kafka_ssl_certfile,
                      ssl_keyfile=s.kafka_ssl_keyfile, ssl_check_hostname=s.kafka_ssl_check_hostname,
                      ssl_password=s.kafka_ssl_password.get_secret_value() if s.kafka_ssl_password else None)
    return config


class _Once:
    def __init__(self, message: str) -> None:
        self.message = message
        self.done = False

    def warn(self) -> None:
        if not self.done:
            self.done = True
            log.warning(self.message)


# PLAIN sends the password itself; without TLS anyone on the network path can read it.
_plain_in_clear = _Once("KAFKA_SASL_MECHANISM PLAIN over SASL_PLAINTEXT sends the Kafka password unencrypted; "
                        "use SASL_SSL, or SCRAM")


def ensure_topics(bootstrap: str, topics: dict[str, int], timeout_s: float = 10.0,
                  security: dict | None = None, configs: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Create the topics that are missing (name -> partitions); return the ones created.

    `configs`: topic settings by topic name (events_topic_configs() for the events topic).
    A topic created here gets them; one that exists keeps its own and a warning says how
    they differ: changing a live topic's retention is the operator's decision, not a
    side effect of starting a service.

    `security`: kafka_security() of the caller's settings (default: the environment's).

    Replication is left to the broker's default.replication.factor, so a
    three-broker cluster gets three copies without a setting here.
    """
    timeout_ms = max(100, int(timeout_s * 1000))
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms,
                             bootstrap_timeout_ms=timeout_ms, client_id="cityscore-admin",
                             **(kafka_security() if security is None else security))
    try:
        existing = set(admin.list_topics())
        configs = configs or {}
        _warn_of_other_configs(admin, {name: configs[name] for name in topics if name in existing and name in configs})
        wanted = [NewTopic(name, partitions, replication_factor=-1, topic_configs=configs.get(name))
                  for name, partitions in topics.items() if name not in existing]
        if not wanted:
            return []
        try:
            admin.create_topics(wanted, timeout_ms=timeout_ms)
        except TopicAlreadyExistsError:
            pass  # another instance created it first
        created = [t.name for t in wanted]
        log.info("created Kafka topics", extra={"topics": created})
        return created
    finally:
        admin.close()


def events_topic_configs(settings: Settings) -> dict[str, str]:
    """The events topic's settings: everything `cityscore rebuild` replays, kept for ever by
    default. Kafka's default deletes events after 7 days, and a rebuild from what is left
    would publish scores of a fraction of the history."""
    return {"retention.ms": str(settings.events_retention_ms), "retention.bytes": str(settings.events_retention_bytes)}


def _warn_of_other_configs(admin: KafkaAdminClient, configs: dict[str, dict[str, str]]) -> None:
    """A warning for each existing topic setting that differs from the one configured."""
    if not configs:
        return
    try:
        # "all": a value the topic takes from the broker's defaults counts too (7-day retention).
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name, dict.fromkeys(wanted))
                                            for name, wanted in configs.items()], config_filter="all")
    except Exception as exc:  # noqa: BLE001 - only a warning is at stake; the topic exists and is used
        log.warning("could not read the topics' settings", extra={"topics": sorted(configs), "error": str(exc)[:200]})
        return
    for name, wanted in configs.items():
        actual = described.get("topic", {}).get(name, {})
        for key, value in wanted.items():
            have = (actual.get(key) or {}).get("value")
            if have is not None and have != value:
                log.warning(f"topic {name} has {key}={have}, not {value} as configured; it is left as it is "
                            f"(kafka-configs.sh --alter --entity-type topics --entity-name {name} "
                            f"--add-config {key}={value} changes it)",
                            extra={"topic": name, "config": key, "value": have, "configured": value})


def make_producer(bootstrap: str, timeout_s: float, client_id: str, security: dict | None = None,
                  **overrides) -> KafkaProducer:
    """A producer that only reports success once every in-sync replica has the record.

    `security`: kafka_security() of the caller's settings (default: the environment's).
    """
    timeout_ms = max(1000, int(timeout_s * 1000))
    config = dict(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,  # retries inside the client never write a record twice
        linger_ms=2,
        batch_size=256 * 1024,
        compression_type=None,
        max_block_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
        delivery_timeout_ms=timeout_ms + 2 + 1000,
        bootstrap_timeout_ms=timeout_ms,
        reconnect_backoff_max_ms=KAFKA_RECONNECT_BACKOFF_MAX_MS,
        **(kafka_security() if security is None else security),
    )
    config.update(overrides)
    return KafkaProducer(**config)


def broker_reachable(bootstrap: str, timeout_s: float = 3.0, security: dict | None = None) -> bool:
    """True when the cluster answers a metadata request within the timeout (and lets us in)."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000),
                                 bootstrap_timeout_ms=int(timeout_s * 1000), client_id="cityscore-probe",
                                 **(kafka_security() if security is None else security))
    except KafkaError:
        return False
    except Exception:  # noqa: BLE001 - any failure to connect means "not reachable"
        return False
    try:
        admin.describe_cluster()
        return True
    except Exception:  # noqa: BLE001
        return False
    finally:
        admin.close()


# A group member whose metadata lacked its topic when the group formed is assigned nothing
# until its next metadata refresh: 30 s with this, rather than kafka-python's 5 minutes.
METADATA_MAX_AGE_MS = 30_000


def subscribe_once_known(consumer: KafkaConsumer, topic: str, timeout_s: float = 30.0) -> None:
    """Subscribe `consumer` to `topic` once this client knows the topic's partitions.

    A topic created a moment ago may not be in a broker's metadata yet; a member that joins
    its group then is assigned no partitions ("No partition metadata for topic") and reads
    nothing until the next refresh. After `timeout_s` it subscribes anyway, and the refresh
    (METADATA_MAX_AGE_MS) picks the topic up.
    """
    deadline = time.monotonic() + timeout_s
    while not consumer.partitions_for_topic(topic) and time.monotonic() < deadline:
        time.sleep(0.2)
    consumer.subscribe([topic])


def poll(consumer: KafkaConsumer, timeout_ms: int, max_records: int | None = None) -> dict:
    """`consumer.poll()`, where a broker that is away means "no records yet" rather than an error.

    While a broker restarts, kafka-python 3.0 can raise a retriable error out of poll():
    the group coordinator lookup fails to connect, asks for fresh metadata, and that
    request fails to connect too (KafkaConnectionError). Left alone it ends the service
    at the first broker outage. Nothing was read, so nothing is lost: we wait a moment
    (the poll's time, at most a second), return no records, and the next poll
    reconnects. Any other error (bad configuration, authorisation) still raises.
    """
    try:
        return consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
    except KafkaError as exc:
        if not exc.retriable:
            raise
        _broker_away.note(exc)
        time.sleep(min(max(timeout_ms, 10), 1000) / 1000)
        return {}


class _BrokerAway:
    """A warning every 10 s at most: a poll loop can meet the error many times a second.
    `count` is how many times since the service started."""

    every_s = 10.0

    def __init__(self) -> None:
        self._last = float("-inf")
        self.count = 0

    def note(self, exc: Exception) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            log.warning("Kafka did not answer a poll; polling again", extra={"error": str(exc)[:200],
                                                                             "times": self.count})


_broker_away = _BrokerAway()
