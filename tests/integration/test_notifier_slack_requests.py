"""Requests from Slack that a careless or hostile sender could make: replays, repeats,
mentions and links in notes, another workspace, people who may not act, non-numeric
timestamps and huge bodies. PostgreSQL (a schema per test), the fake Slack server,
and for the body limit a real HTTP server (the dev server and gunicorn).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import select

from services.notifier.app import create_app
from services.notifier.service import Answer
from shared.store.tables.notifier import Alert, AlertNote
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier_harness import ROUTING, SECRET, Harness, notifier_settings, sign
from tests.helpers.waiting import wait_until
from tests.helpers.notifier import Changes
from tests.helpers.serving import served

ROOT = Path(__file__).resolve().parents[2]
TEAM = "T0CITY"


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def fired(schema, slack, tmp_path, **overrides):
    """A harness, an app on it, and one pothole alert posted to C0PWD."""
    settings = notifier_settings(tmp_path, slack, fire_after=1, **overrides)
    harness = Harness(schema, settings)
    harness.notifier.handle_changes([Changes()("pothole-on-time", 0.7)])
    harness.drain()
    (alert,) = alerts(schema)
    return harness, settings, alert.id


def app_of(harness, settings):
    return create_app(settings, harness.notifier, harness.runtime.gateway).test_client()


def alerts(schema):
    with schema.engine.connect() as conn:
        return conn.execute(select(Alert.__table__).order_by(Alert.id)).all()


def notes(schema):
    with schema.engine.connect() as conn:
        return conn.execute(select(AlertNote.__table__).order_by(AlertNote.id)).all()


def thread(slack):
    return [m["text"] for m in slack.thread("C0PWD", slack.messages("C0PWD")[0]["ts"])]


def click(alert_id: int, action: str, user: str = "U0PWD2", team: str = TEAM) -> bytes:
    payload = {"type": "block_actions", "team": {"id": team, "domain": "city"}, "user": {"id": user},
               "trigger_id": "12.34", "actions": [{"action_id": action, "value": str(alert_id)}]}
    return urlencode({"payload": json.dumps(payload)}).encode()


def note(alert_id: int, text: str, user: str = "U0PWD2", team: str = TEAM, view_id: str = "V0NOTE1") -> bytes:
    payload = {"type": "view_submission", "team": {"id": team, "domain": "city"}, "user": {"id": user}, "view": {
        "id": view_id, "callback_id": "cityscore_note_modal", "private_metadata": str(alert_id),
        "state": {"values": {"note": {"text": {"type": "plain_text_input", "value": text}}}}}}
    return urlencode({"payload": json.dumps(payload)}).encode()


# -- 6a: replays and repeats ----------------------------------------------------------------------


def test_a_replayed_signed_request_adds_the_note_once_across_replicas(schema, slack, tmp_path):
    harness, settings, alert_id = fired(schema, slack, tmp_path)
    # two notifier replicas on one database: the replay goes to the other one
    first, second = app_of(harness, settings), app_of(harness, settings)
    body = note(alert_id, "Crews doubled on Tuesdays.")
    headers = sign(body, int(time.time()))
    assert first.post("/slack/actions", data=body, headers=headers).status_code == 200
    assert second.post("/slack/actions", data=body, headers=headers).status_code == 200
    assert first.post("/slack/actions", data=body, headers=headers).status_code == 200
    harness.drain()
    assert [n.text for n in notes(schema)] == ["Crews doubled on Tuesdays."]
    assert sum("Crews doubled" in t for t in thread(slack)) == 1


def test_each_action_twice_counts_once(schema, slack, tmp_path):
    """Not replays (each request freshly signed): a double click, a note sent again."""
    harness, settings, alert_id = fired(schema, slack, tmp_path)
    client = app_of(harness, settings)
    now = int(time.time())
    for offset in (0, 1):
        for body in (click(alert_id, "cityscore_take_ownership"), click(alert_id, "cityscore_acknowledge"),
                     note(alert_id, "Crews doubled on Tuesdays.", view_id=f"V0NOTE{offset}")):
            assert client.post("/slack/actions", data=body, headers=sign(body, now + offset)).status_code == 200
    harness.drain()
    replies = thread(slack)
    assert sum("took ownership" in t for t in replies) == 1
    assert sum("acknowledged this" in t for t in replies) == 1
    assert sum("Crews doubled" in t for t in replies) == 1
    assert len(notes(schema)) == 1
    (alert,) = alerts(schema)
    assert (alert.status, alert.acknowledged_by, alert.owner) == ("acknowledged", "U0PWD2", "U0PWD2")


# -- what each action came to, and the answer Slack gets ---------------------------------------------


def test_each_action_answers_what_it_came_to(schema, slack, tmp_path):
    """The use cases answer with an Answer, not words to compare; the words are what Slack shows."""
    harness, settings, alert_id = fired(schema, slack, tmp_path)
    notifier = harness.notifier
    first, again = notifier.acknowledge(alert_id, "U0PWD2"), notifier.acknowledge(alert_id, "U0PWD1")
    assert (first.answer, first.text) == (Answer.ACKNOWLEDGED, "Acknowledged: reminders stop.")
    assert (again.answer, again.text) == (Answer.ALREADY_ACKNOWLEDGED, "Already acknowledged by <@U0PWD2>.")
    assert [notifier.take_ownership(alert_id, "U0PWD1").answer for _ in range(2)] == [Answer.OWNED,
                                                                                      Answer.ALREADY_OWNED]
    assert [notifier.add_note(alert_id, "U0PWD1", text).answer for text in ("On it.", " On it. ", "  ")] == [
        Answer.NOTE_ADDED, Answer.NOTE_ALREADY_THERE, Answer.EMPTY_NOTE]
    assert notifier.note_form(alert_id, "U0PWD1").note_form["private_metadata"] == str(alert_id)
    for act in (notifier.acknowledge, notifier.take_ownership, notifier.note_form):
        assert act(alert_id + 1000, "U0PWD1").answer is Answer.NO_SUCH_ALERT
    assert notifier.add_note(alert_id + 1000, "U0PWD1", "lost").answer is Answer.NO_SUCH_ALERT

    change = Changes()
    change.moment += timedelta(minutes=1)  # after the change that fired it
    notifier.handle_changes([change("pothole-on-time", 1.1), change("pothole-on-time", 1.2)])
    assert notifier.alert(alert_id).status.value == "resolved"
    assert notifier.acknowledge(alert_id, "U0PWD1").answer is Answer.ALREADY_RESOLVED
    assert notifier.take_ownership(alert_id, "U0PWD2").answer is Answer.ALREADY_RESOLVED
    (alert,) = alerts(schema)
    assert (alert.acknowledged_by, alert.owner) == ("U0PWD2", "U0PWD1")


def test_an_empty_note_is_refused_under_its_field_and_a_lost_alerts_buttons_change_nothing(schema, slack, tmp_path):
    harness, settings, alert_id = fired(schema, slack, tmp_path)
    client = app_of(harness, settings)
    now = int(time.time())
    empty = note(alert_id, "   ")
    answer = client.post("/slack/actions", data=empty, headers=sign(empty, now))
    assert answer.status_code == 200
    assert answer.json == {"response_action": "errors", "errors": {"note": "The note is empty."}}
    lost = click(alert_id + 1000, "cityscore_add_note")
    answer = client.post("/slack/actions", data=lost, headers=sign(lost, now))
    assert answer.status_code == 200 and answer.json == {"text": "That alert does not exist."}
    lost = click(alert_id + 1000, "cityscore_acknowledge")
    assert client.post("/slack/actions", data=lost, headers=sign(lost, now)).status_code == 200
    harness.drain()
    assert notes(schema) == [] and slack.state.views == [] and thread(slack) == []
    assert alerts(schema)[0].status == "firing"


# -- 6b: user text is escaped -----------------------------------------------------------------------


def test_a_note_arrives_escaped_no_mention_no_link(schema, slack, tmp_path):
    harness, settings, alert_id = fired(schema, slack, tmp_path)
    client = app_of(harness, settings)
    text = "<!channel> see <https://evil.example/|the fix> & <@U0MAYOR>"
    body = note(alert_id, text)
    assert client.post("/slack/actions", data=body, headers=sign(body, int(time.time()))).status_code == 200
    harness.drain()
    (reply,) = [m for m in slack.thread("C0PWD", slack.messages("C0PWD")[0]["ts"]) if "see" in m["text"]]
    posted = reply["text"] + json.dumps(reply["blocks"])
    for raw in ("<!channel>", "<https://", "<@U0MAYOR>", "& "):
        assert raw not in posted, raw
    assert "&lt;!channel&gt; see &lt;https://evil.example/|the fix&gt; &amp; &lt;@U0MAYOR&gt;" in reply["text"]
    assert "<@U0PWD2>" in reply["text"]  # the bot's own mention of who wrote it stays a mention
    assert [n.text for n in notes(schema)] == [text]  # stored as written


def test_a_slash_command_does_not_echo_markup(schema, slack, tmp_path):
    settings = notifier_settings(tmp_path, slack)
    harness = Harness(schema, settings)
    client = app_of(harness, settings)
    body = urlencode({"command": "/cityscore", "text": "<!here>", "user_id": "U0MAYOR", "team_id": TEAM}).encode()
    answer = client.post("/slack/commands", data=body, headers=sign(body, int(time.time())))
    assert answer.status_code == 200
    assert "<!here>" not in answer.json["text"] and "&lt;!here&gt;" in answer.json["text"]


# -- 6c: the configured workspace ---------------------------------------------------------------------


def test_requests_from_another_workspace_are_refused_and_change_nothing(schema, slack, tmp_path):
    harness, settings, alert_id = fired(schema, slack, tmp_path, slack_team_id=TEAM)
    client = app_of(harness, settings)
    now = int(time.time())
    for body in (click(alert_id, "cityscore_acknowledge", team="T0OTHER"),
                 click(alert_id, "cityscore_take_ownership", team="T0OTHER"),
                 note(alert_id, "from elsewhere", team="T0OTHER")):
        answer = client.post("/slack/actions", data=body, headers=sign(body, now))
        assert answer.status_code == 403
        assert answer.json["field"] == "team.id" and "T0OTHER" in answer.json["error"]
    no_team = urlencode({"payload": json.dumps({"type": "block_actions", "user": {"id": "U0PWD2"}, "actions": [
        {"action_id": "cityscore_acknowledge", "value": str(alert_id)}]})}).encode()
    assert client.post("/slack/actions", data=no_team, headers=sign(no_team, now)).status_code == 403
    command = urlencode({"command": "/cityscore", "text": "help", "team_id": "T0OTHER"}).encode()
    refused = client.post("/slack/commands", data=command, headers=sign(command, now))
    assert refused.status_code == 403 and refused.json["field"] == "team_id"
    harness.drain()
    (alert,) = alerts(schema)
    assert (alert.status, alert.owner, alert.acknowledged_by) == ("firing", None, None)
    assert notes(schema) == [] and thread(slack) == []
    # the city's own workspace is served
    ours = click(alert_id, "cityscore_acknowledge")
    assert client.post("/slack/actions", data=ours, headers=sign(ours, now)).status_code == 200
    assert alerts(schema)[0].status == "acknowledged"


# -- 6d: who may act ------------------------------------------------------------------------------------


def test_only_the_named_responders_and_owners_may_act_when_the_routing_says_so(schema, slack, tmp_path):
    routing = json.loads(json.dumps(ROUTING))
    routing["departments"]["public-works"]["responders"] = ["U0PWDLEAD"]
    path = tmp_path / "responders.json"
    path.write_text(json.dumps(routing))
    harness, settings, alert_id = fired(schema, slack, tmp_path, routing_file=str(path))
    client = app_of(harness, settings)
    now = int(time.time())
    for body in (click(alert_id, "cityscore_acknowledge", user="U0EVIL"),
                 click(alert_id, "cityscore_take_ownership", user="U0EVIL"),
                 click(alert_id, "cityscore_add_note", user="U0EVIL"),
                 note(alert_id, "not mine to say", user="U0EVIL")):
        answer = client.post("/slack/actions", data=body, headers=sign(body, now))
        assert answer.status_code == 403, answer.get_data(as_text=True)
        assert answer.json["field"] == "user.id" and "U0EVIL" in answer.json["error"]
    harness.drain()
    (alert,) = alerts(schema)
    assert (alert.status, alert.owner, alert.acknowledged_by) == ("firing", None, None)
    assert notes(schema) == [] and slack.state.views == [] and thread(slack) == []
    # a named responder and the metric's owner may; who did it is recorded
    lead = click(alert_id, "cityscore_take_ownership", user="U0PWDLEAD")
    assert client.post("/slack/actions", data=lead, headers=sign(lead, now)).status_code == 200
    owner = click(alert_id, "cityscore_acknowledge", user="U0POTHOLE")
    assert client.post("/slack/actions", data=owner, headers=sign(owner, now)).status_code == 200
    (alert,) = alerts(schema)
    assert (alert.status, alert.owner, alert.acknowledged_by) == ("acknowledged", "U0PWDLEAD", "U0POTHOLE")


def test_by_default_anyone_who_can_click_may_act(schema, slack, tmp_path):
    harness, settings, alert_id = fired(schema, slack, tmp_path)
    client = app_of(harness, settings)
    body = click(alert_id, "cityscore_acknowledge", user="U0SOMEONE")
    assert client.post("/slack/actions", data=body, headers=sign(body, int(time.time()))).status_code == 200
    assert alerts(schema)[0].acknowledged_by == "U0SOMEONE"


# -- 5: timestamps and bodies ------------------------------------------------------------------------


def test_a_non_numeric_timestamp_is_refused_with_401(schema, slack, tmp_path):
    settings = notifier_settings(tmp_path, slack)
    harness = Harness(schema, settings)
    client = app_of(harness, settings)
    body = urlencode({"command": "/cityscore", "text": "help", "team_id": TEAM}).encode()
    for stamp in ("soon", "1.7e9", "", " 1", "９９"):
        headers = dict(sign(body, int(time.time())), **{"X-Slack-Request-Timestamp": stamp})
        answer = client.post("/slack/commands", data=body, headers=headers)
        assert answer.status_code == 401, stamp
        assert answer.json["field"] == "X-Slack-Request-Timestamp"


def raw_post(port: int, path: str, headers: dict[str, str], body_start: bytes) -> bytes:
    """Send headers and only the start of the body; return what the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        conn.sendall(head.encode() + b"\r\n" + body_start)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = conn.recv(65536)  # a server waiting for the rest of the body times this out
            if not chunk:
                break
            received += chunk
        return received


