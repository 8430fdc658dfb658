"""Commands of the ingest service: serve, and manage departments and their API keys."""

from __future__ import annotations

import click

from shared.platform.settings import get_settings


def _sessions():
    from shared.platform.bootstrap import bootstrap
    from shared.store.engine import session_factory
    from shared.store.schema import SchemaNotCurrent

    from .settings import IngestSettings

    try:
        foundation = bootstrap(IngestSettings)
    except SchemaNotCurrent as exc:
        raise click.ClickException(str(exc)) from None
    return session_factory(foundation.engine)


def _catalog():
    from shared.core.catalog import load_catalog

    return load_catalog(get_settings().catalog)


@click.group("ingest")
def ingest_group() -> None:
    """The ingest service (HTTP → Kafka)."""


@ingest_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run ingest locally (threaded). In production run gunicorn: see deploy/."""
    from werkzeug.serving import run_simple

    from shared.platform.logs import configure_logging

    from .app import create_app

    configure_logging()
    run_simple(host, port, create_app(), threaded=True)


@ingest_group.command("purge")
def purge() -> None:
    """Delete idempotency records older than INGEST_IDEMPOTENCY_TTL_HOURS, once.

    Each ingest process also does this every INGEST_PURGE_EVERY seconds.
    """
    from shared.store.engine import make_engine

    from .retention import purge_idempotency_records
    from .settings import IngestSettings

    settings = get_settings(IngestSettings)
    engine = make_engine(settings.database_url)
    purged = purge_idempotency_records(engine, settings.idempotency_ttl_hours)
    engine.dispose()
    click.echo(f"{purged} idempotency records older than {settings.idempotency_ttl_hours} h purged")


@click.group("departments")
def departments_group() -> None:
    """Departments that send events."""


@departments_group.command("add")
@click.argument("department")
@click.option("--name", default=None, help="Display name (default: the catalog's).")
def departments_add(department: str, name: str | None) -> None:
    """Register a catalog department so it can be issued keys."""
    from .keys import KeyAdminError, add_department

    with _sessions()() as session:
        try:
            added = add_department(session, _catalog(), department, name)
        except KeyAdminError as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
        click.echo(f"department {added.id} ({added.name})")


@click.group("keys")
def keys_group() -> None:
    """API keys of departments."""


@keys_group.command("issue")
@click.argument("department")
@click.option("--label", default="", help="What the key is for, e.g. the sending system.")
def keys_issue(department: str, label: str) -> None:
    """Issue a key; it is printed once and only its hash is stored."""
    from .keys import KeyAdminError, issue_key

    with _sessions()() as session:
        try:
            issued = issue_key(session, department, label)
        except KeyAdminError as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
    click.echo(f"key id {issued.key_id} for {issued.department}; the key (shown once):", err=True)
    click.echo(issued.secret)


@keys_group.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key at once."""
    from .keys import KeyAdminError, revoke_key

    with _sessions()() as session:
        try:
            when = revoke_key(session, key_id)
        except KeyAdminError as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
    click.echo(f"key {key_id} revoked at {when.isoformat(timespec='seconds')}")


@keys_group.command("list")
def keys_list() -> None:
    """List keys (ids, departments, state; never secrets)."""
    from .keys import list_keys

    with _sessions()() as session:
        for key in list_keys(session):
            state = f"revoked {key.revoked_at.isoformat(timespec='seconds')}" if key.revoked_at else "active"
            click.echo(f"{key.id}\t{key.department_id}\t{state}\t{key.created_at.isoformat(timespec='seconds')}"
                       f"\t{key.label}")
