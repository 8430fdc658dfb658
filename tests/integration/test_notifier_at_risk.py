"""Early warnings (docs/architecture.md, "At-risk alerts") end to end: a department's cases go
through real Kafka into a scorer (real PostgreSQL), its score changes through Kafka into the
notifier, whose scheduled look at the backlogs evaluates them again; the fake Slack server receives
the at-risk alert, Show cases answers with the week's cases, a person acknowledges it through the
signed Slack endpoint, and the department closing its overdue cases resolves it in place (or, when
they close late, hands over to the follow-up). Turned off, none fires and an open one closes."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from services.notifier.app import create_app
from services.notifier.blocks import ACKNOWLEDGE, SHOW_CASES
from services.notifier.follow_ups import FollowUps
from services.notifier.lifecycle import Reading, fire
from shared.core.contract import parse_event
from shared.store.engine import make_engine, migrate
from shared.store.score_writer import ScoreWriter
from shared.store.tables.notifier import Alert, AlertTrack
from tests.fakes.clock import ManualClock
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier_harness import Harness, notifier_settings, sign
from tests.helpers.scorer import run_scorer_until_idle
from tests.helpers.waiting import wait_until

POTHOLES = "pothole-on-time"  # a ratio of cases, target 80%, due 1 business day after opening; channel C0PWD
AS_OF = date(2026, 7, 22)  # yesterday, the last complete day: the day scores are as of
NOW = datetime(2026, 7, 23, 12, 0, tzinfo=timezone.utc)  # 8:00 in Boston on Thursday 23 July


@dataclass
class Database:
    url: str
    engine: object


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def on_time(first: int, count: int, day: str = "2026-07-20") -> list[dict]:
    """Pothole cases opened at 9:00 and closed at 15:00 the same day: on time."""
    return [{"event_id": f"on-time-{n}", "type": "case", "metric": POTHOLES, "case_id": f"BOS-{n}",
             "opened_at": f"{day}T09:00:00-04:00", "closed_at": f"{day}T15:00:00-04:00"}
            for n in range(first, first + count)]


def overdue(closed_at: str | None = None) -> list[dict]:
    """Five cases opened on 13 and 14 July, due a business day later; still open unless `closed_at`.
    Each carries a neighbourhood (a breakdown, not public) that no Slack message may show."""
    events = []
    for n in range(5):
        opened = f"2026-07-{13 + n // 3}T{8 + n:02d}:00:00-04:00"
        event = {"event_id": f"late-{n}" + ("-closed" if closed_at else ""), "type": "case", "metric": POTHOLES,
                 "case_id": f"OLD-{n}", "opened_at": opened, "attributes": {"neighborhood": "Dorchester"}}
        if closed_at:
            event["closed_at"] = closed_at
        events.append(event)
    return events


def at_risk_alerts(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(Alert.__table__).where(Alert.window == "at-risk:week").order_by(Alert.id)).all()


def follow_ups(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(select(Alert.__table__).where(Alert.window == "week").order_by(Alert.id)).all()


def evaluations(engine) -> tuple[int, int]:
    """The at-risk track's streaks: (evaluations at risk, evaluations not) in a row."""
    with engine.connect() as conn:
        row = conn.execute(select(AlertTrack.below, AlertTrack.at_or_above).where(
            AlertTrack.metric == POTHOLES, AlertTrack.window == "at-risk:week")).one_or_none()
    return (0, 0) if row is None else tuple(row)


def tracks(engine):
    """The metric's tracks, to tell a score change that never came from one not evaluated."""
    with engine.connect() as conn:
        return conn.execute(select(AlertTrack.__table__).where(AlertTrack.metric == POTHOLES)).all()


def click(client, action_id: str, alert_id: str, response_url: str | None = None):
    """A button of the alert clicked by U0PWD1, sent as Slack sends it (signed)."""
    payload = {"type": "block_actions", "user": {"id": "U0PWD1"}, "trigger_id": "1.2", "channel": {"id": "C0PWD"},
               "actions": [{"action_id": action_id, "value": alert_id, "type": "button"}]}
    if response_url:
        payload["response_url"] = response_url
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return client.post("/slack/actions", data=body, headers=sign(body, int(time.time())))


def section_texts(message: dict) -> list[str]:
    return [b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "text" in b]


@pytest.fixture
def notifier(engine, stream, slack, tmp_path):
    """A notifier reading the scorer's score changes from the stream's scores topic, its clock at NOW."""
    harness = Harness(Database(engine.url.render_as_string(hide_password=False), engine),
                      notifier_settings(tmp_path, slack), ManualClock(NOW), kafka_bootstrap=stream.bootstrap,
                      topic=stream.scores_topic)
    harness.start_consumer(f"notifier-at-risk-{uuid.uuid4().hex[:8]}")
    yield harness
    harness.stop()


