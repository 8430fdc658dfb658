"""Fixtures that hand tests real services: an Apache Kafka broker and a PostgreSQL database.

``kafka_bootstrap`` and ``database_url`` are session-scoped and lazy: only tests that
ask for them (the integration tests) start anything; tests/unit never does. Each
takes the first that works of:

1. the environment: ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``;
2. testcontainers, when a Docker engine answers;
3. the local launchers: ``shared.dev.local_kafka`` (port ``CITYSCORE_TEST_KAFKA_PORT``,
   default 19092, fresh data) and ``deploy/postgres/start.sh`` (``PGPORT``, default 5432).

When none can provide the service the fixture FAILS with the reason; it never
skips, so an integration test cannot pass by not running. A service the fixture
started itself is stopped at the end of the session unless
``CITYSCORE_KEEP_SERVICES=1``. ``CITYSCORE_TESTCONTAINERS=0`` skips step 2.

Tests using these fixtures get the ``kafka`` / ``postgres`` markers automatically,
so ``pytest -m "not kafka and not postgres"`` runs only what needs no server.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_KAFKA_PORT = int(os.environ.get("CITYSCORE_TEST_KAFKA_PORT", "19092"))

_KAFKA_FIXTURES = {"kafka_bootstrap"}
_POSTGRES_FIXTURES = {"database_url", "pg_engine"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & _KAFKA_FIXTURES:
            item.add_marker(pytest.mark.kafka)
        if used & _POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)


def _keep_services() -> bool:
    # Under pytest-xdist each worker has its own session: never stop a shared service.
    return os.environ.get("CITYSCORE_KEEP_SERVICES") == "1" or "PYTEST_XDIST_WORKER" in os.environ


def _docker_available() -> bool:
    """True when a Docker engine answers (the `docker` CLI alone is not enough)."""
    if os.environ.get("CITYSCORE_TESTCONTAINERS", "1") == "0":
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _fail(service: str, attempts: list[str]) -> None:
    pytest.fail(
        f"no {service} available for the integration tests; tried:\n  - "
        + "\n  - ".join(attempts),
        pytrace=False,
    )


# ---------------------------------------------------------------- Kafka


def _check_kafka(bootstrap: str, timeout: float = 30) -> None:
    from shared.dev.local_kafka import probe
    from shared.platform.kafka import kafka_security

    probe(bootstrap, timeout=timeout, security=kafka_security())  # KAFKA_SECURITY_PROTOCOL etc. when set


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """``host:port`` of a real Kafka broker that accepts acks=all writes."""
    attempts: list[str] = []

    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        problem = None
        try:
            _check_kafka(env)
        except Exception as exc:
            problem = exc
        if problem is not None:
            pytest.fail(
                f"KAFKA_BOOTSTRAP_SERVERS={env} is set but that broker is not usable: {problem!r}",
                pytrace=False,
            )
        yield env
        return
    attempts.append("KAFKA_BOOTSTRAP_SERVERS: not set")

    if _docker_available():
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:
            from testcontainers.kafka import KafkaContainer
        image = os.environ.get("CITYSCORE_TC_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0")
        container = KafkaContainer(image)
        if image.startswith("confluentinc/"):  # with_kraft() checks a Confluent tag >= 7.0
            container = container.with_kraft()
        try:
            container.start(timeout=120)
        except Exception as exc:
            attempts.append(f"testcontainers ({image}): {exc!r}")
        else:
            try:
                bootstrap = container.get_bootstrap_server()
                _check_kafka(bootstrap, timeout=60)
                yield bootstrap
                return
            finally:
                container.stop()
    else:
        attempts.append("testcontainers: no Docker engine answers")

    from shared.dev import local_kafka

    broker = None
    try:
        broker = local_kafka.start(port=TEST_KAFKA_PORT, wait=120, fresh=True)
    except Exception as exc:
        attempts.append(f"shared.dev.local_kafka on 127.0.0.1:{TEST_KAFKA_PORT}: {exc}")
    if broker is None:
        _fail("Kafka broker", attempts)
    try:
        yield broker.bootstrap_servers
    finally:
        if broker.started and not _keep_services():
            local_kafka.stop(TEST_KAFKA_PORT)


# ---------------------------------------------------------------- PostgreSQL


def _normalise_pg_url(url: str) -> str:
    """Use psycopg 3 for bare postgresql:// URLs (psycopg2 is not a dependency)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _check_postgres(url: str) -> None:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    if make_url(url).get_backend_name() != "postgresql":
        raise ValueError(f"{make_url(url).get_backend_name()} is not PostgreSQL")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()


