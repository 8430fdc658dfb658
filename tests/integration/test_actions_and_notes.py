"""Follow-up actions and notes on the record, end to end on PostgreSQL (a schema per test) with
the fake Slack server: an action recorded from an alert's modal (refusals under their fields),
reminded to its owner when due and once, closed with an outcome from the reminder; a note from
"Add a note" kept on the metric's day and shown on the public metric page only when public; and
the `cityscore action|note` commands' round trips on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select

from services.cli.commands import main
from services.notifier.actions import FollowUpActions
from services.notifier.app import create_app
from services.scorer.app import create_app as create_scorer_app
from shared.core.catalog import load_catalog
from shared.platform.settings import get_settings
from shared.store.engine import make_engine, migrate
from shared.store.record import Record, actions_for, notes_for
from shared.store.tables.notifier import Alert, OutboxMessage
from shared.store.tables.record import FollowUpAction, MetricNote
from tests.fakes.clock import ManualClock
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier import Changes
from tests.helpers.notifier_harness import Harness, notifier_settings, sign

BOSTON = ZoneInfo("America/New_York")
CATALOG = load_catalog()
TEAM = "T0CITY"


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def post(client, payload: dict, offset: int = 0):
    body = urlencode({"payload": json.dumps({"team": {"id": TEAM}, **payload})}).encode()
    return client.post("/slack/actions", data=body, headers=sign(body, int(time.time()) + offset))


def click(client, action_id: str, value: int, user: str = "U0PWD2", offset: int = 0):
    return post(client, {"type": "block_actions", "user": {"id": user}, "trigger_id": "12.34",
                         "actions": [{"action_id": action_id, "value": str(value)}]}, offset)


def submit(client, callback_id: str, metadata: int, values: dict, user: str = "U0PWD2", offset: int = 0):
    return post(client, {"type": "view_submission", "user": {"id": user}, "view": {
        "id": "V0FORM", "callback_id": callback_id, "private_metadata": str(metadata), "state": {"values": values}}},
        offset)


def action_values(text: str, owner: str, due: str) -> dict:
    return {"text": {"text": {"type": "plain_text_input", "value": text}},
            "owner": {"user": {"type": "users_select", "selected_user": owner}},
            "due": {"date": {"type": "datepicker", "selected_date": due}}}


def fired(schema, slack, tmp_path, clock):
    settings = notifier_settings(tmp_path, slack, fire_after=1)
    harness = Harness(schema, settings, clock)
    harness.notifier.handle_changes([Changes()("pothole-on-time", 0.7)])  # as of 23 July 2026
    harness.drain()
    alert_id = harness.notifier.alerts()[0].id
    return harness, create_app(settings, harness.notifier, harness.runtime.gateway).test_client(), alert_id


def actions(schema):
    with schema.engine.connect() as conn:
        return conn.execute(select(FollowUpAction.__table__).order_by(FollowUpAction.id)).all()


def test_an_action_from_an_alert_is_reminded_once_when_due_and_closed_with_its_outcome(schema, slack, tmp_path):
    clock = ManualClock(datetime(2026, 7, 24, 10, 0, tzinfo=BOSTON))
    harness, client, alert_id = fired(schema, slack, tmp_path, clock)
    alert_post = slack.messages("C0PWD")[0]
    buttons = [e for b in alert_post["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert {"text": "Record an action", "value": str(alert_id)} in [
        {"text": e["text"]["text"], "value": e.get("value")} for e in buttons]

    # The button opens the form: the owner is whoever clicked, due a week on.
    assert click(client, "cityscore_record_action", alert_id).status_code == 200
    (form,) = slack.state.views
    assert (form["callback_id"], form["private_metadata"]) == ("cityscore_action_modal", str(alert_id))
    fields = {b["block_id"]: b["element"] for b in form["blocks"] if b["type"] == "input"}
    assert (fields["owner"]["initial_user"], fields["due"]["initial_date"]) == ("U0PWD2", "2026-07-31")

    # A due day in the past and no words: refused under those fields, the form stays open, nothing kept.
    refused = submit(client, "cityscore_action_modal", alert_id, action_values("  ", "U0PWD1", "2026-07-23"))
    assert refused.status_code == 200
    assert refused.json == {"response_action": "errors", "errors": {
        "text": "the action is empty", "due": "2026-07-23 is in the past (today is 2026-07-24)"}}
    assert actions(schema) == []

    # Recorded (sent twice: one action), told in the alert's thread.
    for offset in (1, 2):
        done = submit(client, "cityscore_action_modal", alert_id,
                      action_values("Second crew on Tuesdays", "U0PWD1", "2026-07-27"), offset=offset)
        assert (done.status_code, done.get_data()) == (200, b"")
    (row,) = actions(schema)
    assert (row.metric, row.department, row.alert_id, row.owner, row.due, row.status, row.created_by) == (
        "pothole-on-time", "public-works", alert_id, "U0PWD1", date(2026, 7, 27), "open", "U0PWD2")
    harness.drain()
    thread = [m["text"] for m in slack.thread("C0PWD", alert_post["ts"])]
    assert sum("recorded an action for <@U0PWD1>, due Monday 27 July 2026: Second crew" in t for t in thread) == 1

    # Reminded by the scheduled job on the due day from the morning, once however often it runs.
    scheduler = harness.start_scheduler()
    try:
        for moment in (datetime(2026, 7, 26, 12, 0), datetime(2026, 7, 27, 8, 0)):
            clock.set(moment.replace(tzinfo=BOSTON))
            assert "action-reminders" in scheduler.run_due()
            harness.drain()
            assert slack.messages("U0PWD1") == []  # the day before; the due day before 8:30
        for minutes in (35, 45, 55):
            clock.set(datetime(2026, 7, 27, 8, minutes, tzinfo=BOSTON))
            assert "action-reminders" in scheduler.run_due()
            harness.drain()
        assert FollowUpActions(harness.notifier).send_reminders() == 0
        harness.drain()
    finally:
        harness.stop()
    (reminder,) = slack.messages("U0PWD1")  # in private: the owner is a Slack user
    assert "Reminder" in reminder["text"] and "due today" in reminder["text"]
    assert "Second crew on Tuesdays" in reminder["text"]
    (close_button,) = [e for b in reminder["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert (close_button["action_id"], close_button["value"]) == ("cityscore_close_action", str(row.id))

    # Closed from the reminder: an empty outcome is refused under its field; then closed, once.
    assert click(client, "cityscore_close_action", row.id, user="U0PWD1", offset=3).status_code == 200
    assert slack.state.views[-1]["callback_id"] == "cityscore_close_action_modal"
    outcome = {"outcome": {"text": {"type": "plain_text_input", "value": " "}}}
    assert submit(client, "cityscore_close_action_modal", row.id, outcome, user="U0PWD1", offset=4).json == {
        "response_action": "errors", "errors": {"outcome": "the outcome is empty"}}
    outcome["outcome"]["text"]["value"] = "Crew added; backlog down to 12"
    assert submit(client, "cityscore_close_action_modal", row.id, outcome, user="U0PWD1", offset=5).get_data() == b""
    (closed,) = actions(schema)
    assert (closed.status, closed.outcome, closed.closed_by) == ("closed", "Crew added; backlog down to 12", "U0PWD1")
    again = submit(client, "cityscore_close_action_modal", row.id, outcome, user="U0PWD2", offset=6)
    assert again.json == {"response_action": "errors", "errors": {
        "outcome": f"action {row.id} was closed already by U0PWD1"}}
    harness.drain()
    (reminder,) = slack.messages("U0PWD1")  # the reminder now says it is closed, and has no button
    assert "closed the action" in reminder["text"] and "edited" in reminder
    assert not [b for b in reminder["blocks"] if b["type"] == "actions"]
    thread = [m["text"] for m in slack.thread("C0PWD", alert_post["ts"])]
    assert sum("Crew added; backlog down to 12" in t for t in thread) == 1
    assert actions_for(schema.engine, "public-works", open_only=True, catalog=CATALOG) == []
    assert [a.outcome for a in actions_for(schema.engine, "public-works", catalog=CATALOG)] == [
        "Crew added; backlog down to 12"]


def test_a_note_from_slack_is_kept_on_the_metric_and_shown_on_its_page_only_when_public(schema, slack, tmp_path):
    clock = ManualClock(datetime(2026, 7, 24, 10, 0, tzinfo=BOSTON))
    harness, client, alert_id = fired(schema, slack, tmp_path, clock)
    assert click(client, "cityscore_add_note", alert_id).status_code == 200
    form = slack.state.views[-1]
    fields = {b["block_id"]: b["element"] for b in form["blocks"] if b["type"] == "input"}
    assert fields["day"]["initial_date"] == "2026-07-23"  # the alert's as-of day
    assert fields["public"]["type"] == "checkboxes"

    def note(text: str, public: bool, day: str | None, offset: int):
        values = {"note": {"text": {"type": "plain_text_input", "value": text}},
                  "public": {"public": {"type": "checkboxes",
                                        "selected_options": [{"value": "public"}] if public else []}}}
        if day:
            values["day"] = {"date": {"type": "datepicker", "selected_date": day}}
        assert submit(client, "cityscore_note_modal", alert_id, values, offset=offset).status_code == 200

    note("Snowstorm closed the depots", True, "2026-07-20", 1)
    note("Two crews out sick", False, None, 2)  # no day given: the alert's as-of day
    harness.drain()
    thread = [m["text"] for m in slack.thread("C0PWD", slack.messages("C0PWD")[0]["ts"])]
    assert any("Snowstorm closed the depots" in t for t in thread) and any("Two crews out sick" in t for t in thread)
    with schema.engine.connect() as conn:
        kept = conn.execute(select(MetricNote.__table__).order_by(MetricNote.id)).all()
    assert [(n.metric, n.day, n.text, n.public, n.author, n.alert_id) for n in kept] == [
        ("pothole-on-time", date(2026, 7, 20), "Snowstorm closed the depots", True, "U0PWD2", alert_id),
        ("pothole-on-time", date(2026, 7, 23), "Two crews out sick", False, "U0PWD2", alert_id)]
    assert [n.text for n in notes_for(schema.engine, ["pothole-on-time"], date(2026, 7, 1), date(2026, 7, 31),
                                      public_only=True)] == ["Snowstorm closed the depots"]

    page = create_scorer_app(engine=schema.engine, catalog=harness.notifier.catalog,
                             clock=ManualClock(datetime(2026, 7, 24, 10, 0, tzinfo=BOSTON))).test_client()
    html = page.get("/metric/pothole-on-time?as_of=2026-07-23").get_data(as_text=True)
    assert "Snowstorm closed the depots" in html and "Monday 20 July 2026" in html
    assert "Two crews out sick" not in html  # internal
    assert html.count('class="note-mark"') == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/record.db"
        engine = make_engine(url)
        migrate(engine)
        yield url, engine
        engine.dispose()
    else:
        schema = request.getfixturevalue("schema")
        yield schema.url, schema.engine


def test_the_commands_record_list_and_close_actions_and_keep_notes(database, monkeypatch, request):
    url, engine = database
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()  # read once per process: this test's database, not an earlier one's
    request.addfinalizer(get_settings.cache_clear)
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert (result.exit_code == 0) is ok, result.output
        return result.output

    due = (datetime.now(BOSTON).date() + timedelta(days=3)).isoformat()
    assert "action 1 recorded: pothole-on-time, owner Jane Roe, due" in run(
        "action", "add", "--metric", "pothole-on-time", "--owner", "Jane Roe", "--due", due,
        "--text", "Second crew on Tuesdays", "--by", "analyst")
    with engine.begin() as conn:  # an alert of the notifier's, which the second action answers
        alert_id = conn.execute(insert(Alert.__table__).values(
            metric="shootings", window="week", seq=1, status="firing", channel="C0BPD",
            fired_at=datetime.now(BOSTON), reminders=0, replies=0).returning(Alert.id)).scalar()
    run("action", "add", "--metric", "shootings", "--owner-slack", "U0BPD1", "--due", due, "--text", "Review patrols",
        "--alert", str(alert_id), "--by", "U0BPD2")
    assert f"there is no alert {alert_id + 1}" in run("action", "add", "--metric", "shootings", "--owner", "x",
                                                      "--due", due, "--text", "t", "--alert", str(alert_id + 1),
                                                      ok=False)
    assert f"alert {alert_id} is on shootings, not pothole-on-time" in run(
        "action", "add", "--metric", "pothole-on-time", "--owner", "x", "--due", due, "--text", "t",
        "--alert", str(alert_id), ok=False)
    refused = run("action", "add", "--metric", "pothole-on-time", "--owner", " ", "--due", "2020-01-01",
                  "--text", "late", ok=False)
    assert "--owner: the owner is empty" in refused and "--due: 2020-01-01 is in the past" in refused
    assert "'no-such' is not a metric" in run("action", "add", "--metric", "no-such", "--owner", "x", "--due", due,
                                              "--text", "t", ok=False)

    listed = run("action", "list", "--department", "public-works", "--open")
    assert "Second crew on Tuesdays" in listed and "Review patrols" not in listed
    assert "action 1 closed: Crew added" in run("action", "close", "1", "--outcome", "Crew added", "--by", "lead")
    assert "action 1 was closed already by lead" in run("action", "close", "1", "--outcome", "again", ok=False)
    assert "no open actions" in run("action", "list", "--department", "public-works", "--open")
    assert "→ Crew added (lead," in run("action", "list")
    [closed, other] = actions_for(engine)
    assert (closed.status, closed.closed_by, other.alert_id, other.department) == ("closed", "lead", alert_id,
                                                                                   "police")
    run("action", "close", str(other.id), "--outcome", "Patrols moved", "--by", "U0BPD1")
    with engine.connect() as conn:  # the alert's thread is told both, through the notifier's outbox
        queued = conn.execute(select(OutboxMessage.key, OutboxMessage.parent_key, OutboxMessage.payload)
                              .order_by(OutboxMessage.id)).all()
    assert [(m.key, m.parent_key) for m in queued] == [
        (f"alert:shootings:week:1:action:{other.id}", "alert:shootings:week:1:post"),
        (f"alert:shootings:week:1:action:{other.id}:closed", "alert:shootings:week:1:post")]
    assert "<@U0BPD2> recorded an action for <@U0BPD1>" in queued[0].payload
    assert "<@U0BPD1> closed the action" in queued[1].payload and "Patrols moved" in queued[1].payload

    run("note", "add", "--metric", "pothole-on-time", "--date", "2026-07-20", "--text", "Snowstorm", "--public")
    run("note", "add", "--metric", "pothole-on-time", "--date", "2026-07-21", "--text", "Depot audit")
    assert "was kept already" in run("note", "add", "--metric", "pothole-on-time", "--date", "2026-07-21",
                                     "--text", "Depot audit")
    notes = run("note", "list", "--metric", "pothole-on-time").splitlines()
    assert [line.split()[:2] for line in notes] == [["2026-07-20", "public"], ["2026-07-21", "internal"]]
    assert [n.text for n in notes_for(engine, ["pothole-on-time"], public_only=True)] == ["Snowstorm"]


def test_public_notes_on_the_metric_page_in_chromium(schema, tmp_path):
    """The page as a browser shows it: the public note listed and its day marked on the chart (its
    title the note), the internal one nowhere, nothing refused by the page's Content-Security-Policy."""
    from shared.core.catalog import load_catalog
    from shared.core.record import new_note
    from shared.store.record import Record
    from tests.helpers.browser import chromium, console_problems, open_page, publish, screenshot
    from tests.helpers.notifier import seed_scores
    from tests.helpers.serving import served

    catalog = load_catalog()
    seed_scores(schema.engine, catalog, date(2026, 7, 23))
    written = datetime(2026, 7, 22, 15, 0, tzinfo=BOSTON)
    with schema.engine.begin() as conn:
        record = Record(conn)
        record.add_note(new_note(metric="pothole-on-time", day=date(2026, 7, 6), text="Snowstorm closed the depots",
                                 author="U0PWD1", created_at=written, public=True))
        record.add_note(new_note(metric="pothole-on-time", day=date(2026, 7, 10), text="Two crews out sick",
                                 author="U0PWD1", created_at=written))
    app = create_scorer_app(engine=schema.engine, catalog=catalog,
                            clock=ManualClock(datetime(2026, 7, 24, 10, 0, tzinfo=BOSTON)))
    with served(app, "scorer-http") as url, chromium() as browser:
        open_page(browser, f"{url}/metric/pothole-on-time", 1100)
        marks = browser.execute_script(
            "return [...document.querySelectorAll('svg .note-mark title')].map(t => t.textContent)")
        listed = browser.execute_script(
            "return [...document.querySelectorAll('.metric-notes li')].map(li => li.innerText)")
        assert marks == ["Monday 6 July 2026: Snowstorm closed the depots"]
        assert listed == ["Monday 6 July 2026: Snowstorm closed the depots"]
        assert "Two crews out sick" not in browser.page_source
        assert console_problems(browser) == []
        publish(screenshot(browser, tmp_path / "metric-notes.png"), "metric-notes")


