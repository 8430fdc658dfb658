"""Every table, one module per service that owns them: ingest.py, scorer.py, notifier.py; record.py
holds the actions and notes that the notifier and the commands write and the pages read.

They share one declarative base, so one metadata holds them all: importing this package
imports the three modules, and Alembic's autogenerate (shared/store/migrations/env.py)
and anyone who resets a database see every table, whichever service imported first.
"""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names so migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# Imported after Base, which they build on, so that Base.metadata always has every table.
from shared.store.tables import ingest, notifier, record, scorer  # noqa: E402

__all__ = ["Base", "NAMING", "ingest", "notifier", "record", "scorer"]
