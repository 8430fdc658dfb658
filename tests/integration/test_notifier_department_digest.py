"""The weekly department digest with the fake Slack server: on Monday from its time, each department's
week goes to its channel once (outbox key digest:DEPARTMENT:YYYY-Www), whatever the job's runs, the
catch-up and restarts; its scores are the store's, and what is at risk names the open alert's owner
and the action due."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select

from services.notifier.blocks import limit_problems, mark
from services.notifier.department_digest import DepartmentDigests, digest_key
from shared.core.record import Action
from shared.store.record import Record
from shared.store.tables.notifier import Alert, OutboxMessage
from tests.fakes.clock import ManualClock
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier import seed_scores
from services.notifier.settings import NotifierSettings
from tests.helpers.notifier_harness import Harness, notifier_settings

BOSTON = ZoneInfo("America/New_York")
MONDAY = date(2026, 7, 6)
SUNDAY = MONDAY - timedelta(days=1)


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def digest_rows(engine):
    with engine.connect() as conn:
        return conn.execute(select(OutboxMessage.__table__).where(OutboxMessage.key.like("digest:%"))
                            .order_by(OutboxMessage.key)).all()


def texts(message: dict) -> str:
    return "\n".join(block["text"]["text"] for block in message["blocks"] if block["type"] == "section")


def test_each_departments_digest_is_posted_once_on_monday(schema, slack, tmp_path):
    clock = ManualClock(datetime(2026, 7, 6, 8, 44, tzinfo=BOSTON))  # Monday, a minute before the digests
    # No packets: June's are still due that week (from 1 July to the month's end) and would share the channel.
    settings = notifier_settings(tmp_path, slack, department_digest=True, packets=False)
    harness = Harness(schema, settings, clock)
    catalog = harness.runtime.catalog
    seed_scores(schema.engine, catalog, SUNDAY)
    with schema.engine.begin() as conn:
        conn.execute(insert(Alert.__table__).values(
            metric="pothole-on-time", window="week", seq=1, status="acknowledged", channel="C0PWD", score=0.86,
            fired_at=datetime(2026, 7, 2, 9, 0, tzinfo=BOSTON), acknowledged_by="U0PWD1", owner="U0PWD2"))
        Record(conn).add_action(Action(None, "streetlight-on-time", "public-works", "U0PWD1",
                                       "Ask the contractor for the parts' delivery dates", date(2026, 7, 8),
                                       "U0PWD2", datetime(2026, 7, 2, 9, 0, tzinfo=BOSTON)))
    scheduler = harness.start_scheduler()
    scheduler.run_due()
    assert digest_rows(schema.engine) == []

    clock.set(datetime(2026, 7, 6, 8, 45, tzinfo=BOSTON))
    assert "department-digests" in scheduler.run_due()
    departments = [d.id for d in catalog.departments if catalog.metrics_of(d.id)]
    assert [row.key for row in digest_rows(schema.engine)] == sorted(f"digest:{d}:2026-W28" for d in departments)
    harness.drain()

    posted = slack.messages("C0PWD")
    assert len(posted) == 1
    message = posted[0]
    assert limit_problems(message) == []
    assert message["blocks"][0]["text"]["text"] == "Public Works Department: week of 29 June – 5 July 2026"
    body = texts(message)
    # Each metric's week score as the store scores it as of Sunday, and the week before's.
    board = harness.notifier.store.scoreboard(SUNDAY)
    before = harness.notifier.store.scoreboard(SUNDAY - timedelta(days=7))
    for metric in catalog.metrics_of("public-works"):
        score = board.metrics[metric.id]["week"].score
        line = next(line for line in body.splitlines() if line.startswith(f"*{metric.name.title()}*"))
        assert mark(score) in line, line
        assert f"({before.metrics[metric.id]['week'].score:.2f})" in line or "unchanged" in line, line
    below = [m for m in catalog.metrics_of("public-works") if round(board.metrics[m.id]["week"].score, 2) < 1]
    assert below, "the seeded scores should put a Public Works metric below target"
    for metric in below:
        assert f"• *{metric.name.title()}* is below target this week" in body
    assert "Pothole On-Time % (follow-up, week), owned by <@U0PWD2>" in body
    assert "• Action due 8 July: Ask the contractor for the parts' delivery dates (<@U0PWD1>)" in body
    assert message["blocks"][-1]["elements"][0]["url"] == "https://cityscore.example/departments/public-works"
    # Boston 311 has no alert and no action: none said.
    assert "Alert open" not in texts(slack.messages("C0311")[0])
    # Departments the routing file does not name: the default channel, as their alerts.
    assert len(slack.messages("C0DEFAULT")) == len(departments) - 3

    # The job again, the catch-up, and a restart later that day: nothing posted twice.
    clock.set(datetime(2026, 7, 6, 10, 0, tzinfo=BOSTON))
    assert DepartmentDigests(harness.notifier).post_due() == []
    assert "catch-up" in scheduler.run_due()
    harness.stop()
    harness = Harness(schema, settings, clock)
    harness.start_scheduler().run_due()
    harness.drain()
    assert len(slack.messages("C0PWD")) == 1
    assert len(digest_rows(schema.engine)) == len(departments)
    assert {row.status for row in digest_rows(schema.engine)} == {"sent"}

    # Tuesday is still Monday's digest (due within its week) and posts nothing twice; the Monday after is
    # the next week's.
    clock.set(datetime(2026, 7, 7, 9, 0, tzinfo=BOSTON))
    assert DepartmentDigests(harness.notifier).due(clock.now()) == MONDAY
    assert DepartmentDigests(harness.notifier).post_due() == []
    assert digest_key("public-works", date(2026, 7, 13)) == "digest:public-works:2026-W29"
    harness.stop()


def test_the_digest_is_on_by_default_and_off_when_turned_off(schema, slack, tmp_path):
    assert NotifierSettings.model_fields["department_digest"].default is True  # on unless a city turns it off
    clock = ManualClock(datetime(2026, 7, 6, 9, 0, tzinfo=BOSTON))
    harness = Harness(schema, notifier_settings(tmp_path, slack, department_digest=False), clock)
    seed_scores(schema.engine, harness.runtime.catalog, SUNDAY)
    harness.start_scheduler().run_due()
    assert DepartmentDigests(harness.notifier).post_due() == []
    assert digest_rows(schema.engine) == []
    harness.stop()


def test_the_digest_day_and_time_are_settings(schema, slack, tmp_path):
    clock = ManualClock(datetime(2026, 7, 6, 9, 0, tzinfo=BOSTON))  # Monday: not this city's digest day
    settings = notifier_settings(tmp_path, slack, department_digest=True, department_digest_day="friday",
                                 department_digest_time="07:15")
    harness = Harness(schema, settings, clock)
    seed_scores(schema.engine, harness.runtime.catalog, SUNDAY)
    scheduler = harness.start_scheduler()
    scheduler.run_due()
    assert digest_rows(schema.engine) == []
    clock.set(datetime(2026, 7, 10, 7, 15, tzinfo=BOSTON))
    assert "department-digests" in scheduler.run_due()
    assert {row.key.rsplit(":", 1)[1] for row in digest_rows(schema.engine)} == {"2026-W28"}
    harness.stop()


def test_a_missed_digest_day_is_made_up_later_in_its_week(schema, slack, tmp_path):
    """A notifier down on Monday posts the week's digest when it is back, with Monday's figures."""
    clock = ManualClock(datetime(2026, 7, 8, 11, 0, tzinfo=BOSTON))  # Wednesday
    settings = notifier_settings(tmp_path, slack, department_digest=True, packets=False)
    harness = Harness(schema, settings, clock)
    catalog = harness.runtime.catalog
    seed_scores(schema.engine, catalog, SUNDAY)
    digests = DepartmentDigests(harness.notifier)
    assert digests.due(datetime(2026, 7, 6, 8, 44, tzinfo=BOSTON)) is None  # Monday, before its time
    assert digests.due(datetime(2026, 7, 12, 23, 59, tzinfo=BOSTON)) == MONDAY  # Sunday: still that week's
    assert digests.due(clock.now()) == MONDAY
    departments = [d.id for d in catalog.departments if catalog.metrics_of(d.id)]
    assert sorted(digests.post_due()) == sorted(f"digest:{d}:2026-W28" for d in departments)
    harness.drain()
    assert slack.messages("C0PWD")[0]["blocks"][0]["text"]["text"] == \
        "Public Works Department: week of 29 June – 5 July 2026"
    # A Friday digest day: Monday to Thursday of its week are before it, not due.
    friday = DepartmentDigests(Harness(schema, notifier_settings(tmp_path, slack, department_digest=True,
                                                                department_digest_day="friday"), clock).notifier)
    assert friday.due(clock.now()) is None
    assert friday.due(datetime(2026, 7, 11, 9, 0, tzinfo=BOSTON)) == date(2026, 7, 10)
    harness.stop()
