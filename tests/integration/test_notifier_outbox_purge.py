"""The outbox does not keep every chart forever, and still posts each message once (PostgreSQL, fake Slack)."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from shared.store.tables.notifier import OutboxMessage
from shared.store.engine import utcnow
from tests.fakes.clock import ManualClock
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier_harness import Harness, notifier_settings
from tests.helpers.notifier import seed_scores

BOSTON = ZoneInfo("America/New_York")
T = OutboxMessage.__table__


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def rows(engine) -> dict[str, object]:
    with engine.connect() as conn:
        return {row.key: row for row in conn.execute(select(T))}


def age(engine, key_prefix: str, days: float) -> None:
    """Make the board `key_prefix` (and its chart) `days` old: queued and, if sent, sent then."""
    when = utcnow() - timedelta(days=days)
    with engine.begin() as conn:
        conn.execute(update(T).where(T.c.key.startswith(key_prefix)).values(created_at=when))
        conn.execute(update(T).where(T.c.key.startswith(key_prefix), T.c.sent_at.is_not(None)).values(sent_at=when))


def test_charts_sent_before_the_retention_are_dropped_hourly_and_no_board_is_posted_twice(schema, slack, tmp_path):
    clock = ManualClock(datetime(2026, 7, 28, 7, 0, tzinfo=BOSTON))  # before the 08:30 board
    harness = Harness(schema, notifier_settings(tmp_path, slack, outbox_retention_days=30), clock)
    seed_scores(schema.engine, harness.runtime.catalog, date(2026, 7, 27))
    for day in (24, 25, 26):
        harness.notifier.post_board(date(2026, 7, day))
    harness.drain()
    assert len(slack.state.uploads) == 3
    harness.notifier.post_board(date(2026, 7, 27))  # Slack never got it yet: pending, with its chart
    age(schema.engine, "board:C0MAYOR:2026-07-24", 45)
    age(schema.engine, "board:C0MAYOR:2026-07-25", 30.1)
    age(schema.engine, "board:C0MAYOR:2026-07-26", 29.9)
    age(schema.engine, "board:C0MAYOR:2026-07-27", 60)

    scheduler = harness.start_scheduler()
    try:
        assert "purge-outbox" in scheduler.run_due()  # on start
        found = rows(schema.engine)
        assert found["board:C0MAYOR:2026-07-24:chart"].file_data is None
        assert found["board:C0MAYOR:2026-07-25:chart"].file_data is None
        assert found["board:C0MAYOR:2026-07-26:chart"].file_data.startswith(b"\x89PNG")  # within 30 days
        assert found["board:C0MAYOR:2026-07-27:chart"].file_data.startswith(b"\x89PNG")  # not sent yet
        # the rows stay, sent: their keys keep an old board from being queued again
        assert {found[f"board:C0MAYOR:2026-07-{day}{part}"].status for day in (24, 25, 26)
                for part in ("", ":chart")} == {"sent"}
        assert harness.notifier.post_board(date(2026, 7, 24)) == ("board:C0MAYOR:2026-07-24", False)

        # the next pass is an hour later
        age(schema.engine, "board:C0MAYOR:2026-07-26", 31)
        clock.set(datetime(2026, 7, 28, 7, 30, tzinfo=BOSTON))
        assert "purge-outbox" not in scheduler.run_due()
        clock.set(datetime(2026, 7, 28, 8, 0, tzinfo=BOSTON))
        assert "purge-outbox" in scheduler.run_due()
        assert rows(schema.engine)["board:C0MAYOR:2026-07-26:chart"].file_data is None

        # the pending board goes out with its chart, and nothing reached Slack twice
        harness.drain()
        assert len(slack.state.uploads) == 4 and all(data.startswith(b"\x89PNG")
                                                     for data in slack.state.uploads.values())
        assert [key for key, n in Counter(slack.outbox_keys()).items() if n > 1] == []
        assert len(slack.messages("C0MAYOR")) == 4
    finally:
        harness.stop()