def score(stream, engine, notifier, events: list[dict], as_of: date, streak: tuple[int, int]) -> None:
    """The department's `events` through Kafka into a scorer scoring as of `as_of`; its score change
    through Kafka into the notifier: one evaluation, awaited as the at-risk track's `streak`."""
    stream.send(events)
    run_scorer_until_idle(stream, engine, notifier.runtime.catalog, as_of)
    wait_until(lambda: evaluations(engine) == streak, 60, f"the score change to be evaluated ({streak})",
               problems=lambda: f"the at-risk track's streaks: {evaluations(engine)} {tracks(engine)}")


def test_an_at_risk_alert_fires_with_the_oldest_overdue_cases_is_acknowledged_and_resolves_in_place(
        engine, stream, slack, notifier, tmp_path):
    scheduler = notifier.start_scheduler()
    # Ten cases closed on time this week: 1.25. Five more open and overdue since the 14th and 15th:
    # closed late now they would make it 10 of 15, 0.83. The score change is one evaluation, the
    # scheduled look at the backlogs a second: it fires.
    score(stream, engine, notifier, on_time(0, 10) + overdue(), AS_OF, (1, 0))
    assert at_risk_alerts(engine) == []  # damped: one evaluation is not enough
    assert "check-at-risk" in scheduler.run_due()  # on start
    notifier.drain()

    [posted] = slack.messages("C0PWD")  # no follow-up: the score is above 1
    assert posted["text"].startswith(
        "At risk: Pothole On-Time % week score 1.25 now, 0.83 if its 5 overdue cases close late <@")
    assert posted["text"].endswith("<@U0POTHOLE>")  # the metric's owner, named by the routing
    lead, cases = section_texts(posted)  # and the figures, in fields
    assert "is at risk for the week of 16–22 July" in lead
    listed = cases.splitlines()
    assert listed[0] == "*Oldest overdue cases* (open past their due time at the end of 22 July, oldest first)"
    assert [line.split()[1] for line in listed[1:]] == ["`OLD-0`", "`OLD-1`", "`OLD-2`", "`OLD-3`", "`OLD-4`"]
    # Due a business day later: the working day starts at 8:30.
    assert listed[1] == "• `OLD-0` opened 13 July 2026, 8:00 AM, due 14 July 2026, 8:30 AM, 8 days 15 hours late"
    assert "Dorchester" not in json.dumps(posted)
    [alert] = at_risk_alerts(engine)
    assert (alert.status, alert.channel, round(alert.score, 4), alert.denominator) == ("firing", "C0PWD", 0.8333, 15)

    # Show cases answers whoever clicks with the cases of the window it watches, the week's.
    client = create_app(notifier.notifier.settings, notifier.notifier, notifier.runtime.gateway).test_client()
    [show] = [element for block in posted["blocks"] if block["type"] == "actions" for element in block["elements"]
              if element["action_id"] == SHOW_CASES]
    url = slack.response_url()
    assert click(client, SHOW_CASES, show["value"], url).status_code == 200
    [answer] = slack.answers(url)
    assert "the cases behind its week score" in answer["blocks"][0]["text"]["text"]
    assert answer["blocks"][2]["text"]["text"].startswith(
        "*Overdue cases*: all 5 open past their due time at the end of Wednesday 22 July 2026")

    # A person acknowledges it through Slack's signed request.
    assert click(client, ACKNOWLEDGE, str(alert.id)).status_code == 200
    notifier.drain()
    [edited] = slack.messages("C0PWD")
    assert edited["ts"] == posted["ts"]
    assert "*At risk, acknowledged* — acknowledged by <@U0PWD1>" in json.dumps(edited["blocks"], ensure_ascii=False)
    assert [a.status for a in at_risk_alerts(engine)] == ["acknowledged"]

    # The department catches up on the 23rd: the five overdue cases closed (late) and fifteen new
    # ones on time. Scored as of the 23rd the next morning, 25 of 30 (1.04) with nothing overdue:
    # the score change and the next look resolve it in place.
    notifier.runtime.clock.advance(timedelta(days=1))
    score(stream, engine, notifier, overdue("2026-07-23T10:30:00-04:00") + on_time(10, 15, "2026-07-23"),
          AS_OF + timedelta(days=1), (0, 1))
    assert "check-at-risk" in scheduler.run_due()
    notifier.drain()
    [resolved] = slack.messages("C0PWD")
    assert resolved["ts"] == posted["ts"]
    assert resolved["text"] == "No longer at risk: Pothole On-Time % week score 1.04, 1.04 projected"
    assert not [b for b in resolved["blocks"] if b["type"] == "actions"]
    assert [m["text"] for m in slack.thread("C0PWD", posted["ts"])] == [
        "👀 <@U0PWD1> acknowledged this; reminders stop.",
        "📈 Projected back at 🟢 1.04 ▲; it resolves if it holds.",
        "✅ No longer at risk: Pothole On-Time % would score 🟢 1.04 ▲ for the week of 17–23 July with its overdue "
        "cases closed late now.",
    ]
    assert [a.status for a in at_risk_alerts(engine)] == ["resolved"] and follow_ups(engine) == []

    # Resolved stays resolved: later looks change nothing.
    notifier.runtime.clock.advance(timedelta(minutes=15))
    assert notifier.notifier.check_at_risk() == 0
    notifier.drain()
    assert len(slack.messages("C0PWD")) == 1 and len(slack.thread("C0PWD", posted["ts"])) == 3


