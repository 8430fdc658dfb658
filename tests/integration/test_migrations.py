"""Migrations: every service migrates on start, so several may do it at once."""

from __future__ import annotations

import threading

from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text

from shared.store.engine import alembic_config, make_engine, migrate


def test_concurrent_migrations_of_a_fresh_postgresql_database(database_url):
    engine = make_engine(database_url)
    with engine.begin() as conn:
        existing = MetaData()
        existing.reflect(conn)
        existing.drop_all(conn)
    errors: list[str] = []

    def start_a_service():
        try:
            migrate(database_url)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(repr(exc)[:300])

    services = [threading.Thread(target=start_a_service) for _ in range(4)]
    for thread in services:
        thread.start()
    for thread in services:
        thread.join(timeout=120)
    assert errors == []
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
        tables = set(MetaData().reflect(conn) or []) | set(conn.dialect.get_table_names(conn))
    assert {"processed_events", "day_totals", "api_keys", "current_scores"} <= tables
    engine.dispose()


def test_sqlite_file_migrates_from_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/fresh.db"
    migrate(url)
    migrate(url)  # a second start finds nothing to do
    engine = make_engine(url)
    with engine.connect() as conn:
        assert "day_totals" in conn.dialect.get_table_names(conn)
    engine.dispose()


def test_timestamps_come_back_zone_aware_in_utc(tmp_path, database_url):
    from datetime import datetime, timedelta, timezone

    from shared.store.engine import session_factory
    from shared.store.tables.ingest import Department

    eastern = timezone(timedelta(hours=-5))
    for url in (f"sqlite:///{tmp_path}/tz.db", database_url):
        engine = make_engine(url)
        migrate(engine)
        with session_factory(engine)() as session:
            session.query(Department).filter_by(id="tz-test").delete()
            session.add(Department(id="tz-test", name="t", created_at=datetime(2026, 3, 8, 1, 30, tzinfo=eastern)))
            session.commit()
        with session_factory(engine)() as session:
            stored = session.get(Department, "tz-test").created_at
            assert stored == datetime(2026, 3, 8, 6, 30, tzinfo=timezone.utc), url
            assert stored.utcoffset() == timedelta(0)
            session.query(Department).filter_by(id="tz-test").delete()
            session.commit()
        engine.dispose()
