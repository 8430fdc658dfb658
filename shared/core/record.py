"""The rules of what a department keeps on the record: follow-up actions and notes.

An action is recorded with an owner, a due day (the city's local day, today or later) and
words; it stays open until someone closes it with its outcome, and its owner is reminded
once, on the morning of its due day (or the first time the notifier looks after it, if it
was down then). A note says what happened on a metric's day; it is internal unless marked
public. Every refusal names its field. Pure: the store (shared/store/record.py), the
notifier (services/notifier/actions.py) and the commands apply these.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, time

OPEN, CLOSED = "open", "closed"
# Slack's plain-text inputs take at most 3000 characters; the modals ask for 2000.
MAX_TEXT = 2000
MAX_OWNER = 120
# Slack's user ids (U…, or W… on Enterprise Grid): how an alert's owner (always a Slack user) and
# an action's owner recorded before owners were kept with their kind are told from a name.
SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,31}")
# A Slack user written as Slack writes a mention, `<@U0123ABCD>` (the command's way to name one).
_MENTION = re.compile(r"<@([UW][A-Z0-9]{2,31})(?:\|[^>]*)?>")


def is_slack_user(owner: str, given_as_user: bool | None = None) -> bool:
    """Whether an owner is a Slack user (mentioned, reminded in private) or a name (written as it
    is, reminded in the department's channel): as it was given when known, else by its letters."""
    return given_as_user if given_as_user is not None else bool(SLACK_USER.fullmatch(owner))


def owner_given(words: str) -> tuple[str, bool]:
    """An owner as the command takes it: a mention `<@U…>` is that Slack user; any other words,
    `WATER` included, are a name (a Slack user id is given by --owner-slack)."""
    found = _MENTION.fullmatch(words.strip())
    return (found[1], True) if found else (words, False)


@dataclass(frozen=True)
class Problem:
    """Why something cannot go on the record: the field, and the reason in words."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class Refused(ValueError):
    """Nothing was recorded: every problem names its field."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Action:
    id: int | None
    metric: str
    department: str
    owner: str
    text: str
    due: date
    created_by: str
    created_at: datetime
    alert_id: int | None = None
    status: str = OPEN
    outcome: str | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    reminded_at: datetime | None = None
    # True: `owner` is a Slack user id; False: a name; None (recorded before this was kept): by its letters.
    owner_is_user: bool | None = None

    @property
    def owner_is_slack_user(self) -> bool:
        return is_slack_user(self.owner, self.owner_is_user)

    @property
    def is_open(self) -> bool:
        return self.status == OPEN

    def overdue(self, today: date) -> bool:
        return self.is_open and self.due < today


@dataclass(frozen=True)
class Note:
    id: int | None
    metric: str
    day: date
    text: str
    author: str
    created_at: datetime
    public: bool = False
    alert_id: int | None = None


def _words(value: str | None, field: str, what: str, limit: int = MAX_TEXT) -> tuple[str, list[Problem]]:
    words = (value or "").strip()
    if not words:
        return words, [Problem(field, f"{what} is empty")]
    if len(words) > limit:
        return words, [Problem(field, f"{what} is {len(words)} characters; at most {limit}")]
    return words, []


def new_action(*, metric: str, department: str, owner: str | None, text: str | None, due: date | None,
               today: date, created_by: str, created_at: datetime, alert_id: int | None = None,
               owner_is_user: bool = False) -> Action:
    """An open action, or Refused naming each field that is wrong: no owner, no words, no due day,
    or a due day before `today` (the city's local day): a promise is for today or later. The owner
    is a Slack user id with `owner_is_user` (the modal's user picker), else a name."""
    words, problems = _words(text, "text", "the action")
    owner_words, owner_problems = _words(owner, "owner", "the owner", MAX_OWNER)
    problems += owner_problems
    if due is None:
        problems.append(Problem("due", "give the day it is due (YYYY-MM-DD)"))
    elif due < today:
        problems.append(Problem("due", f"{due.isoformat()} is in the past (today is {today.isoformat()})"))
    if owner_is_user and not owner_problems and not SLACK_USER.fullmatch(owner_words):
        problems.append(Problem("owner", f"{owner_words!r} is not a Slack user id (U… or W…)"))
    if problems:
        raise Refused(problems)
    return Action(None, metric, department, owner_words, words, due, created_by, created_at, alert_id,
                  owner_is_user=owner_is_user)


def close(action: Action, outcome: str | None, by: str, at: datetime) -> Action:
    """The action closed with its outcome; Refused if it is closed already or the outcome is empty."""
    words, problems = _words(outcome, "outcome", "the outcome")
    if not action.is_open:
        problems.insert(0, Problem("status", f"action {action.id} was closed already"
                                             + (f" by {action.closed_by}" if action.closed_by else "")))
    if problems:
        raise Refused(problems)
    return replace(action, status=CLOSED, outcome=words, closed_at=at, closed_by=by)


def reminder_due(action: Action, local_now: datetime, remind_at: time) -> bool:
    """Whether to remind the owner now: open, never reminded, and its due day has come (from
    `remind_at` that morning, the city's time; any time after a due day that passed)."""
    if not action.is_open or action.reminded_at is not None:
        return False
    today = local_now.date()
    return action.due < today or (action.due == today and local_now.time() >= remind_at)


def new_note(*, metric: str, day: date | None, text: str | None, author: str, created_at: datetime,
             public: bool = False, alert_id: int | None = None) -> Note:
    words, problems = _words(text, "text", "the note")
    if day is None:
        problems.append(Problem("day", "give the day the note is about (YYYY-MM-DD)"))
    if problems:
        raise Refused(problems)
    return Note(None, metric, day, words, author, created_at, public, alert_id)


def action_digest(action: Action) -> str:
    """The same action (who recorded what for whom, by when, on which metric) is recorded once."""
    return hashlib.sha256("\n".join((action.created_by, action.metric, action.owner, action.due.isoformat(),
                                     action.text)).encode()).hexdigest()


def note_digest(note: Note) -> str:
    """The same note (who wrote what on which metric and day) is kept once. Whether it is public is
    not part of it: the same note added again public makes the one kept public (shared/store/record.py)."""
    return hashlib.sha256("\n".join((note.author, note.metric, note.day.isoformat(), note.text)).encode()).hexdigest()
