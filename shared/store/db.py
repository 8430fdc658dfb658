"""The database: SQLAlchemy 2 models, the engine, and Alembic migrations.

SQLite is the laptop default; PostgreSQL runs the tests and production. The schema
is owned by Alembic (shared/store/migrations); `migrate()` brings any database up to date.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Float,
    Index,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker
from sqlalchemy.pool import NullPool

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


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timestamps stored in UTC and always read back zone-aware (SQLite keeps no offsets)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("naive datetime given for a UTC timestamp column")
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if isinstance(value, datetime):
            value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value


# -- ingest: who may send events --------------------------------------------------


class Department(Base):
    __tablename__ = "departments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    """A department's API key; only a hash of the secret is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    department_id: Mapped[str] = mapped_column(ForeignKey("departments.id"), index=True)
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class IdempotencyRecord(Base):
    """The first answer to a request sent with an Idempotency-Key, replayed on retries."""

    __tablename__ = "idempotency_records"

    api_key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    status: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


# -- scorer: daily totals, what replaced what, and the published scores -------------------

# An id that autoincrements on SQLite too (SQLite only does that for INTEGER keys).
AutoId = BigInteger().with_variant(Integer, "sqlite")


class ProcessedEvent(Base):
    """Every event folded once, and what it counts (so that it can be withdrawn or corrected).

    An event is (department, event_id): a redelivered event finds its row here and changes
    nothing. `part_key` names the replaceable part it counts under (a case, a tally); an
    incident's or a measurement's contribution is kept in the row itself (`metric` NULL:
    it counts nothing, e.g. a withdrawal, or an event withdrawn). department '' marks a
    row folded before identities were per department: it stands for every department.
    """

    __tablename__ = "processed_events"

    # event_id first: the claim looks an id up for its department and for ''.
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    department: Mapped[str] = mapped_column(String(64), primary_key=True, server_default="")
    part_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    metric: Mapped[str | None] = mapped_column(String(64), nullable=True)
    day: Mapped[date | None] = mapped_column(Date, nullable=True)
    numerator: Mapped[float | None] = mapped_column(Float, nullable=True)
    denominator: Mapped[float | None] = mapped_column(Float, nullable=True)
    count: Mapped[float | None] = mapped_column(Float, nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)


class CurrentPart(Base):
    """The contribution now counted for a replaceable identity (a case, a day's tally).

    `metric`/`day` are NULL while it counts nowhere (an open case).
    """

    __tablename__ = "current_parts"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    metric: Mapped[str | None] = mapped_column(String(64), nullable=True)
    day: Mapped[date | None] = mapped_column(Date, nullable=True)
    numerator: Mapped[float] = mapped_column(Float, default=0.0)
    denominator: Mapped[float] = mapped_column(Float, default=0.0)
    count: Mapped[float] = mapped_column(Float, default=0.0)


class DayTotal(Base):
    """One metric's totals for one local day: the unit of scoring state."""

    __tablename__ = "day_totals"

    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    numerator: Mapped[float] = mapped_column(Float, default=0.0)
    denominator: Mapped[float] = mapped_column(Float, default=0.0)
    count: Mapped[float] = mapped_column(Float, default=0.0)
    # How many contributions the day holds; a day whose last one is taken back is deleted
    # (it is no longer data, nor its metric's first day). NULL: folded before this was
    # counted, so unknown and never deleted.
    parts: Mapped[int | None] = mapped_column(Integer, nullable=True, default=0)


class MeasurementValue(Base):
    """A raw measurement kept for a median (target_over_median metrics only)."""

    __tablename__ = "measurement_values"
    __table_args__ = (Index("ix_measurement_values_metric_day", "metric", "day"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    metric: Mapped[str] = mapped_column(String(64))
    day: Mapped[date] = mapped_column(Date)
    value: Mapped[float] = mapped_column(Float)


class MetricFirstDay(Base):
    """The first local day a metric had data: where trend history begins."""

    __tablename__ = "metric_first_days"

    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_day: Mapped[date] = mapped_column(Date)


class CurrentScore(Base):
    """The last published score of each metric (and of the city, metric 'cityscore') per window."""

    __tablename__ = "current_scores"

    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    window: Mapped[str] = mapped_column(String(32), primary_key=True)
    as_of: Mapped[date] = mapped_column(Date)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    numerator: Mapped[float | None] = mapped_column(Float, nullable=True)
    denominator: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ScoreOutbox(Base):
    """Score changes written in the fold's transaction, published to Kafka after the commit."""

    __tablename__ = "score_outbox"
    # The id is the change's published sequence (ScoreStore.pending_outbox), so it must never
    # be reused: without AUTOINCREMENT SQLite numbers from 1 again once the outbox is emptied.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# -- engine and migrations -----------------------------------------------------------


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
    engine = create_engine(url, pool_pre_ping=True, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            # WAL lets the API read while the scorer writes; foreign keys are off by default.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


# Any fixed number: the PostgreSQL advisory lock that lets one process migrate at a time.
MIGRATION_LOCK = 0x43495459  # "CITY"


def migrate(engine_or_url: Engine | str) -> None:
    """Bring the database schema up to the newest migration.

    Every service migrates on start; on PostgreSQL an advisory lock makes the others
    wait for the first, then find nothing to do (SQLite serialises writers itself).
    """
    from alembic import command
    from sqlalchemy import text

    url = engine_or_url if isinstance(engine_or_url, str) else engine_or_url.url.render_as_string(hide_password=False)
    if not url.startswith("postgresql"):
        command.upgrade(alembic_config(url), "head")
        return
    lock_engine = create_engine(url, poolclass=NullPool)
    try:
        with lock_engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            try:
                command.upgrade(alembic_config(url), "head")
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                conn.commit()
    finally:
        lock_engine.dispose()


__all__ = [
    "ApiKey",
    "Base",
    "Department",
    "IdempotencyRecord",
    "make_engine",
    "migrate",
    "session_factory",
]