def test_who_may_record_or_close_and_where_a_named_owner_is_reminded(schema, slack, tmp_path):
    """A department with responders: anyone else gets 403 and nothing opens or changes. An owner
    given by name (the command's) is reminded in the department's channel, not in private."""
    from shared.core.record import new_action
    from shared.store.record import Record

    routing = tmp_path / "responders.json"
    routing.write_text(json.dumps({"default_channel": "C0DEFAULT", "departments": {
        "public-works": {"channel": "C0PWD", "owners": ["U0PWD1"], "responders": ["U0PWDR"]}}}))
    clock = ManualClock(datetime(2026, 7, 24, 10, 0, tzinfo=BOSTON))
    settings = notifier_settings(tmp_path, slack, fire_after=1, routing_file=str(routing))
    harness = Harness(schema, settings, clock)
    harness.notifier.handle_changes([Changes()("pothole-on-time", 0.7)])
    harness.drain()
    alert_id = harness.notifier.alerts()[0].id
    client = create_app(settings, harness.notifier, harness.runtime.gateway).test_client()

    refused = click(client, "cityscore_record_action", alert_id, user="U0OTHER")
    assert (refused.status_code, refused.json["field"]) == (403, "user.id")
    sent = submit(client, "cityscore_action_modal", alert_id, action_values("Mine", "U0OTHER", "2026-07-30"),
                  user="U0OTHER", offset=1)
    assert sent.status_code == 403 and actions(schema) == []
    assert slack.state.views == []
    assert click(client, "cityscore_record_action", alert_id, user="U0PWDR", offset=2).status_code == 200

    with schema.engine.begin() as conn:
        action, _ = Record(conn).add_action(new_action(
            metric="pothole-on-time", department="public-works", owner="Jane Roe", text="Audit the depot",
            due=date(2026, 7, 24), today=date(2026, 7, 24), created_by="analyst", created_at=clock.now()))
    desk = FollowUpActions(harness.notifier)
    assert [desk.send_reminders(), desk.send_reminders()] == [1, 0]
    harness.drain()
    (reminder,) = [m for m in slack.messages("C0PWD") if m["text"].startswith("Reminder")]
    assert "Reminder for Jane Roe" in json.dumps(reminder["blocks"]) and "Audit the depot" in reminder["text"]

    closing = click(client, "cityscore_close_action", action.id, user="U0OTHER", offset=3)
    assert closing.status_code == 403
    outcome = {"outcome": {"text": {"type": "plain_text_input", "value": "Done"}}}
    assert submit(client, "cityscore_close_action_modal", action.id, outcome, user="U0OTHER",
                  offset=4).status_code == 403
    assert [a.status for a in actions_for(schema.engine, "public-works", catalog=CATALOG)] == ["open"]
    assert submit(client, "cityscore_close_action_modal", action.id, outcome, user="U0PWD1",
                  offset=5).get_data() == b""
    assert [a.status for a in actions_for(schema.engine, "public-works", catalog=CATALOG)] == ["closed"]


