"""A feed that goes quiet raises one data alert to its department, resolved in place when
data flows again (docs/scoring.md §4c): the notifier's scheduled look at the feeds, the fake
Slack server, and a real database (SQLite, as on a laptop, and PostgreSQL); and the same from
the department's events through real Kafka and a scorer."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from services.notifier.app import create_app
from services.notifier.blocks import ADD_NOTE
from services.notifier.lifecycle import FEED
from services.notifier.main import build
from services.notifier.service import Answer
from shared.core.catalog import Catalog
from shared.store.engine import make_engine, migrate
from shared.store.tables.notifier import Alert
from shared.store.tables.scorer import DayTotal
from tests.fakes.clock import ManualClock
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier_harness import Harness, notifier_settings, sign
from tests.helpers.scorer import run_scorer_until_idle

BOSTON = ZoneInfo("America/New_York")
CALLS = "311-call-center"  # expect_data: daily; department boston-311, channel C0311
QUIET_SINCE = date(2026, 2, 3)


@dataclass
class Database:
    url: str
    engine: object


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/notifier.db"
        engine = make_engine(url)
        migrate(engine)
        yield Database(url, engine)
        engine.dispose()
    else:
        yield request.getfixturevalue("schema")


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def add_days(engine, first: date, last: date) -> None:
    """Day totals of the 311 calls, as the scorer keeps them, one a day from `first` to `last`."""
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    with engine.begin() as conn:
        conn.execute(DayTotal.__table__.insert(), [dict(metric=CALLS, day=day, numerator=90.0, denominator=100.0,
                                                        count=0.0, parts=1) for day in days])


def departments(slack) -> list[str]:
    """The channels of the messages posted outside the mayor's (the departments')."""
    return [m["channel"] for m in slack.all_messages() if m["channel"] != "C0MAYOR"]


def data_alerts(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(Alert.__table__).where(Alert.window == FEED).order_by(Alert.id)).all()


def test_a_quiet_feed_raises_one_data_alert_that_resolves_when_data_flows_again(database, slack, tmp_path):
    clock = ManualClock(datetime(2026, 2, 10, 10, 0, tzinfo=BOSTON))  # the board's day: 9 February
    settings = notifier_settings(tmp_path, slack)
    add_days(database.engine, date(2026, 1, 1), QUIET_SINCE)

    first = Harness(database, settings, clock)
    scheduler = first.start_scheduler()
    try:
        assert "check-feeds" in scheduler.run_due()  # on start
        first.drain()
        [posted] = slack.messages("C0311")
        assert posted["text"] == "No data for 311 Call Center Performance since 3 February; expected daily. <@U0311>"
        # No other metric of the catalog has sent anything yet: not gone quiet, no alert (the
        # mayor's channel has the daily board, which says "no data yet" beside them).
        assert departments(slack) == ["C0311"]

        clock.advance(timedelta(minutes=15))
        assert "check-feeds" in scheduler.run_due()  # the feed is as quiet: nothing new
        first.drain()
    finally:
        first.stop()

    # A restart, and a second notifier beside it: still one alert.
    second = Harness(database, settings, clock)
    scheduler = second.start_scheduler()
    try:
        clock.advance(timedelta(minutes=15))
        assert "check-feeds" in scheduler.run_due()
        assert second.notifier.check_feeds() == 0
        assert first.notifier.check_feeds() == 0
        second.drain()
        assert departments(slack) == ["C0311"] and slack.thread("C0311", posted["ts"]) == []
        [alert] = data_alerts(database.engine)
        assert (alert.metric, alert.status, alert.channel) == (CALLS, "firing", "C0311")

        # The feed flows again: the alert is resolved in place, and its thread says so.
        add_days(database.engine, date(2026, 2, 8), date(2026, 2, 9))
        clock.advance(timedelta(minutes=15))
        assert "check-feeds" in scheduler.run_due()
        second.drain()
        [edited] = slack.messages("C0311")
        assert edited["ts"] == posted["ts"]
        assert edited["text"] == "Resolved: data for 311 Call Center Performance arrives again (data up to 9 February)."
        [reply] = slack.thread("C0311", posted["ts"])
        assert "arrives again" in reply["text"]
        [alert] = data_alerts(database.engine)
        assert alert.status == "resolved"

        # Reminders never nag about a data alert, and a later look changes nothing.
        clock.advance(timedelta(hours=5))
        scheduler.run_due()
        second.drain()
        assert len(slack.messages("C0311")) == 1 and len(slack.thread("C0311", posted["ts"])) == 1
    finally:
        second.stop()


def test_two_notifiers_looking_at_once_raise_one_data_alert(schema, slack, tmp_path):
    clock = ManualClock(datetime(2026, 2, 10, 10, 0, tzinfo=BOSTON))
    settings = notifier_settings(tmp_path, slack)
    add_days(schema.engine, date(2026, 1, 1), QUIET_SINCE)
    replicas = [Harness(schema, settings, clock), Harness(schema, settings, clock)]
    start = threading.Barrier(2)
    fired: list[int] = []

    def look(harness: Harness) -> None:
        start.wait()
        fired.append(harness.notifier.check_feeds())

    threads = [threading.Thread(target=look, args=(h,)) for h in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(fired) == [0, 1]
    replicas[0].drain()
    assert len(data_alerts(schema.engine)) == 1
    assert len(slack.messages("C0311")) == 1
    assert json.dumps(slack.messages("C0311")[0]["text"]).count("No data") == 1


def tallies(first: date, last: date) -> list[dict]:
    """The 311 call centre's daily tallies (calls answered within 30 seconds, of all calls)."""
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [{"event_id": f"calls-{day}", "type": "tally", "metric": CALLS, "date": day.isoformat(),
             "numerator": 960, "denominator": 1000} for day in days]


