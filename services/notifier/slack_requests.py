"""Signed requests from Slack already acted on: the database remembers them for every replica.

Slack's signature holds for five minutes either side of its timestamp (slack_sdk's
SignatureVerifier), so a request captured on the way could be sent again in that time,
to any notifier replica. Each is kept by a hash of its timestamp and signature while a
replay of it could still pass the signature check, and acted on once.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from sqlalchemy.engine import Connection

from shared.store.tables.notifier import SlackRequest

from . import dialect

SLACK_REQUESTS = SlackRequest.__table__

# Slack's signature holds this long either side of its timestamp (slack_sdk's SignatureVerifier).
SIGNATURE_WINDOW = timedelta(minutes=5)


def first_sight(conn: Connection, timestamp: int, signature: str, now: datetime) -> bool:
    """Record a verified request; False if it was recorded before (a replay).

    Rows go once their timestamp is out of the signature window: a replay of them is
    refused as stale before it gets here.
    """
    digest = hashlib.sha256(f"{timestamp}:{signature}".encode()).hexdigest()
    conn.execute(SLACK_REQUESTS.delete().where(SLACK_REQUESTS.c.requested_at < now - 2 * SIGNATURE_WINDOW))
    return dialect.insert_new(conn, SLACK_REQUESTS, ["digest"], digest=digest,
                              requested_at=datetime.fromtimestamp(timestamp, timezone.utc), received_at=now)