@pytest.fixture
def command(database, monkeypatch, request):
    """`cityscore …` on the test's database: run(*args, ok=True) -> its output."""
    url, engine = database
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert (result.exit_code == 0) is ok, result.output
        return result.output

    return run, engine


def test_action_list_says_the_city_day_an_action_was_closed(command):
    """Closed at 9:30 PM EDT on 29 June (01:30 UTC on 30 June): closed on 29 June, the city's day."""
    from shared.core.record import Action, close
    from shared.store.record import Record

    run, engine = command
    evening = datetime(2026, 6, 29, 21, 30, tzinfo=BOSTON)
    with engine.begin() as conn:
        record = Record(conn)
        action, _ = record.add_action(Action(None, "pothole-on-time", "public-works", "Jane Roe", "Count the crews",
                                             date(2026, 6, 29), "analyst", evening))
        record.save_closed(close(action, "Counted", "lead", evening))
    assert "→ Counted (lead, 2026-06-29)" in run("action", "list")


def test_an_internal_note_sent_again_public_from_slack_becomes_public(schema, slack, tmp_path):
    """The form sent again with the same words and "public" ticked publishes the note kept internal:
    one note, now public, and nothing new in the thread; sent again internal, it stays public."""
    clock = ManualClock(datetime(2026, 7, 24, 10, 0, tzinfo=BOSTON))
    harness, client, alert_id = fired(schema, slack, tmp_path, clock)

    def note(public: bool, offset: int):
        values = {"note": {"text": {"type": "plain_text_input", "value": "Two crews out sick"}},
                  "public": {"public": {"type": "checkboxes",
                                        "selected_options": [{"value": "public"}] if public else []}}}
        assert submit(client, "cityscore_note_modal", alert_id, values, offset=offset).status_code == 200

    note(False, 1)
    assert notes_for(schema.engine, ["pothole-on-time"], public_only=True) == []
    note(True, 2)
    note(False, 3)
    harness.drain()
    with schema.engine.connect() as conn:
        kept = conn.execute(select(MetricNote.__table__)).all()
    assert [(n.text, n.public) for n in kept] == [("Two crews out sick", True)]
    thread = [m["text"] for m in slack.thread("C0PWD", slack.messages("C0PWD")[0]["ts"])]
    assert sum("Two crews out sick" in t for t in thread) == 1


