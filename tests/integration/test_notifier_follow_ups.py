"""The notifier's repositories on real databases: the follow-up alerts (follow_ups.py), the
outbox's queue (outbox/queue.py) and the Slack requests seen, on SQLite (a laptop) and
PostgreSQL (a schema per test), each through the statements production runs.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from services.notifier.follow_ups import FollowUps
from services.notifier.lifecycle import (
    Reading, Status, Streak, acknowledge, close, fire, remind, reply, resolve, take_ownership,
)
from services.notifier.outbox import Queue
from services.notifier.slack_requests import first_sight
from shared.store.engine import make_engine, migrate
from shared.store.tables.notifier import Alert as AlertRow
from shared.store.tables.notifier import OutboxMessage

NOW = datetime(2026, 7, 24, 12, 0, tzinfo=timezone.utc)
READING = Reading(0.8, 38.4, 48.0, date(2026, 7, 23))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path}/notifier.db")
        migrate(engine)
        yield engine
        engine.dispose()
    else:
        yield request.getfixturevalue("schema").engine


def fired(alerts: FollowUps, metric: str = "pothole-on-time", window: str = "week"):
    return alerts.add(fire(metric, window, alerts.next_seq(metric, window), "C0PWD", READING, NOW, None))


def test_a_track_is_made_empty_once_and_keeps_what_was_saved(engine):
    with engine.begin() as conn:
        alerts = FollowUps(conn)
        track = alerts.track("pothole-on-time", "week")
        assert (track.streak, track.reading, track.changed_at, track.seq) == (Streak(), Reading(None), None, None)
        alerts.save_track(replace(track, streak=Streak(2, 0), reading=READING, changed_at=NOW, seq=41,
                                  evaluated_at=NOW))
    with engine.begin() as conn:
        alerts = FollowUps(conn)
        track = alerts.track("pothole-on-time", "week")  # the second time: the saved one
        assert (track.streak, track.reading, track.changed_at, track.seq, track.evaluated_at) == (
            Streak(2, 0), READING, NOW, 41, NOW)
        assert alerts.steady(["week"], NOW) == [("pothole-on-time", "week")]
        assert alerts.steady(["week"], NOW - timedelta(seconds=1)) == []
        assert alerts.steady(["month"], NOW) == []


def test_alerts_are_numbered_per_metric_and_window_and_read_back_as_saved(engine):
    with engine.begin() as conn:
        alerts = FollowUps(conn)
        first = fired(alerts)
        assert (first.seq, first.status, first.reading, first.fired_at) == (1, Status.FIRING, READING, NOW)
        assert alerts.open_alert("pothole-on-time", "week") == first
        alerts.save(resolve(first, Reading(1.1), NOW + timedelta(hours=1)))
        assert alerts.open_alert("pothole-on-time", "week") is None
        second = fired(alerts)
        other = fired(alerts, window="month")
        assert (second.seq, other.seq) == (2, 1)
        acknowledged = acknowledge(take_ownership(reply(second), "U0PWD2"), "U0PWD1", NOW)
        alerts.save(acknowledged)
        closed = close(other, "gone", NOW)
        alerts.save(closed)
    with engine.connect() as conn:
        alerts = FollowUps(conn)
        assert alerts.get(second.id) == acknowledged and alerts.get(other.id) == closed
        assert alerts.get(10_000) is None
        assert [a.seq for a in alerts.listed()] == [1, 2, 1]
        assert [a.id for a in alerts.listed("open")] == [second.id]
        assert [a.id for a in alerts.listed("resolved")] == [first.id, other.id]
        assert alerts.count_open() == 1 and alerts.firing() == []


def test_the_reminder_job_does_not_undo_an_acknowledgement_made_meanwhile(engine):
    """The reminder job reads firing alerts without a lock; its save writes only its count."""
    with engine.begin() as conn:
        alert = fired(FollowUps(conn))
    with engine.begin() as conn:
        reminders = FollowUps(conn)
        [seen] = reminders.firing()
        with engine.begin() as click:  # a click commits while the job is deciding
            click.execute(update(AlertRow.__table__).where(AlertRow.id == alert.id).values(
                status="acknowledged", acknowledged_by="U0PWD1"))
        reminders.save(remind(seen, NOW + timedelta(hours=4)))
    with engine.connect() as conn:
        row = conn.execute(select(AlertRow.__table__).where(AlertRow.id == alert.id)).one()
    assert (row.status, row.acknowledged_by, row.reminders) == ("acknowledged", "U0PWD1", 1)


def test_open_alerts_of_metrics_outside_the_catalog(engine):
    with engine.begin() as conn:
        alerts = FollowUps(conn)
        kept, gone = fired(alerts), fired(alerts, "retired-metric")
        assert alerts.open_outside(["pothole-on-time"]) == [gone]
        alerts.save(close(gone, "retired-metric is no longer in the catalog", NOW))
        assert alerts.open_outside(["pothole-on-time"]) == []
        assert alerts.open_outside([]) == [kept]


def test_a_note_is_kept_once_per_alert_and_digest(engine):
    with engine.begin() as conn:
        alerts = FollowUps(conn)
        one, two = fired(alerts), fired(alerts, "shootings")
        assert alerts.add_note(one.id, "U0PWD2", "Crews doubled.", "d1", NOW)
        assert not alerts.add_note(one.id, "U0PWD2", "Crews doubled.", "d1", NOW)
        assert alerts.add_note(two.id, "U0PWD2", "Crews doubled.", "d1", NOW)
        assert alerts.add_note(one.id, "U0PWD2", "And Saturdays.", "d2", NOW)


def test_the_queue_keeps_each_key_once_and_an_edit_replaces_an_unsent_one(engine):
    with engine.begin() as conn:
        queue = Queue(conn)
        assert queue.post("alert:a:week:1:post", "C0PWD", {"text": "one"})
        assert not queue.post("alert:a:week:1:post", "C0PWD", {"text": "again"})
        assert queue.post("alert:a:week:1:reply:1", "C0PWD", {"text": "reply"}, parent_key="alert:a:week:1:post")
        queue.update("alert:a:week:1:update", "alert:a:week:1:post", {"text": "edited"})
        queue.update("alert:a:week:1:update", "alert:a:week:1:post", {"text": "edited again"})
        assert queue.upload("board:C0MAYOR:2026-07-26:chart", None, "C0MAYOR", "c.png", "t", b"\x89PNG", "c")
        assert not queue.upload("board:C0MAYOR:2026-07-26:chart", None, "C0MAYOR", "c.png", "t", b"", "c")
        assert queue.has("alert:a:week:1:post") and not queue.has("alert:b:week:1:post")
    with engine.connect() as conn:
        rows = {row.key: row for row in conn.execute(select(OutboxMessage.__table__))}
        assert rows["alert:a:week:1:update"].version == 2 and "edited again" in rows["alert:a:week:1:update"].payload
        assert rows["alert:a:week:1:post"].payload == '{"text":"one"}'
        queue = Queue(conn)
        assert queue.pending() == ["alert:a:week:1:post", "alert:a:week:1:reply:1", "alert:a:week:1:update",
                                   "board:C0MAYOR:2026-07-26:chart"]
        assert queue.counts() == {"pending": 4, "sent": 0, "failed": 0, "cancelled": 0}
        assert [post["text"] for post in queue.recent()] == ["reply", "one"]


def test_withdrawing_a_post_takes_what_hangs_on_it_and_a_sent_one_stays(engine):
    with engine.begin() as conn:
        queue = Queue(conn)
        for key in ("p1", "p2"):
            queue.post(key, "C0PWD", {"text": key})
            queue.post(f"{key}:reply:1", "C0PWD", {"text": "r"}, parent_key=key)
        conn.execute(update(OutboxMessage.__table__).where(OutboxMessage.key == "p2").values(status="sent"))
        assert queue.cancel_unsent("p1") and not queue.cancel_unsent("p2")
        assert queue.sent(["p1", "p2", "p3"]) == {"p2"}
        assert queue.states(["p1", "p1:reply:1", "p2:reply:1", "p3"]) == {
            "p1": "cancelled", "p1:reply:1": "cancelled", "p2:reply:1": "pending"}
        # a post that may have reached Slack (an attempt was under way) is not withdrawn
        queue.post("p3", "C0PWD", {"text": "p3"})
        conn.execute(update(OutboxMessage.__table__).where(OutboxMessage.key == "p3").values(maybe_delivered=True))
        assert not queue.cancel_unsent("p3")


def test_a_slack_request_is_acted_on_once_while_its_signature_holds(engine):
    stamp = int(NOW.timestamp())
    with engine.begin() as conn:
        assert first_sight(conn, stamp, "v0=abc", NOW)
        assert not first_sight(conn, stamp, "v0=abc", NOW + timedelta(seconds=30))
        assert first_sight(conn, stamp, "v0=abd", NOW)
    with engine.begin() as conn:  # long after: the rows went, and the signature check refuses it anyway
        assert first_sight(conn, stamp, "v0=abc", NOW + timedelta(minutes=11))
