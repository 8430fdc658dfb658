"""The composition root: settings -> catalog -> engine, filled in the same way for every service.

SQLite files only (no server): a fresh database, one at an old migration, a read-only URL.
"""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from services.ingest.settings import IngestSettings
from services.scorer.settings import ScorerSettings
from shared.core.catalog import load_catalog
from shared.platform.bootstrap import bootstrap
from shared.platform.settings import Settings, get_settings
from shared.store.engine import alembic_config, make_engine
from shared.store.schema import SchemaNotCurrent, current_revisions, head_revisions

CATALOG = load_catalog()


def at_revision(url: str, revision: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def test_a_service_gets_its_own_settings_from_the_environment_and_a_migrated_database(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/laptop.db"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("INGEST_MAX_BATCH", "12")
    get_settings.cache_clear()
    try:
        settings, catalog, engine = bootstrap(IngestSettings)
    finally:
        get_settings.cache_clear()
    assert isinstance(settings, IngestSettings) and settings.max_batch == 12
    assert catalog.city == "Boston"  # CITYSCORE_CATALOG unset: Boston's
    assert engine.url.render_as_string() == url
    assert current_revisions(engine) == head_revisions()  # MIGRATE_ON_START defaults to true
    engine.dispose()


def test_a_service_that_may_not_migrate_stops_on_an_old_schema_and_changes_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    at_revision(url, "0001")
    with pytest.raises(SchemaNotCurrent, match="is at 0001, not at"):
        bootstrap(ScorerSettings, settings=ScorerSettings(DATABASE_URL=url, MIGRATE_ON_START="false"),
                  catalog=CATALOG)
    engine = make_engine(url)
    assert current_revisions(engine) == {"0001"}
    engine.dispose()


def test_the_reader_uses_the_board_url_and_never_migrates(tmp_path):
    owner, reader = f"sqlite:///{tmp_path}/owner.db", f"sqlite:///{tmp_path}/reader.db"
    settings = ScorerSettings(DATABASE_URL=owner, BOARD_DATABASE_URL=reader)  # MIGRATE_ON_START: true
    with pytest.raises(SchemaNotCurrent, match="an empty database"):
        bootstrap(ScorerSettings, settings=settings, catalog=CATALOG, reader=True)
    empty = make_engine(reader)
    assert inspect(empty).get_table_names() == []  # checked, not migrated
    empty.dispose()

    at_revision(reader, "head")
    foundation = bootstrap(ScorerSettings, settings=settings, catalog=CATALOG, reader=True)
    assert foundation.engine.url.render_as_string() == reader
    foundation.engine.dispose()
    # without BOARD_DATABASE_URL the reader connects like everyone else (and migrates on a laptop)
    plain = bootstrap(ScorerSettings, settings=ScorerSettings(DATABASE_URL=owner), catalog=CATALOG, reader=True)
    assert plain.engine.url.render_as_string() == owner and current_revisions(plain.engine) == head_revisions()
    plain.engine.dispose()


def test_parts_a_caller_passes_are_used_as_they_are(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/given.db")  # empty: a given engine is not migrated nor checked
    settings = Settings(DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/never")
    foundation = bootstrap(settings=settings, catalog=CATALOG, engine=engine)
    assert foundation == (settings, CATALOG, engine)
    assert inspect(engine).get_table_names() == []
    engine.dispose()