def test_an_internal_note_added_again_public_by_the_command_becomes_public(command):
    run, engine = command
    args = ("note", "add", "--metric", "pothole-on-time", "--date", "2026-07-21", "--text", "Depot audit",
            "--by", "analyst")
    assert "(internal)" in run(*args)
    assert "note 1 was kept already: pothole-on-time on 2026-07-21 (public)" in run(*args, "--public")
    assert "(public)" in run(*args)  # added again internal: still public, nothing is unpublished by it
    assert [(n.id, n.public) for n in notes_for(engine, ["pothole-on-time"])] == [(1, True)]


def test_a_departments_actions_are_its_metrics_in_the_catalog_now(command):
    """An action recorded for Boston 311 on a metric the catalog now gives Public Works is Public Works'
    (a metric moved: its open actions move with it, as its scores); one on a metric gone from the
    catalog stays with the department it was recorded for."""
    from shared.core.record import Action

    run, engine = command
    at = datetime(2026, 6, 29, 9, 0, tzinfo=BOSTON)
    with engine.begin() as conn:
        record = Record(conn)
        record.add_action(Action(None, "pothole-on-time", "boston-311", "Jane Roe", "Moved with its metric",
                                 date(2026, 7, 1), "analyst", at))
        record.add_action(Action(None, "retired-metric", "boston-311", "Jane Roe", "Of a metric gone",
                                 date(2026, 7, 2), "analyst", at))
    assert [a.text for a in actions_for(engine, "public-works", catalog=CATALOG)] == ["Moved with its metric"]
    assert [a.text for a in actions_for(engine, "boston-311", catalog=CATALOG)] == ["Of a metric gone"]
    listed = run("action", "list", "--department", "public-works")
    assert "Moved with its metric" in listed and "Of a metric gone" not in listed