def _local_pg_running() -> bool:
    """Whether the cluster of deploy/postgres/start.sh runs already (then we leave it running)."""
    cache = os.environ.get("CITYSCORE_CACHE") or str(Path.home() / ".cache" / "cityscore")
    pgdata = Path(os.environ.get("CITYSCORE_PGDATA") or Path(cache) / "pg-data")
    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


@pytest.fixture(scope="session")
def database_url():
    """SQLAlchemy URL of a real PostgreSQL database the tests may create objects in."""
    attempts: list[str] = []

    env = os.environ.get("DATABASE_URL")
    if env:
        url = _normalise_pg_url(env)
        problem = None
        try:
            _check_postgres(url)
        except Exception as exc:
            problem = exc
        if problem is not None:
            pytest.fail(f"DATABASE_URL is set but not a usable PostgreSQL database: {problem!r}",
                        pytrace=False)
        yield url
        return
    attempts.append("DATABASE_URL: not set")

    if _docker_available():
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:
            from testcontainers.postgres import PostgresContainer
        image = os.environ.get("CITYSCORE_TC_POSTGRES_IMAGE", "postgres:16-alpine")
        container = PostgresContainer(image, username="cityscore", password="cityscore",
                                      dbname="cityscore_test", driver="psycopg")
        try:
            container.start()
        except Exception as exc:
            attempts.append(f"testcontainers ({image}): {exc!r}")
        else:
            try:
                url = container.get_connection_url()
                _check_postgres(url)
                yield url
                return
            finally:
                container.stop()
    else:
        attempts.append("testcontainers: no Docker engine answers")

    script = REPO_ROOT / "deploy" / "postgres" / "start.sh"
    was_running = _local_pg_running()
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600)
    lines = [line for line in result.stdout.splitlines() if line.startswith("postgresql")]
    if result.returncode != 0 or not lines:
        attempts.append(f"{script.relative_to(REPO_ROOT)} (exit {result.returncode}):\n"
                        + result.stderr[-3000:])
        _fail("PostgreSQL", attempts)
    url = lines[-1]
    try:
        _check_postgres(url)
    except Exception as exc:
        attempts.append(f"{script.relative_to(REPO_ROOT)} printed {url} but: {exc!r}")
        url = None
    if url is None:
        _fail("PostgreSQL", attempts)
    try:
        yield url
    finally:
        if not was_running and not _keep_services():
            subprocess.run(["bash", str(REPO_ROOT / "deploy" / "postgres" / "stop.sh")],
                           capture_output=True, timeout=120)


@pytest.fixture
def pg_engine(database_url):
    """A fresh SQLAlchemy engine on the test database, disposed after the test."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url, pool_pre_ping=True)
    try:
        yield engine
    finally:
        engine.dispose()


# -- fixtures of the integration and end-to-end tests ---------------------------------------


@pytest.fixture
def schema(database_url):
    """The notifier's tables, dropped after the test."""
    from tests.helpers.notifier import Schema

    created = Schema(database_url)
    try:
        yield created
    finally:
        created.drop()


@pytest.fixture
def own_broker():
    """A broker this test may kill (tests.helpers.broker.kill_broker); fails (never skips) when none can be run.

    Always a local broker (shared.dev.local_kafka), even where the shared one comes from testcontainers:
    the test kills its process and starts it again on the same port with the same data.
    """
    from shared.dev import local_kafka
    from tests.helpers.broker import OWN_BROKER_PORT

    started = local_kafka.start(port=OWN_BROKER_PORT, wait=120, fresh=True)
    assert started.started, (f"a broker was already running on port {OWN_BROKER_PORT}: stop it, or set "
                             "CITYSCORE_TEST_E2E_KAFKA_PORT to a free port")
    try:
        yield started.bootstrap_servers
    finally:
        local_kafka.stop(OWN_BROKER_PORT)
