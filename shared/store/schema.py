"""The database schema when a service starts: migrate it, or refuse one that is not at head.

On a laptop (the default, MIGRATE_ON_START=true) every service brings the schema up to
date itself. In production the schema changes once per release, in its own one-shot job
(`cityscore db upgrade`: the Kubernetes Job, compose's `migrate` service), run by the
role that owns the tables; the services run with MIGRATE_ON_START=false, under roles
that may not change the schema, and a service started against an older (or newer)
schema stops at once and says what to run, instead of failing on its first query.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from shared.store.engine import alembic_config, migrate


class SchemaNotCurrent(RuntimeError):
    """The database is not at the migration this code needs, and the service may not migrate it."""


def head_revisions() -> set[str]:
    """The newest migration(s) of this code."""
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    """The migration(s) the database is at; empty when it has none (no schema yet)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def check_schema(engine: Engine) -> None:
    """Raise SchemaNotCurrent unless the database is at this code's head migration."""
    current, heads = current_revisions(engine), head_revisions()
    if current == heads:
        return
    where = engine.url.render_as_string(hide_password=True)
    at = ", ".join(sorted(current)) if current else "no migration at all (an empty database)"
    raise SchemaNotCurrent(
        f"MIGRATE_ON_START is false and the database {where} is at {at}, not at {', '.join(sorted(heads))} "
        "that this version needs: run `cityscore db upgrade` as the role that owns the schema (in Kubernetes "
        "the cityscore-db-upgrade Job, in docker compose the migrate service), then start the service again")


def prepare_schema(engine: Engine, migrate_on_start: bool) -> None:
    """migrate() the database when `migrate_on_start` (MIGRATE_ON_START), else check it is at head."""
    if migrate_on_start:
        migrate(engine)
    else:
        check_schema(engine)