def test_overdue_cases_closed_late_hand_the_at_risk_alert_over_to_the_follow_up(engine, stream, slack, notifier):
    score(stream, engine, notifier, on_time(0, 10) + overdue(), AS_OF, (1, 0))
    assert notifier.notifier.check_at_risk() == 1
    notifier.drain()
    # Closed late on the 23rd, the five overdue cases bring the week scored as of that day to 10 of
    # 15: below 1. The score change and the next look hand over.
    notifier.runtime.clock.advance(timedelta(days=1))
    score(stream, engine, notifier, overdue("2026-07-23T10:30:00-04:00"), AS_OF + timedelta(days=1), (0, 1))
    assert notifier.notifier.check_at_risk() == 1
    notifier.drain()
    [warning] = slack.messages("C0PWD")
    assert warning["text"] == ("No longer at risk: Pothole On-Time % fell below 1 for the week of 17–23 July; its "
                               "follow-up takes over.")
    assert slack.thread("C0PWD", warning["ts"])[-1]["text"].endswith("its follow-up takes over.")
    # The follow-up of the same metric and window has its own alert: its second evaluation fires it.
    notifier.runtime.clock.advance(timedelta(seconds=notifier.notifier.settings.evaluate_every_s))
    assert notifier.notifier.evaluate_steady() == 1
    notifier.drain()
    assert [a.status for a in follow_ups(engine)] == ["firing"]
    assert [m["text"].split(" week score")[0] for m in slack.messages("C0PWD")] == [
        "No longer at risk: Pothole On-Time % fell below 1 for the week of 17–23 July; its follow-up takes over.",
        "Pothole On-Time %"]


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


def test_turned_off_no_early_warning_fires_and_an_open_one_closes_saying_why(database, slack, tmp_path):
    on = Harness(database, notifier_settings(tmp_path, slack, fire_after=1), ManualClock(NOW))
    with database.engine.begin() as conn:  # the cases as the scorer's fold keeps them
        ScoreWriter(database.engine, on.runtime.catalog).fold(conn, [parse_event(e) for e in on_time(0, 10) + overdue()])
    assert on.notifier.check_at_risk() == 1
    on.drain()
    [posted] = slack.messages("C0PWD")
    assert posted["text"].startswith("At risk: Pothole On-Time %")

    off = Harness(database, notifier_settings(tmp_path, slack, fire_after=1, at_risk=False), ManualClock(NOW))
    assert off.notifier.check_at_risk() == 1
    assert off.notifier.check_at_risk() == 0
    off.drain()
    [alert] = at_risk_alerts(database.engine)
    assert (alert.status, alert.resolved_reason) == ("resolved", "early warnings are turned off (NOTIFIER_AT_RISK)")
    [edited] = slack.messages("C0PWD")
    assert edited["ts"] == posted["ts"] and edited["text"] == (
        "At-risk alert closed: early warnings are turned off (NOTIFIER_AT_RISK), so its week backlog is no longer "
        "watched.")


def test_a_follow_up_and_an_at_risk_alert_of_one_window_are_open_side_by_side(database):
    reading = Reading(0.83, 10, 15, AS_OF)
    with database.engine.begin() as conn:
        alerts = FollowUps(conn)
        follow_up = alerts.add(fire(POTHOLES, "week", 1, "C0PWD", reading, NOW, None))
        warning = alerts.add(fire(POTHOLES, "at-risk:week", 1, "C0PWD", reading, NOW, None))
        assert alerts.open_alert(POTHOLES, "week") == follow_up
        assert alerts.open_alert(POTHOLES, "at-risk:week") == warning
        assert alerts.open_at_risk() == [warning]
        assert alerts.reading_of(POTHOLES, "at-risk:week") == Reading(None)  # no evaluation yet