def test_the_command_takes_a_slack_user_only_when_said_so(command):
    """`--owner WATER` is a name, however it looks (reminded in the department's channel); a Slack user
    is written `<@U…>` or given by --owner-slack; both or neither are refused, naming the options."""
    run, engine = command
    due = (datetime.now(BOSTON).date() + timedelta(days=3)).isoformat()

    def add(*owner: str, text: str, ok: bool = True) -> str:
        return run("action", "add", "--metric", "pothole-on-time", *owner, "--due", due, "--text", text, ok=ok)

    assert "owner WATER," in add("--owner", "WATER", text="Flush the hydrants")
    assert "owner <@U0PWD1>," in add("--owner", "<@U0PWD1>", text="Call the contractor")
    assert "owner <@U0PWD2>," in add("--owner-slack", "U0PWD2", text="Count the crews")
    assert "--owner-slack: 'water crew' is not a Slack user id" in add("--owner-slack", "water crew", text="x",
                                                                      ok=False)
    assert "--owner / --owner-slack: give one of them" in add("--owner", "x", "--owner-slack", "U0A", text="x",
                                                              ok=False)
    assert "--owner / --owner-slack: give one of them" in add(text="x", ok=False)
    with engine.connect() as conn:
        kept = conn.execute(select(FollowUpAction.owner, FollowUpAction.owner_is_user).order_by(FollowUpAction.id))
        assert kept.all() == [("WATER", False), ("U0PWD1", True), ("U0PWD2", True)]


