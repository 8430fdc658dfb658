"""The rules of actions and notes on the record (shared/core/record.py): what may be recorded,
closing with an outcome, and when an owner is reminded (once, from the morning of the due day)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest

from shared.core.record import (
    CLOSED, Problem, Refused, action_digest, close, new_action, new_note, note_digest, reminder_due,
)

NOW = datetime(2026, 7, 24, 13, 0, tzinfo=timezone.utc)
TODAY = date(2026, 7, 24)
BOSTON = ZoneInfo("America/New_York")
MORNING = time(8, 30)


def action(**overrides):
    values = dict(metric="pothole-on-time", department="public-works", owner="U0PWD1",
                  text="Add a second crew on Tuesdays", due=date(2026, 7, 31), today=TODAY, created_by="U0PWD2",
                  created_at=NOW)
    values.update(overrides)
    return new_action(**values)


def refusal(**overrides) -> list[Problem]:
    with pytest.raises(Refused) as refused:
        action(**overrides)
    return refused.value.problems


def test_an_action_is_recorded_open_with_its_words_trimmed():
    recorded = action(text="  Add a second crew  ", due=TODAY)  # due today is allowed
    assert (recorded.status, recorded.text, recorded.due, recorded.outcome) == ("open", "Add a second crew", TODAY,
                                                                                None)
    assert recorded.is_open and not recorded.overdue(TODAY) and recorded.overdue(date(2026, 7, 25))


def test_a_due_day_in_the_past_is_refused_naming_the_field_and_today():
    assert refusal(due=date(2026, 7, 23)) == [Problem("due", "2026-07-23 is in the past (today is 2026-07-24)")]
    assert refusal(due=None) == [Problem("due", "give the day it is due (YYYY-MM-DD)")]


def test_empty_words_and_owner_are_refused_each_naming_its_field():
    assert [p.field for p in refusal(text="   ", owner="", due=date(2026, 7, 1))] == ["text", "owner", "due"]
    assert refusal(text="x" * 2001) == [Problem("text", "the action is 2001 characters; at most 2000")]


def test_closing_needs_an_outcome_and_happens_once():
    recorded = replace(action(), id=7)
    closed = close(recorded, " Crew added; backlog down to 12 ", "U0PWD1", NOW)
    assert (closed.status, closed.outcome, closed.closed_by, closed.closed_at) == (
        CLOSED, "Crew added; backlog down to 12", "U0PWD1", NOW)
    assert not closed.overdue(date(2027, 1, 1))
    with pytest.raises(Refused) as empty:
        close(recorded, "  ", "U0PWD1", NOW)
    assert empty.value.problems == [Problem("outcome", "the outcome is empty")]
    with pytest.raises(Refused) as again:
        close(closed, "again", "U0PWD2", NOW)
    assert again.value.problems == [Problem("status", "action 7 was closed already by U0PWD1")]


def test_the_owner_is_reminded_from_the_morning_of_the_due_day_and_once():
    recorded = action(due=date(2026, 7, 31))

    def at(day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2026, 7, day, hour, minute, tzinfo=BOSTON)

    assert not reminder_due(recorded, at(30, 23, 59), MORNING)  # the day before
    assert not reminder_due(recorded, at(31, 8, 29), MORNING)  # due day, before the morning
    assert reminder_due(recorded, at(31, 8, 30), MORNING)
    assert reminder_due(recorded, datetime(2026, 8, 1, 0, 5, tzinfo=BOSTON), MORNING)  # the day after: any time
    assert not reminder_due(replace(recorded, reminded_at=NOW), at(31, 9), MORNING)  # reminded already
    assert not reminder_due(close(recorded, "done early", "U0PWD1", NOW), at(31, 9), MORNING)  # closed


def test_a_note_is_internal_by_default_and_needs_words_and_a_day():
    note = new_note(metric="pothole-on-time", day=date(2026, 7, 20), text=" Snowstorm closed the depots ",
                    author="U0PWD1", created_at=NOW)
    assert (note.text, note.public, note.alert_id) == ("Snowstorm closed the depots", False, None)
    with pytest.raises(Refused) as refused:
        new_note(metric="pothole-on-time", day=None, text="", author="U0PWD1", created_at=NOW)
    assert [p.field for p in refused.value.problems] == ["text", "day"]


def test_the_same_action_or_note_is_one_by_its_digest():
    assert action_digest(action()) == action_digest(action(created_at=datetime(2026, 7, 24, 14, 0,
                                                                               tzinfo=timezone.utc)))
    assert action_digest(action()) != action_digest(action(owner="U0PWD2"))
    note = new_note(metric="m", day=TODAY, text="t", author="a", created_at=NOW)
    assert note_digest(note) != note_digest(replace(note, day=date(2026, 7, 23)))


def test_an_owner_is_a_slack_user_as_given_else_by_the_letters_of_a_slack_id():
    from shared.core.record import is_slack_user, owner_given

    assert owner_given("<@U0PWD1>") == ("U0PWD1", True) and owner_given(" <@W0ABC|jane> ") == ("W0ABC", True)
    assert owner_given("WATER") == ("WATER", False) and owner_given("Jane Roe") == ("Jane Roe", False)
    assert is_slack_user("WATER", False) is False and is_slack_user("U0PWD1", True) is True
    # Recorded before the kind was kept (None): by the letters, as then; an alert's owner is always a user id.
    assert is_slack_user("U0PWD1") and not is_slack_user("Jane Roe") and not is_slack_user("U")


def test_a_slack_user_owner_must_be_a_slack_user_id():
    from shared.core.record import Refused

    with pytest.raises(Refused) as refused:
        new_action(metric="m", department="d", owner="water crew", text="t", due=date(2026, 7, 2),
                   today=date(2026, 7, 1), created_by="x", created_at=datetime(2026, 7, 1, tzinfo=timezone.utc),
                   owner_is_user=True)
    assert [p.field for p in refused.value.problems] == ["owner"]