def test_events_through_kafka_then_none_then_more_raise_and_resolve_one_data_alert(engine, stream, slack, tmp_path):
    """The department's events go through real Kafka into a scorer; the notifier sees the feed stop and resume."""
    clock = ManualClock(datetime(2026, 2, 10, 10, 0, tzinfo=BOSTON))
    notifier = Harness(Database(engine.url.render_as_string(hide_password=False), engine),
                       notifier_settings(tmp_path, slack), clock)
    catalog = notifier.runtime.catalog
    stream.send(tallies(date(2026, 1, 20), QUIET_SINCE))
    run_scorer_until_idle(stream, engine, catalog, QUIET_SINCE)

    assert notifier.notifier.check_feeds() == 1
    assert notifier.notifier.check_feeds() == 0
    notifier.drain()
    [posted] = slack.messages("C0311")
    assert posted["text"].startswith("No data for 311 Call Center Performance since 3 February; expected daily.")

    stream.send(tallies(date(2026, 2, 8), date(2026, 2, 9)))
    run_scorer_until_idle(stream, engine, catalog, date(2026, 2, 9))
    clock.advance(timedelta(minutes=15))
    assert notifier.notifier.check_feeds() == 1
    notifier.drain()
    [edited] = slack.messages("C0311")
    assert edited["ts"] == posted["ts"] and edited["text"].startswith("Resolved: data for 311 Call Center Performance")
    assert [m["text"] for m in slack.thread("C0311", posted["ts"])] == [edited["text"]]
    assert [a.status for a in data_alerts(engine)] == ["resolved"]


