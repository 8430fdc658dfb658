"""The notifier end to end: real Kafka, real PostgreSQL (a schema per test), the fake Slack server.

Scenarios: a metric drops below 1 (one alert), flaps around 1 (no alert), recovers
(resolved in place and in the thread); Acknowledge stops reminders; the daily board
at 08:30 and the weekly recap on Monday with a controllable clock, across restarts;
Slack answering 429, 500 and hanging: every message exactly once; signed, forged and
stale Slack requests.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from services.notifier.app import create_app
from shared.store.tables.notifier import Alert, AlertTrack, OutboxMessage
from shared.platform.kafka import ensure_topics, make_producer
from tests.fakes.clock import ManualClock
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier_harness import Harness, notifier_settings, sign
from tests.helpers.waiting import wait_until
from tests.helpers.notifier import Changes, encode, seed_scores

BOSTON = ZoneInfo("America/New_York")


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def topic(kafka_bootstrap):
    name = f"cityscore.scores.test-{uuid.uuid4().hex[:10]}"
    ensure_topics(kafka_bootstrap, {name: 3})
    return name


def publish(bootstrap: str, topic: str, changes: list[dict]) -> None:
    producer = make_producer(bootstrap, 10, "notifier-test")
    try:
        for change in changes:
            key, value = encode(change)
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=10)
    finally:
        producer.close()


def applied(engine, metric: str, change: dict, window: str = "week") -> bool:
    with engine.connect() as conn:
        seen = conn.scalar(select(AlertTrack.changed_at).where(AlertTrack.metric == metric,
                                                               AlertTrack.window == window))
    return seen is not None and seen >= datetime.fromisoformat(change["changed_at"])


def outbox_rows(engine):
    with engine.connect() as conn:
        return conn.execute(select(OutboxMessage.__table__).order_by(OutboxMessage.id)).all()


def alerts(engine):
    with engine.connect() as conn:
        return conn.execute(select(Alert.__table__).order_by(Alert.id)).all()


def top_level(slack, channel):
    return [m for m in slack.messages(channel)]


def assert_exactly_once(slack, engine) -> None:
    """Every post and reply in the outbox reached Slack once; nothing reached it twice."""
    counts = Counter(slack.outbox_keys())
    assert [key for key, n in counts.items() if n > 1] == []
    rows = outbox_rows(engine)
    posts = {row.key for row in rows if row.kind == "post"}
    assert {row.key for row in rows if row.status != "sent"} == set()
    assert set(counts) == posts


# -- alerts through Kafka ---------------------------------------------------------------------


def test_a_drop_fires_one_alert_flapping_fires_none_and_recovery_resolves_in_place(
        schema, slack, tmp_path, kafka_bootstrap, topic):
    harness = Harness(schema, notifier_settings(tmp_path, slack), kafka_bootstrap=kafka_bootstrap, topic=topic)
    harness.start_sender().start_consumer(f"cityscore-notifier-test-{uuid.uuid4().hex[:8]}")
    try:
        change = Changes()
        drop = [change("pothole-on-time", 0.95), change("pothole-on-time", 0.90)]
        flaps = [change("graffiti-on-time", score) for score in (0.99, 1.01, 0.98, 1.02, 0.99, 1.0, 0.97, 1.03)]
        ignored = [change("cityscore", 0.5), change("pothole-on-time", 0.4, window="month")]
        wobble = [change("pothole-on-time", 0.89)]
        # a message that is not a score change never stops the consumer
        producer = make_producer(kafka_bootstrap, 10, "notifier-test-garbage")
        producer.send(topic, key=b"pothole-on-time", value=b"not json")
        producer.send(topic, key=b"pothole-on-time", value=b'{"metric": "pothole-on-time"}')
        producer.flush(timeout=10)
        producer.close()
        # at-least-once delivery: the scorer may publish a change twice
        publish(kafka_bootstrap, topic, drop + drop + flaps + ignored + wobble + wobble)
        wait_until(lambda: applied(schema.engine, "pothole-on-time", wobble[0])
                   and applied(schema.engine, "graffiti-on-time", flaps[-1]), 60, "the changes to be applied")
        wait_until(lambda: all(r.status == "sent" for r in outbox_rows(schema.engine)), 60, "delivery")

        posted = top_level(slack, "C0PWD")
        assert len(posted) == 1, [m["text"] for m in posted]  # pothole only; graffiti flapped
        alert = posted[0]
        assert "Pothole" in alert["text"] and "<@U0POTHOLE>" in alert["text"]
        # The days of the week scored as of 23 July, as the catalog's window defines them.
        assert "week score 0.89 for 17–23 July" in alert["text"]
        assert "0.89" in json.dumps(alert["blocks"])  # the small move edited the message
        assert slack.thread("C0PWD", alert["ts"]) == []  # ... and told the thread nothing
        assert [(a.metric, a.window, a.status) for a in alerts(schema.engine)] == [
            ("pothole-on-time", "week", "firing")]

        recovery = [change("pothole-on-time", 1.02), change("pothole-on-time", 1.06)]
        publish(kafka_bootstrap, topic, recovery)
        wait_until(lambda: alerts(schema.engine)[0].status == "resolved", 60, "the alert to resolve")
        wait_until(lambda: all(r.status == "sent" for r in outbox_rows(schema.engine)), 60, "delivery")

        message = slack.messages("C0PWD")[0]
        assert len(slack.messages("C0PWD")) == 1  # resolved in place, not posted anew
        assert message["text"].startswith("Resolved") and "edited" in message
        assert not [b for b in message["blocks"] if b["type"] == "actions"]
        replies = [m["text"] for m in slack.thread("C0PWD", message["ts"])]
        assert any("Back at" in r for r in replies) and replies[-1].startswith("✅ Resolved")
        assert slack.calls_to("chat.update")
        assert_exactly_once(slack, schema.engine)
    finally:
        harness.stop()


def test_acknowledge_stops_the_reminders(schema, slack, tmp_path, kafka_bootstrap, topic):
    clock = ManualClock(datetime(2026, 7, 24, 10, 0, tzinfo=BOSTON))
    settings = notifier_settings(tmp_path, slack, repeat_interval_s=3600, quiet_hours="20:00-07:30")
    harness = Harness(schema, settings, clock, kafka_bootstrap=kafka_bootstrap, topic=topic)
    harness.start_sender().start_consumer(f"cityscore-notifier-test-{uuid.uuid4().hex[:8]}")
    scheduler = harness.start_scheduler()
    app = create_app(settings, harness.notifier, harness.runtime.gateway).test_client()
    try:
        change = Changes()
        publish(kafka_bootstrap, topic, [change("shootings", 0.7), change("shootings", 0.6)])
        wait_until(lambda: len(slack.messages("C0BPD")) == 1, 60, "the alert")
        ts = slack.messages("C0BPD")[0]["ts"]

        def reminders():
            return [m for m in slack.thread("C0BPD", ts) if "not acknowledged" in m["text"]]

        for hour in (1, 2):
            clock.advance(timedelta(hours=1))
            assert "reminders" in scheduler.run_due()
            wait_until(lambda: len(reminders()) == hour, 60, f"reminder {hour}")
            assert "<@U0BPD1>" in reminders()[-1]["text"]

        alert_id = alerts(schema.engine)[0].id
        payload = {"type": "block_actions", "user": {"id": "U0BPD1"}, "trigger_id": "1.2.3",
                   "actions": [{"action_id": "cityscore_acknowledge", "value": str(alert_id)}]}
        body = urlencode({"payload": json.dumps(payload)}).encode()
        answer = app.post("/slack/actions", data=body, headers=sign(body, int(time.time())))
        assert answer.status_code == 200
        wait_until(lambda: any("acknowledged this" in m["text"] for m in slack.thread("C0BPD", ts)),
                   60, "the acknowledgement in the thread")
        wait_until(lambda: "acknowledged by <@U0BPD1>" in json.dumps(slack.messages("C0BPD")[0]["blocks"]),
                   60, "the message to show the acknowledgement")
        assert "cityscore_acknowledge" not in json.dumps(slack.messages("C0BPD")[0]["blocks"])

        for _ in range(6):  # six more hours, into the quiet evening: no reminder
            clock.advance(timedelta(hours=1))
            scheduler.run_due()
        time.sleep(0.5)
        assert len(reminders()) == 2
        assert alerts(schema.engine)[0].status == "acknowledged"
        # a second click changes nothing
        answer = app.post("/slack/actions", data=body, headers=sign(body, int(time.time())))
        assert answer.status_code == 200
        time.sleep(0.3)
        assert sum("acknowledged this" in m["text"] for m in slack.thread("C0BPD", ts)) == 1
        assert_exactly_once(slack, schema.engine)
    finally:
        harness.stop()


def test_quiet_hours_hold_an_alert_for_the_morning(schema, slack, tmp_path):
    clock = ManualClock(datetime(2026, 7, 23, 22, 0, tzinfo=BOSTON))
    harness = Harness(schema, notifier_settings(tmp_path, slack, quiet_hours="20:00-07:30", fire_after=1), clock)
    change = Changes()
    harness.notifier.handle_changes([change("pothole-on-time", 0.7), change("shootings", 0.5)])
    harness.sender.deliver_due()
    assert slack.all_messages() == []
    # shootings recovers overnight: its alert is withdrawn, never sent
    harness.notifier.handle_changes([change("shootings", 1.1), change("shootings", 1.2)])
    clock.set(datetime(2026, 7, 24, 7, 30, tzinfo=BOSTON))
    harness.drain()
    assert len(slack.messages("C0PWD")) == 1 and slack.messages("C0BPD") == []
    assert {r.status for r in outbox_rows(schema.engine) if r.key.startswith("alert:shootings")} == {"cancelled"}


# -- the schedule -------------------------------------------------------------------------------


def test_daily_board_at_0830_and_weekly_recap_on_monday_once_each_across_restarts(schema, slack, tmp_path):
    clock = ManualClock(datetime(2026, 7, 27, 8, 29, tzinfo=BOSTON))  # a Monday
    settings = notifier_settings(tmp_path, slack)
    harness = Harness(schema, settings, clock)
    seed_scores(schema.engine, harness.runtime.catalog, date(2026, 7, 27))
    scheduler = harness.start_scheduler()
    assert "daily-board" not in scheduler.run_due()
    harness.drain()
    assert slack.messages("C0MAYOR") == []

    clock.set(datetime(2026, 7, 27, 8, 30, tzinfo=BOSTON))
    assert "daily-board" in scheduler.run_due()
    harness.drain()
    board = slack.messages("C0MAYOR")
    assert len(board) == 1
    blocks = board[0]["blocks"]
    assert "Sunday 26 July 2026" in blocks[0]["text"]["text"]
    table = [b for b in blocks if b["type"] == "table"][0]
    assert len(table["rows"]) == 1 + len(harness.runtime.catalog.metrics)
    assert "since yesterday" in json.dumps(blocks) and "https://cityscore.example/" in json.dumps(blocks)
    chart = slack.thread("C0MAYOR", board[0]["ts"])
    assert len(chart) == 1 and chart[0]["files"][0]["name"] == "cityscore-2026-07-26.png"
    assert next(iter(slack.state.uploads.values())).startswith(b"\x89PNG")

    clock.set(datetime(2026, 7, 27, 8, 35, tzinfo=BOSTON))
    assert "weekly-recap" in scheduler.run_due()
    harness.drain()
    recap = slack.messages("C0MAYOR")[1]
    assert "weekly recap" in recap["text"]
    assert "Exceeding target most" in json.dumps(recap["blocks"])
    assert "<@U0PWD1>" in json.dumps(recap["blocks"]) or "<@U0POTHOLE>" in json.dumps(recap["blocks"])

    # a restart the same morning repeats nothing
    harness.stop()
    harness = Harness(schema, settings, clock)
    clock.set(datetime(2026, 7, 27, 8, 40, tzinfo=BOSTON))
    scheduler = harness.start_scheduler()
    scheduler.run_due()
    assert harness.notifier.catch_up() == []
    harness.drain()
    assert len(slack.messages("C0MAYOR")) == 2

    # down over the next 08:30: the missed board is posted on start, once; no recap on a Tuesday
    harness.stop()
    clock.set(datetime(2026, 7, 28, 9, 10, tzinfo=BOSTON))
    harness = Harness(schema, settings, clock)
    scheduler = harness.start_scheduler()
    assert "daily-board" in scheduler.run_due()
    assert "daily-board" not in scheduler.run_due()
    harness.drain()
    mayor = slack.messages("C0MAYOR")
    assert len(mayor) == 3 and "Monday 27 July 2026" in mayor[2]["text"]
    assert_exactly_once(slack, schema.engine)
    harness.stop()


# -- Slack failing ------------------------------------------------------------------------------


def test_a_daily_board_without_scores_waits_for_them_and_is_posted_once(schema, slack, tmp_path):
    """At 08:30 nothing is scored yet (a first start, a backfill still arriving): no blank board;
    the catch-up job posts the real one when the scores are in, and only once."""
    clock = ManualClock(datetime(2026, 7, 28, 8, 30, tzinfo=BOSTON))  # a Tuesday: no recap
    harness = Harness(schema, notifier_settings(tmp_path, slack), clock)
    scheduler = harness.start_scheduler()
    assert "daily-board" in scheduler.run_due()
    harness.drain()
    assert slack.messages("C0MAYOR") == []

    seed_scores(schema.engine, harness.runtime.catalog, date(2026, 7, 27))
    clock.set(datetime(2026, 7, 28, 8, 36, tzinfo=BOSTON))
    assert "catch-up" in scheduler.run_due()
    harness.drain()
    board = slack.messages("C0MAYOR")
    assert len(board) == 1 and "Monday 27 July 2026" in board[0]["text"]
    clock.set(datetime(2026, 7, 28, 8, 42, tzinfo=BOSTON))
    assert "catch-up" in scheduler.run_due()
    harness.drain()
    assert len(slack.messages("C0MAYOR")) == 1
    assert_exactly_once(slack, schema.engine)
    harness.stop()


def test_slack_answering_429_500_and_hanging_still_delivers_each_message_exactly_once(schema, slack, tmp_path):
    settings = notifier_settings(tmp_path, slack, fire_after=1, slack_timeout_s=1)
    harness = Harness(schema, settings)
    seed_scores(schema.engine, harness.runtime.catalog, date(2026, 7, 26), days=100, years_of_history=0)
    change = Changes()
    metrics = ["pothole-on-time", "graffiti-on-time", "shootings", "311-call-center", "bps-attendance"]
    harness.notifier.handle_changes([change(metric, 0.8) for metric in metrics])
    harness.notifier.post_board(date(2026, 7, 26))

    slack.fail_next(3, "429", {"chat.postMessage"}, retry_after=1)  # waited out inside slack-sdk, then ours
    slack.fail_next(4, "500")  # may or may not have posted: look before posting again
    slack.fail_next(1, "hang", {"chat.postMessage"}, hang_s=2.5)  # posted, but the answer is lost
    slack.fail_next(1, "hang", {"files.completeUploadExternal"}, hang_s=2.5)
    harness.drain(timeout=120)
    # changes after the outage: edits and thread replies, with more trouble
    slack.fail_next(2, "500", {"chat.update", "chat.postMessage"})
    slack.fail_next(1, "hang", {"chat.postMessage"}, hang_s=2.5)
    harness.notifier.handle_changes([change(metric, 0.6) for metric in metrics])
    harness.drain(timeout=120)

    calls = slack.calls
    assert sum(c.fault == "429" for c in calls) == 3 and sum(c.fault == "500" for c in calls) == 6
    assert sum(c.fault == "hang" for c in calls) == 3
    assert slack.calls_to("conversations.history") or slack.calls_to("conversations.replies")
    assert_exactly_once(slack, schema.engine)
    board = slack.messages("C0MAYOR")
    assert len(board) == 1
    assert len([m for m in slack.thread("C0MAYOR", board[0]["ts"]) if m.get("files")]) == 1
    for channel, count in (("C0PWD", 2), ("C0BPD", 1), ("C0311", 1), ("C0DEFAULT", 1)):
        assert len(slack.messages(channel)) == count, channel


def test_a_channel_given_by_name_is_looked_up_by_id_after_a_lost_answer(schema, slack, tmp_path):
    settings = notifier_settings(tmp_path, slack, mayor_channel="#cityscore-mayor", slack_timeout_s=1)
    harness = Harness(schema, settings)
    seed_scores(schema.engine, harness.runtime.catalog, date(2026, 7, 26), days=100, years_of_history=0)
    harness.notifier.post_board(date(2026, 7, 26), chart=False)
    slack.fail_next(1, "hang", {"chat.postMessage"}, hang_s=2.5)
    harness.drain()
    assert len(slack.messages("#cityscore-mayor")) == 1
    assert slack.calls_to("conversations.list") and slack.calls_to("conversations.history")
    row = outbox_rows(schema.engine)[0]
    assert row.status == "sent" and row.slack_channel == slack.state.names["#cityscore-mayor"]
    assert_exactly_once(slack, schema.engine)


def test_a_short_retry_after_is_waited_out_in_slack_sdk_and_a_long_one_left_to_the_outbox(slack):
    from services.notifier.slack import DeliveryError, WebApiGateway

    gateway = WebApiGateway(slack.token, slack.base_url, timeout_s=2, rate_limit_retries=3, max_rate_limit_wait_s=5)
    slack.fail_next(1, "429", {"chat.postMessage"}, retry_after=1)
    started = time.monotonic()
    gateway.post("C1", {"text": "one"}, key="k1")
    assert 1 <= time.monotonic() - started < 4 and len(slack.calls_to("chat.postMessage")) == 2
    slack.fail_next(1, "429", {"chat.postMessage"}, retry_after=120)
    with pytest.raises(DeliveryError) as refused:
        gateway.post("C1", {"text": "two"}, key="k2")
    assert refused.value.retry_after == 120 and not refused.value.maybe_delivered
    assert slack.outbox_keys() == ["k1"]


def test_a_permanent_slack_error_fails_the_message_and_what_hangs_on_it(schema, slack, tmp_path):
    settings = notifier_settings(tmp_path, slack, fire_after=1, mayor_channel="")
    harness = Harness(schema, settings)
    harness.notifier.handle_changes([Changes()("pothole-on-time", 0.7)])
    slack.token = "xoxb-another"  # our token is now refused: invalid_auth
    harness.sender.deliver_due()
    rows = outbox_rows(schema.engine)
    assert [(r.status, r.last_error) for r in rows] == [("failed", "invalid_auth")]
    assert harness.notifier.stats()["messages"]["failed"] == 1


# -- requests from Slack ----------------------------------------------------------------------------


def test_slack_requests_are_verified_forged_and_stale_ones_refused(schema, slack, tmp_path):
    settings = notifier_settings(tmp_path, slack)
    harness = Harness(schema, settings)
    seed_scores(schema.engine, harness.runtime.catalog, harness.notifier.local_today(), days=100, years_of_history=0)
    now = int(time.time())
    # The app's clock is held at `now`: a slow first request (the scoreboard is read from the
    # database) must not move the 5-minute limit under the timestamps tested against it.
    client = create_app(settings, harness.notifier, harness.runtime.gateway, clock=ManualClock(datetime.fromtimestamp(now, timezone.utc))).test_client()
    body = urlencode({"command": "/cityscore", "text": "", "user_id": "U0MAYOR"}).encode()

    ok = client.post("/slack/commands", data=body, headers=sign(body, now))
    assert ok.status_code == 200 and ok.json["response_type"] == "ephemeral"
    assert [b for b in ok.json["blocks"] if b["type"] == "table"]

    assert client.post("/slack/commands", data=body, headers=sign(body, now, "not-the-secret")).status_code == 401
    assert client.post("/slack/commands", data=body, headers=sign(body, now - 301)).status_code == 401
    assert client.post("/slack/commands", data=body, headers=sign(body, now + 301)).status_code == 401
    assert client.post("/slack/commands", data=body).status_code == 401
    tampered = body.replace(b"U0MAYOR", b"U0EVIL")
    assert client.post("/slack/commands", data=tampered, headers=sign(body, now)).status_code == 401
    assert client.post("/slack/commands", data=body, headers=sign(body, now - 240)).status_code == 200

    one = urlencode({"command": "/cityscore", "text": "pothole", "user_id": "U0MAYOR"}).encode()
    answer = client.post("/slack/commands", data=one, headers=sign(one, now))
    assert answer.status_code == 200 and "Pothole" in answer.json["text"]

    forged_click = urlencode({"payload": json.dumps({"type": "block_actions", "user": {"id": "U0EVIL"},
                                                     "actions": [{"action_id": "cityscore_acknowledge",
                                                                  "value": "1"}]})}).encode()
    assert client.post("/slack/actions", data=forged_click,
                       headers=sign(forged_click, now, "guessed")).status_code == 401

    unsigned = create_app(notifier_settings(tmp_path, slack, slack_signing_secret=None), harness.notifier,
                          harness.runtime.gateway, clock=ManualClock(datetime.fromtimestamp(now, timezone.utc))).test_client()
    assert unsigned.post("/slack/commands", data=body, headers=sign(body, now)).status_code == 401


def test_add_a_note_opens_a_modal_and_the_note_goes_to_the_thread(schema, slack, tmp_path):
    settings = notifier_settings(tmp_path, slack, fire_after=1)
    harness = Harness(schema, settings)
    client = create_app(settings, harness.notifier, harness.runtime.gateway).test_client()
    harness.notifier.handle_changes([Changes()("pothole-on-time", 0.7)])
    harness.drain()
    alert_id = alerts(schema.engine)[0].id
    now = int(time.time())
    click = urlencode({"payload": json.dumps({"type": "block_actions", "user": {"id": "U0PWD2"},
                                              "trigger_id": "12.34", "actions": [
                                                  {"action_id": "cityscore_add_note", "value": str(alert_id)},
                                                  {"action_id": "cityscore_take_ownership",
                                                   "value": str(alert_id)}]})}).encode()
    assert client.post("/slack/actions", data=click, headers=sign(click, now)).status_code == 200
    assert slack.state.views and slack.state.views[0]["private_metadata"] == str(alert_id)
    submit = urlencode({"payload": json.dumps({"type": "view_submission", "user": {"id": "U0PWD2"}, "view": {
        "callback_id": "cityscore_note_modal", "private_metadata": str(alert_id),
        "state": {"values": {"note": {"text": {"type": "plain_text_input",
                                               "value": "Crews doubled on Tuesdays."}}}}}})}).encode()
    assert client.post("/slack/actions", data=submit, headers=sign(submit, now)).status_code == 200
    harness.drain()
    thread = [m["text"] for m in slack.thread("C0PWD", slack.messages("C0PWD")[0]["ts"])]
    assert any("took ownership" in t for t in thread) and any("Crews doubled" in t for t in thread)
    assert "owned by <@U0PWD2>" in json.dumps(slack.messages("C0PWD")[0]["blocks"])


def test_operations_endpoints(schema, slack, tmp_path):
    settings = notifier_settings(tmp_path, slack, fire_after=1)
    harness = Harness(schema, settings)
    harness.notifier.handle_changes([Changes()("pothole-on-time", 0.7)])
    client = create_app(settings, harness.notifier, harness.runtime.gateway, metrics=harness.runtime.metrics,
                        checks={"sender": lambda: True}).test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json["checks"] == {"database": True, "sender": True}
    text = client.get("/metrics").get_data(as_text=True)
    assert 'cityscore_notifier_messages{status="pending"} 1.0' in text
    assert "cityscore_notifier_alerts_open 1.0" in text
    harness.drain()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'cityscore_notifier_messages{status="sent"} 1.0' in text
    assert 'cityscore_notifier_deliveries_total{kind="post",outcome="sent"} 1.0' in text