def test_an_owner_slack_does_not_know_is_reminded_in_the_departments_channel(schema, slack, tmp_path):
    """An action named WATER from the command is reminded in the department's channel, never as a DM;
    a Slack user id Slack refuses (user_not_found) has the reminder go to the department's channel,
    once, and closing the action edits that reminder."""
    from shared.core.record import Action, is_slack_user
    from shared.store.record import Record

    clock = ManualClock(datetime(2026, 7, 24, 10, 0, tzinfo=BOSTON))
    harness = Harness(schema, notifier_settings(tmp_path, slack), clock)
    at = clock.now()
    with schema.engine.begin() as conn:
        record = Record(conn)
        water, _ = record.add_action(Action(None, "pothole-on-time", "public-works", "WATER", "Flush the hydrants",
                                            date(2026, 7, 24), "analyst", at, owner_is_user=False))
        gone, _ = record.add_action(Action(None, "pothole-on-time", "public-works", "U0GONE", "Count the crews",
                                           date(2026, 7, 24), "U0PWD1", at, owner_is_user=True))
    assert is_slack_user("WATER") and not water.owner_is_slack_user  # the pattern would have guessed wrong
    slack.state.refused["U0GONE"] = "user_not_found"
    desk = FollowUpActions(harness.notifier)
    assert desk.send_reminders() == 2
    harness.drain()
    with schema.engine.connect() as conn:
        states = dict(conn.execute(select(OutboxMessage.key, OutboxMessage.status)).all())
    assert states == {f"action:{water.id}:reminder": "sent", f"action:{gone.id}:reminder": "failed"}
    assert "WATER" not in slack.state.channels
    assert [desk.send_reminders(), desk.send_reminders()] == [1, 0]  # the refused DM to the channel, once
    harness.drain()
    reminders = [m for m in slack.messages("C0PWD") if m["text"].startswith("Reminder")]
    assert len(reminders) == 2 and "Reminder for U0GONE" in json.dumps(reminders[1]["blocks"])
    assert "Reminder for WATER" in json.dumps(reminders[0]["blocks"])

    desk.close(gone.id, "U0PWD1", "Counted")
    harness.drain()
    with schema.engine.connect() as conn:
        states = dict(conn.execute(select(OutboxMessage.key, OutboxMessage.status)).all())
    assert states[f"action:{gone.id}:reminder:channel:update"] == "sent"
    harness.stop()