def test_an_open_data_alert_closes_when_its_metric_no_longer_expects_data(database, slack, tmp_path):
    clock = ManualClock(datetime(2026, 2, 10, 10, 0, tzinfo=BOSTON))
    settings = notifier_settings(tmp_path, slack)
    add_days(database.engine, date(2026, 1, 1), QUIET_SINCE)
    before = Harness(database, settings, clock)
    assert before.notifier.check_feeds() == 1
    before.drain()
    [posted] = slack.messages("C0311")

    # The city drops expect_data from the metric and restarts the notifier: nothing would ever
    # resolve the alert, so the next look closes it, saying why.
    data = before.runtime.catalog.model_dump()
    for metric in data["metrics"]:
        if metric["id"] == CALLS:
            metric["expect_data"] = None
    runtime = build(before.base, settings, clock=clock, engine=database.engine, catalog=Catalog.model_validate(data))
    assert runtime.notifier.check_feeds() == 1
    assert runtime.notifier.check_feeds() == 0
    before.drain()
    [alert] = data_alerts(database.engine)
    assert (alert.status, alert.resolved_reason) == (
        "resolved", f"{CALLS} no longer expects data (its catalog entry has no expect_data)")
    [edited] = slack.messages("C0311")
    assert edited["ts"] == posted["ts"] and edited["text"].startswith("Data alert closed: ")
    assert [m["text"] for m in slack.thread("C0311", posted["ts"])] == [edited["text"]]


def test_the_slash_command_s_board_marks_a_stale_feed_as_the_daily_board_does(database, slack, tmp_path):
    clock = ManualClock(datetime(2026, 2, 10, 10, 0, tzinfo=BOSTON))
    add_days(database.engine, date(2026, 1, 1), QUIET_SINCE)
    notifier = Harness(database, notifier_settings(tmp_path, slack), clock).notifier
    answer = json.dumps(notifier.answer_command("board"), ensure_ascii=False)
    assert "311 Call Center Performance · no data since 3 February" in answer


def test_a_data_alert_takes_no_action_so_its_message_stays_a_data_alert(database, slack, tmp_path):
    clock = ManualClock(datetime(2026, 2, 10, 10, 0, tzinfo=BOSTON))
    add_days(database.engine, date(2026, 1, 1), QUIET_SINCE)
    harness = Harness(database, notifier_settings(tmp_path, slack), clock)
    notifier = harness.notifier
    assert notifier.check_feeds() == 1
    harness.drain()
    [alert] = data_alerts(database.engine)
    queued = notifier.stats()["messages"]
    for answer in (notifier.acknowledge(alert.id, "U0311"), notifier.take_ownership(alert.id, "U0311"),
                   notifier.note_form(alert.id, "U0311"), notifier.add_note(alert.id, "U0311", "on it")):
        assert answer.answer is Answer.DATA_ALERT
        assert answer.text == "A data alert takes no action: it resolves when the feed's data arrives again."
    assert notifier.stats()["messages"] == queued
    assert data_alerts(database.engine) == [alert]
    [posted] = slack.messages("C0311")
    assert posted["text"].startswith("No data for 311 Call Center Performance since 3 February")


def test_a_note_button_sent_for_a_data_alert_answers_in_words_and_opens_no_form(schema, slack, tmp_path):
    clock = ManualClock(datetime(2026, 2, 10, 10, 0, tzinfo=BOSTON))
    add_days(schema.engine, date(2026, 1, 1), QUIET_SINCE)
    settings = notifier_settings(tmp_path, slack)
    harness = Harness(schema, settings, clock)
    assert harness.notifier.check_feeds() == 1
    [alert] = data_alerts(schema.engine)
    client = create_app(settings, harness.notifier, harness.runtime.gateway).test_client()
    payload = {"type": "block_actions", "team": {"id": "T0CITY", "domain": "city"}, "user": {"id": "U0311"},
               "trigger_id": "12.34", "actions": [{"action_id": ADD_NOTE, "value": str(alert.id)}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    answer = client.post("/slack/actions", data=body, headers=sign(body, int(time.time())))
    assert answer.status_code == 200
    assert answer.json == {"text": "A data alert takes no action: it resolves when the feed's data arrives again."}
    assert slack.state.views == []
