"""Which database errors are the data's (dead-letter the event) and which are not (retry, or stop)."""

import psycopg
import pytest
import sqlite3
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, ProgrammingError

from services.scorer.steps import refusal as _refusal, refused_data as _refused, retryable as _retryable


def wrapped(kind, error):
    return kind("INSERT INTO processed_events ...", {}, error)


@pytest.mark.parametrize("error", [
    wrapped(DataError, psycopg.errors.UntranslatableCharacter("unsupported Unicode escape sequence")),  # a NUL
    wrapped(DataError, psycopg.errors.NumericValueOutOfRange("value out of range: overflow")),
    wrapped(DataError, psycopg.errors.StringDataRightTruncation("value too long for type character varying(64)")),
    wrapped(DataError, psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")),  # client side
    wrapped(IntegrityError, psycopg.errors.CheckViolation("violates check constraint")),
    wrapped(IntegrityError, psycopg.errors.NotNullViolation("null value in column \"count\"")),
    wrapped(IntegrityError, sqlite3.IntegrityError("CHECK constraint failed: positive")),
])
def test_the_data_s_errors_are_refusals_never_retried(error):
    assert _refused(error)
    assert not _retryable(error)


@pytest.mark.parametrize("error", [
    # another scorer claimed the same event meanwhile (a rebalance): retried, then found claimed
    wrapped(IntegrityError, psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")),
    wrapped(IntegrityError, sqlite3.IntegrityError("UNIQUE constraint failed: processed_events.event_id")),
])
def test_a_duplicate_key_is_a_race_to_retry_not_a_refusal(error):
    assert not _refused(error)


def test_a_refusal_mentioning_a_retryable_word_is_still_not_retried():
    # The database's message may quote the event's data, whatever words it holds.
    error = wrapped(IntegrityError, psycopg.errors.CheckViolation(
        'new row violates check constraint "c" DETAIL: Failing row contains (deadlock connection)'))
    assert _refused(error) and not _retryable(error)


@pytest.mark.parametrize("error", [
    wrapped(OperationalError, psycopg.OperationalError("server closed the connection unexpectedly")),
    wrapped(OperationalError, sqlite3.OperationalError("no such table: processed_events")),  # a bug: stop
    wrapped(ProgrammingError, psycopg.errors.UndefinedColumn("column \"parts\" does not exist")),
])
def test_connections_and_bugs_are_not_refusals(error):
    assert not _refused(error)


def test_the_reason_gives_the_database_s_message_and_sqlstate():
    reason = _refusal(wrapped(DataError, psycopg.errors.UntranslatableCharacter("unsupported Unicode escape sequence")))
    assert reason == "refused by the database: unsupported Unicode escape sequence [SQLSTATE 22P05]"
    assert _refusal(wrapped(IntegrityError, sqlite3.IntegrityError("CHECK constraint failed: positive"))) == \
        "refused by the database: CHECK constraint failed: positive"