def huge_body_headers(length: int) -> dict[str, str]:
    return {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(length),
            "X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=" + "0" * 64}


def test_a_huge_body_gets_413_without_being_read(schema, slack, tmp_path):
    settings = notifier_settings(tmp_path, slack)
    harness = Harness(schema, settings)
    with served(create_app(settings, harness.notifier, harness.runtime.gateway), "notifier-http") as base:
        port = urlsplit(base).port
        # 1 GiB announced, 4 KiB sent: the answer must not wait for the rest
        for path in ("/slack/actions", "/slack/commands"):
            answer = raw_post(port, path, huge_body_headers(2**30), b"payload=" + b"x" * 4096)
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_gunicorn_serves_the_slack_endpoints(schema, slack, tmp_path):
    """The production server: services.notifier.wsgi:app under deploy/gunicorn.conf.py."""
    routing = tmp_path / "routing.json"
    routing.write_text(json.dumps(ROUTING))
    port = free_port()
    env = {**os.environ, "DATABASE_URL": schema.url, "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1",
           "WEB_THREADS": "2", "SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": slack.token,
           "SLACK_BASE_URL": slack.base_url, "SLACK_TEAM_ID": TEAM, "NOTIFIER_ROUTING": str(routing),
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
                               "services.notifier.wsgi:app"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()[-3000:]
                return False

        wait_until(answers, 60, "gunicorn to listen")
        import urllib.error
        import urllib.request

        def post(path: str, body: bytes, headers: dict[str, str]) -> int:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status
            except urllib.error.HTTPError as refused:
                return refused.code

        body = urlencode({"command": "/cityscore", "text": "help", "team_id": TEAM}).encode()
        assert post("/slack/commands", body, sign(body, int(time.time()))) == 200
        stale = dict(sign(body, int(time.time())), **{"X-Slack-Request-Timestamp": "yesterday"})
        assert post("/slack/commands", body, stale) == 401
        answer = raw_post(port, "/slack/actions", huge_body_headers(2**30), b"payload=" + b"x" * 4096)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as health:
            assert health.status == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
