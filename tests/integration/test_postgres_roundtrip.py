"""SQLAlchemy 2 round trip on a real PostgreSQL: DDL in a scratch schema, inserts,
a unique violation, a rolled-back transaction, and reading back."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError

pytestmark = pytest.mark.postgres


@pytest.fixture
def scratch(pg_engine):
    """A table in a schema of its own, dropped with the schema after the test."""
    schema = f"it_{uuid.uuid4().hex[:12]}"
    metadata = sa.MetaData(schema=schema)
    table = sa.Table(
        "case_events",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("case_id", sa.Text, nullable=False, unique=True),
        sa.Column("department", sa.Text, nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("payload", JSONB, nullable=False),
    )
    with pg_engine.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
        metadata.create_all(conn)
    try:
        yield table
    finally:
        with pg_engine.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))


def test_really_postgresql(pg_engine):
    assert pg_engine.dialect.name == "postgresql"
    assert pg_engine.dialect.driver == "psycopg"
    with pg_engine.connect() as conn:
        version = conn.execute(sa.text("SHOW server_version_num")).scalar_one()
    assert int(version) >= 120000


def test_insert_unique_violation_rollback_and_read_back(pg_engine, scratch):
    table = scratch
    assert pg_engine.dialect.name == "postgresql"

    with pg_engine.begin() as conn:
        conn.execute(table.insert(), [
            {"case_id": "101", "department": "PWD", "payload": {"kind": "pothole"}},
            {"case_id": "102", "department": "BTD", "payload": {"kind": "signal"}},
        ])

    # A duplicate case_id violates the unique constraint; the transaction is rolled back.
    with pytest.raises(IntegrityError) as excinfo:
        with pg_engine.begin() as conn:
            conn.execute(table.insert(), {"case_id": "103", "department": "PWD", "payload": {}})
            conn.execute(table.insert(), {"case_id": "101", "department": "PWD", "payload": {}})
    assert excinfo.value.orig.sqlstate == "23505"  # unique_violation

    # An explicit rollback leaves nothing behind either.
    with pg_engine.connect() as conn:
        tx = conn.begin()
        conn.execute(table.insert(), {"case_id": "104", "department": "ISD", "payload": {}})
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 3
        tx.rollback()

    with pg_engine.connect() as conn:
        rows = conn.execute(
            sa.select(table.c.case_id, table.c.department, table.c.payload, table.c.opened_at)
            .order_by(table.c.case_id)
        ).all()
    assert [(r.case_id, r.department, r.payload) for r in rows] == [
        ("101", "PWD", {"kind": "pothole"}),
        ("102", "BTD", {"kind": "signal"}),
    ]
    assert all(r.opened_at.tzinfo is not None for r in rows)


def test_temp_table_is_private_to_its_connection(pg_engine):
    # Both connections are held at once, so the pool cannot hand back the same session.
    with pg_engine.connect() as conn, pg_engine.connect() as other:
        conn.execute(sa.text("CREATE TEMP TABLE probe (n int PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO probe VALUES (1), (2)"))
        assert conn.execute(sa.text("SELECT sum(n) FROM probe")).scalar_one() == 3
        assert other.execute(sa.text("SELECT to_regclass('pg_temp.probe')")).scalar_one() is None
