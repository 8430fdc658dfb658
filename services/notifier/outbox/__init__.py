"""The outbox: every Slack message is written here first, then delivered exactly once.

Two halves, one table (`notifier_outbox`):

- the **queue** (queue.py): a use case writes its messages on its own transaction's
  connection, so a message exists if and only if the change that caused it was
  committed; unique keys make doing the same thing twice queue nothing;
- the **delivery** (delivery.py): the `Sender` takes each due message through named
  stages, due → claim → dedup → send → record (or retry), so a crash, a lost answer
  or an outage of Slack ends with each message in Slack once.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from .delivery import Sender
from .queue import Queue, drop_file_data

__all__ = ["Queue", "Sender", "drop_file_data", "enqueue_post", "pending_keys", "recent"]


# For callers outside the notifier (the scoreboard's page of recent posts, tests).
def enqueue_post(conn: Connection, key: str, channel: str, message: dict, **options) -> bool:
    return Queue(conn).post(key, channel, message, **options)


def recent(conn: Connection, limit: int = 20) -> list[dict]:
    return Queue(conn).recent(limit)


def pending_keys(conn: Connection) -> list[str]:
    return Queue(conn).pending()
