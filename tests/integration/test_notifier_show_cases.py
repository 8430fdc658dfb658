"""The "Show cases" button answers with the right cases: pothole cases go through real Kafka into a
scorer (which keeps them in PostgreSQL), its score changes through Kafka into the notifier, whose
follow-up alert reaches the fake Slack server with the button; a signed click on it gets an
ephemeral answer on the click's response_url listing the cases ScoreReader.case_lines lists."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from services.notifier.app import create_app
from services.notifier.blocks import SHOW_CASES
from shared.core.cases import LATE, OVERDUE
from shared.store.score_reader import ScoreReader
from shared.store.tables.notifier import Alert
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier import Changes
from tests.helpers.notifier_harness import Harness, notifier_settings, sign
from tests.helpers.scorer import run_scorer_until_idle
from tests.helpers.waiting import wait_until

BOSTON = ZoneInfo("America/New_York")
AS_OF = date(2026, 7, 23)  # a Thursday; the week is 17–23 July
POTHOLE = "pothole-on-time"  # public-works: channel C0PWD; no public attributes in the shipped catalog


@dataclass
class Database:
    """What the notifier's harness takes: the scorer's database, whose kept cases the notifier reads."""

    url: str
    engine: object


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def case(case_id: str, opened: datetime, due: datetime, closed: datetime | None, **attributes: str) -> dict:
    event = {"event_id": f"{case_id}-v1", "type": "case", "metric": POTHOLE, "case_id": case_id,
             "opened_at": opened.isoformat(), "due_at": due.isoformat(),
             "closed_at": closed.isoformat() if closed else None}
    if attributes:
        event["attributes"] = attributes
    return event


def pothole_cases() -> list[dict]:
    events = []
    week = datetime(2026, 7, 17, 9, 0, tzinfo=BOSTON)
    for i in range(12):  # closed late in the week, L01 first, L12 last (22 July 10:00)
        closed = week + timedelta(hours=11 * i)
        due = closed - timedelta(hours=i + 1)
        events.append(case(f"L{i + 1:02d}", due - timedelta(days=1), due, closed,
                           neighborhood="Dorchester", reporter="Jane Roe"))
    for i in range(3):  # closed on time in the week
        events.append(case(f"T{i + 1}", week, week + timedelta(days=4), week + timedelta(days=3, hours=i)))
    # Closed late before the week: not behind this week's score.
    events.append(case("X1", week - timedelta(days=5), week - timedelta(days=4), week - timedelta(days=3)))
    for i in range(13):  # open past their due time at the end of 23 July; O01 opened first (1 July)
        opened = datetime(2026, 7, 1 + i, 10, 0, tzinfo=BOSTON)
        events.append(case(f"O{i + 1:02d}", opened, opened + timedelta(days=1), None))
    # Open, and not due until the 24th: not overdue.
    events.append(case("N1", datetime(2026, 7, 23, 15, 0, tzinfo=BOSTON), datetime(2026, 7, 24, 15, 0, tzinfo=BOSTON),
                       None))
    return events


def click(alert_id: str, response_url: str, user: str = "U0PWD1") -> bytes:
    payload = {"type": "block_actions", "team": {"id": "T0CITY", "domain": "city"}, "user": {"id": user},
               "trigger_id": "12.34", "response_url": response_url, "channel": {"id": "C0PWD"},
               "actions": [{"action_id": SHOW_CASES, "value": alert_id, "type": "button"}]}
    return urlencode({"payload": json.dumps(payload)}).encode()


def listed(text: str) -> list[str]:
    return [line.split("`")[1] for line in text.splitlines() if line.startswith("• ")]


def test_the_show_cases_button_answers_the_clicker_with_the_cases_behind_the_alert(engine, stream, slack, tmp_path):
    stream.send(pothole_cases())
    harness = Harness(Database(engine.url.render_as_string(hide_password=False), engine),
                      notifier_settings(tmp_path, slack, fire_after=1), kafka_bootstrap=stream.bootstrap,
                      topic=stream.scores_topic)
    catalog = harness.runtime.catalog
    harness.start_sender().start_consumer(f"cityscore-notifier-test-{uuid.uuid4().hex[:8]}")
    try:
        run_scorer_until_idle(stream, engine, catalog, AS_OF)  # 3 of 15 on time: the week is below 1

        def posted():
            return [m for m in slack.messages("C0PWD") if "Pothole" in m["text"]]

        wait_until(lambda: posted(), 60, "the pothole follow-up to reach Slack")
    finally:
        harness.stop()
    [alert_message] = posted()
    [button] = [element for block in alert_message["blocks"] if block["type"] == "actions"
                for element in block["elements"] if element["action_id"] == SHOW_CASES]
    with engine.connect() as conn:
        [alert] = conn.execute(select(Alert.__table__).where(Alert.metric == POTHOLE)).all()
    assert (button["text"]["text"], button["value"], alert.window) == ("Show cases", str(alert.id), "week")

    settings = notifier_settings(tmp_path, slack, fire_after=1)
    client = create_app(settings, harness.notifier, harness.runtime.gateway).test_client()
    url = slack.response_url()
    body = click(button["value"], url)
    signed = sign(body, int(time.time()))
    assert client.post("/slack/actions", data=body, headers=signed).status_code == 200
    [answer] = slack.answers(url)
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    late_text, overdue_text = (answer["blocks"][i]["text"]["text"] for i in (1, 2))

    # The cases by construction: the ten closed last, newest first; the ten open longest, oldest first.
    assert listed(late_text) == [f"L{n:02d}" for n in range(12, 2, -1)]
    assert listed(overdue_text) == [f"O{n:02d}" for n in range(1, 11)]
    # And as the read side lists them from the same kept cases.
    reader = ScoreReader(engine, catalog)
    assert listed(late_text) == [line.case.case_id for line in reader.case_lines(POTHOLE, AS_OF, LATE, "week")][:10]
    assert listed(overdue_text) == [line.case.case_id
                                    for line in reader.case_lines(POTHOLE, AS_OF, OVERDUE, "week")][::-1][:10]
    assert late_text.startswith("*Late cases*: the 10 latest of 12 closed late in the week of 17–23 July")
    assert "• `L12` closed 22 July 2026, 10:00 AM, 12 hours late" in late_text
    assert overdue_text.startswith("*Overdue cases*: the 10 oldest of 13 open past their due time at the end of "
                                   "Thursday 23 July 2026")
    assert "• `O01` opened 1 July 2026, 10:00 AM, due 2 July 2026, 10:00 AM, 21 days 14 hours late" in overdue_text
    # Attributes the catalog does not mark public stay out of Slack.
    assert "Dorchester" not in json.dumps(answer) and "Jane" not in json.dumps(answer)
    assert ("<https://cityscore.example/metric/pothole-on-time?as_of=2026-07-23|Pothole On-Time % on the public "
            "board>") in json.dumps(answer, ensure_ascii=False)

    # The same signed request again is a replay: no second answer.
    assert client.post("/slack/actions", data=body, headers=signed).status_code == 200
    assert len(slack.answers(url)) == 1

    # Only the clicker sees it: nothing was posted to the channel or its thread.
    assert slack.calls_to("chat.postEphemeral") == [] and posted() == [alert_message]
    assert slack.thread("C0PWD", alert_message["ts"]) == []


def test_show_cases_answers_in_words_when_there_are_no_cases_and_posts_only_to_slack(schema, slack, tmp_path):
    settings = notifier_settings(tmp_path, slack, fire_after=1)
    harness = Harness(schema, settings)
    harness.notifier.handle_changes([Changes()("shootings", 0.7)])  # incidents: no cases behind it
    harness.drain()
    with schema.engine.connect() as conn:
        [alert] = conn.execute(select(Alert.__table__)).all()
    client = create_app(settings, harness.notifier, harness.runtime.gateway).test_client()
    stamp = int(time.time())

    def ask(alert_id: str, url: str | None, offset: int):
        body = click(alert_id, url) if url is not None else urlencode({"payload": json.dumps(
            {"type": "block_actions", "team": {"id": "T0CITY"}, "user": {"id": "U0BPD1"},
             "actions": [{"action_id": SHOW_CASES, "value": alert_id}]})}).encode()
        return client.post("/slack/actions", data=body, headers=sign(body, stamp + offset))

    answers = {}
    for offset, alert_id in enumerate((str(alert.id), "999999")):
        url = slack.response_url()
        assert ask(alert_id, url, offset).status_code == 200
        [answers[alert_id]] = slack.answers(url)
    assert answers[str(alert.id)] == {"response_type": "ephemeral", "replace_original": False, "text": (
        "Shootings (Trend) is not scored from cases (its feed is incidents): there are no cases behind its score "
        "to show.")}
    assert answers["999999"]["text"] == "That alert does not exist."

    # A response_url that is not Slack's is refused, naming the field, and nothing is posted to it.
    for offset, url in enumerate(("http://10.0.0.5/actions/T0CITY/1/x", "https://hooks.slack.com.evil.example/a")):
        refused = ask(str(alert.id), url, 10 + offset)
        assert (refused.status_code, refused.json["field"]) == (400, "response_url")
    missing = ask(str(alert.id), None, 20)
    assert (missing.status_code, missing.json["field"]) == (400, "response_url")

    # Slack takes five answers per click; a sixth is refused (used_url), which the notifier logs and survives.
    url = slack.response_url()
    assert [ask(str(alert.id), url, 30 + n).status_code for n in range(6)] == [200] * 6
    assert len(slack.answers(url, count=5)) == 5
