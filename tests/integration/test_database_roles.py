"""Production's database roles: the board reads with a role that cannot write, and services
that may not migrate refuse a schema that is not at head.

On PostgreSQL: the read-only role cityscore_reader (deploy/postgres/start.sh makes it; the
test makes it itself where it may create roles) gets deploy/postgres/grant-reader.sql
before the migrations run, so it reads the tables they create through the default
privileges. The board app (BOARD_DATABASE_URL) serves every page and API answer through
it; the role can change nothing. MIGRATE_ON_START=false is checked on PostgreSQL and on
SQLite, through the apps, the notifier and the `cityscore scorer run` command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from services.ingest.app import create_app as ingest_app
from services.notifier.main import build as notifier_build
from services.notifier.settings import NotifierSettings
from services.ingest.settings import IngestSettings
from services.scorer.app import create_app as board_app
from services.scorer.settings import ScorerSettings
from shared.core.catalog import load_catalog
from shared.core.contract import parse_event
from shared.store.engine import alembic_config, make_engine, migrate
from shared.dev.generator import generate
from shared.store.schema import SchemaNotCurrent, current_revisions, head_revisions
from shared.store.published_scores import PublishedScores
from shared.store.score_reader import ScoreReader
from shared.store.score_writer import ScoreWriter
from shared.platform.settings import Settings
from tests.fakes.clock import ManualClock
from tests.helpers.ingest import empty_database

ROOT = Path(__file__).resolve().parents[2]
GRANTS = ROOT / "deploy" / "postgres" / "grant-reader.sql"
READER, READER_PASSWORD = "cityscore_reader", "cityscore_reader"  # deploy/postgres/start.sh's local role
CATALOG = load_catalog()
END = date(2026, 6, 30)
NOW = datetime(2026, 7, 1, 13, 30, tzinfo=timezone.utc)


def tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def grant_statements() -> list[str]:
    lines = [line for line in GRANTS.read_text().splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


@pytest.fixture
def reader_url(database_url):
    """The URL of the read-only role on an emptied database whose owner granted it grant-reader.sql."""
    owner = empty_database(database_url)
    with owner.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": READER})
    if not exists:
        try:
            with owner.begin() as conn:
                conn.exec_driver_sql(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'")
                conn.exec_driver_sql(f"ALTER ROLE {READER} SET default_transaction_read_only = on")
        except DBAPIError as exc:
            pytest.fail(f"role {READER} is missing and {make_url(database_url).username} may not create it "
                        f"({exc.orig}); deploy/postgres/start.sh creates it")
    with owner.begin() as conn:
        for statement in grant_statements():
            conn.exec_driver_sql(statement)
    owner.dispose()
    return make_url(database_url).set(username=READER, password=READER_PASSWORD).render_as_string(
        hide_password=False)


def publish_board(url: str) -> None:
    """Migrate as the owner and fold 40 generated days, then score them (what the scorer does)."""
    engine = make_engine(url)
    migrate(engine)
    events = [parse_event(e) for e in generate(CATALOG, 40, 3, END)]
    with engine.begin() as conn:
        ScoreWriter(engine, CATALOG).fold(conn, events)
    with engine.begin() as conn:
        PublishedScores(ScoreReader(engine, CATALOG)).rescore(conn, END)
    engine.dispose()


@pytest.mark.postgres
def test_the_board_serves_everything_through_the_read_only_role(database_url, reader_url):
    publish_board(database_url)
    settings = ScorerSettings(DATABASE_URL=database_url, BOARD_DATABASE_URL=reader_url, MIGRATE_ON_START="false")
    app = board_app(settings, catalog=CATALOG, clock=ManualClock(NOW))
    engine = app.extensions["cityscore"]["store"].engine
    assert engine.url.username == READER
    client = app.test_client()
    for path in ("/", "/metric/shootings", f"/v1/scoreboard?as_of={END}",
                 "/v1/metrics/pothole-on-time/history?window=week&days=30", "/readyz", "/healthz", "/metrics"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.get_data(as_text=True)[:300])
    reference = board_app(ScorerSettings(DATABASE_URL=database_url), catalog=CATALOG, clock=ManualClock(NOW)).test_client()
    assert client.get(f"/v1/scoreboard?as_of={END}").json == reference.get(f"/v1/scoreboard?as_of={END}").json


@pytest.mark.postgres
@pytest.mark.parametrize("statement", [
    "INSERT INTO processed_events (event_id) VALUES ('forged')",
    "UPDATE current_scores SET score = 2",
    "DELETE FROM day_totals",
    "TRUNCATE score_outbox",
    "CREATE TABLE forged (id int)",
    "DROP TABLE alembic_version",
    "ALTER TABLE current_scores ADD COLUMN forged int",
])
def test_the_read_only_role_cannot_write(database_url, reader_url, statement):
    at_revision(database_url, "head")  # the tables, empty: both refusals come before any row is read
    reader = make_engine(reader_url)
    try:
        with reader.connect() as conn:
            # Its sessions are read-only (SQLSTATE 25006) ...
            with pytest.raises(DBAPIError) as refused:
                conn.exec_driver_sql(statement)
            assert refused.value.orig.sqlstate == "25006", refused.value.orig
            conn.rollback()
            # ... and a session that turns that off still lacks the privilege (42501).
            conn.exec_driver_sql("SET default_transaction_read_only = off")
            conn.commit()
            with pytest.raises(DBAPIError) as refused:
                conn.exec_driver_sql(statement)
            assert refused.value.orig.sqlstate == "42501", refused.value.orig
            conn.rollback()
    finally:
        reader.dispose()


@pytest.mark.postgres
def test_the_board_never_migrates_with_the_read_only_role(database_url, reader_url):
    settings = ScorerSettings(DATABASE_URL=database_url, BOARD_DATABASE_URL=reader_url)  # MIGRATE_ON_START: true
    with pytest.raises(SchemaNotCurrent, match="cityscore db upgrade"):
        board_app(settings, catalog=CATALOG)
    assert not tables(make_engine(database_url))


def at_revision(url: str, revision: str) -> None:
    command.upgrade(alembic_config(url), revision)


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request, tmp_path):
    if request.param == "postgresql":
        return request.getfixturevalue("database_url")
    return f"sqlite:///{tmp_path}/roles.db"


def test_services_that_may_not_migrate_refuse_a_schema_not_at_head(database):
    engine = empty_database(database)
    env = {"DATABASE_URL": database, "MIGRATE_ON_START": "false"}
    settings = ScorerSettings(**env)
    for start in (lambda: board_app(settings, catalog=CATALOG), lambda: ingest_app(IngestSettings(**env), catalog=CATALOG),
                  lambda: notifier_build(Settings(**env), NotifierSettings(), catalog=CATALOG)):
        with pytest.raises(SchemaNotCurrent) as refused:
            start()
        message = str(refused.value)
        assert "MIGRATE_ON_START is false" in message and "an empty database" in message
        assert "cityscore db upgrade" in message
    assert not tables(engine), "a service that may not migrate created tables"

    at_revision(database, "0001")
    with pytest.raises(SchemaNotCurrent, match=r"is at 0001, not at "):
        board_app(settings, catalog=CATALOG)
    assert current_revisions(engine) == {"0001"}

    # The one-shot job migrates; then the services start.
    done = subprocess.run([sys.executable, "-m", "services.cli", "db", "upgrade"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "DATABASE_URL": database})
    assert done.returncode == 0, done.stderr
    assert current_revisions(engine) == head_revisions()
    assert board_app(settings, catalog=CATALOG).test_client().get("/readyz").status_code == 200
    engine.dispose()


def test_the_laptop_default_still_migrates_on_start(tmp_path):
    url = f"sqlite:///{tmp_path}/laptop.db"
    assert Settings(DATABASE_URL=url).migrate_on_start is True
    app = board_app(ScorerSettings(DATABASE_URL=url), catalog=CATALOG)
    assert current_revisions(app.extensions["cityscore"]["store"].engine) == head_revisions()


def test_the_scorer_command_stops_with_the_reason_when_it_may_not_migrate(tmp_path):
    url = f"sqlite:///{tmp_path}/command.db"
    env = {**os.environ, "DATABASE_URL": url, "MIGRATE_ON_START": "false", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", "services.cli", "scorer", "run", "--http-port", "0"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Error: MIGRATE_ON_START is false" in done.stderr and "cityscore db upgrade" in done.stderr
    assert "Traceback" not in done.stderr
