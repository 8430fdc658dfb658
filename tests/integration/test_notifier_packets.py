"""The monthly review packets with the fake Slack server: on the first working day of the month (the
catalog's holidays decide) each department's packet of the month before is uploaded to its channel as
a PDF, once, whatever the job's runs, the catch-up and restarts."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pypdfium2
import pytest
from sqlalchemy import select, text

from services.notifier import scheduler as jobs
from services.notifier.packets import MonthlyPackets, packet_day
from shared.core.business_time import BusinessCalendar
from shared.core.catalog import load_catalog
from shared.store.tables.notifier import OutboxMessage
from tests.fakes.clock import ManualClock
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier import seed_scores
from services.notifier.settings import NotifierSettings
from tests.helpers.notifier_harness import Harness, notifier_settings

BOSTON = ZoneInfo("America/New_York")


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def test_the_packet_day_is_the_months_first_working_day_after_its_holidays():
    calendar = BusinessCalendar(load_catalog())
    assert packet_day(calendar, 2027, 1) == date(2027, 1, 4)  # Friday 1 January is New Year's Day
    assert packet_day(calendar, 2026, 8) == date(2026, 8, 3)  # Saturday 1 August: Monday
    assert packet_day(calendar, 2026, 6) == date(2026, 6, 1)
    assert packet_day(calendar, 2026, 6, workday=2) == date(2026, 6, 2)


def is_packet(message: dict) -> bool:
    return any(file["name"].endswith(".pdf") for file in message.get("files") or [])


def packet_rows(engine):
    with engine.connect() as conn:
        return conn.execute(select(OutboxMessage.__table__).where(OutboxMessage.key.like("packet:%"))
                            .order_by(OutboxMessage.key)).all()


def test_each_departments_packet_is_posted_once_on_the_first_working_day(schema, slack, tmp_path):
    clock = ManualClock(datetime(2027, 1, 1, 9, 0, tzinfo=BOSTON))  # New Year's Day: not a working day
    settings = notifier_settings(tmp_path, slack, packets=True)
    harness = Harness(schema, settings, clock)
    catalog = harness.runtime.catalog
    seed_scores(schema.engine, catalog, date(2026, 12, 31))
    scheduler = harness.start_scheduler()
    scheduler.run_due()
    assert MonthlyPackets(harness.notifier).post_due() == []
    assert packet_rows(schema.engine) == []

    clock.set(datetime(2027, 1, 4, 8, 39, tzinfo=BOSTON))  # the first working day, before the packets' time
    scheduler.run_due()  # the job's runs missed over the holiday weekend: run, and nothing is due yet
    assert packet_rows(schema.engine) == []

    clock.set(datetime(2027, 1, 4, 8, 40, tzinfo=BOSTON))
    assert "monthly-packets" in scheduler.run_due()
    departments = [d.id for d in catalog.departments if catalog.metrics_of(d.id)]
    assert [row.key for row in packet_rows(schema.engine)] == sorted(f"packet:{d}:2026-12" for d in departments)
    harness.drain()

    posted = [m for m in slack.messages("C0PWD") if is_packet(m)]
    assert len(posted) == 1
    file = posted[0]["files"][0]
    assert file["name"] == "cityscore-review-public-works-2026-12.pdf" and file["mimetype"] == "application/pdf"
    assert "Public Works Department for December 2026: 4 metrics" in posted[0]["text"]
    document = pypdfium2.PdfDocument(slack.state.uploads[file["id"]])
    first_page = " ".join(document[0].get_textpage().get_text_range().split())
    document.close()
    assert "Public Works Department: December 2026 review" in first_page
    assert all(m.name in first_page for m in catalog.metrics_of("public-works"))
    # Departments the routing file does not name: the default channel, as their alerts.
    assert len([m for m in slack.messages("C0DEFAULT") if is_packet(m)]) == len(departments) - 3

    # The job again, the catch-up, and a restart later that day: nothing posted twice.
    clock.set(datetime(2027, 1, 4, 9, 0, tzinfo=BOSTON))
    assert MonthlyPackets(harness.notifier).post_due() == []
    assert "catch-up" in scheduler.run_due()
    harness.stop()
    harness = Harness(schema, settings, clock)
    harness.start_scheduler().run_due()
    harness.drain()
    assert len([m for m in slack.messages("C0PWD") if is_packet(m)]) == 1
    assert len([m for m in slack.all_messages() if is_packet(m)]) == len(departments)
    assert {row.status for row in packet_rows(schema.engine)} == {"sent"}

    # The days after stay due until the month's end (a missed packet day is made up), and post nothing twice.
    clock.set(datetime(2027, 1, 5, 8, 40, tzinfo=BOSTON))
    assert MonthlyPackets(harness.notifier).due(clock.now()) == "2026-12"
    assert MonthlyPackets(harness.notifier).post_due() == []
    harness.stop()


def test_packets_are_on_by_default_and_off_when_turned_off(schema, slack, tmp_path):
    assert NotifierSettings.model_fields["packets"].default is True  # on unless a city turns it off
    clock = ManualClock(datetime(2027, 1, 4, 8, 45, tzinfo=BOSTON))
    harness = Harness(schema, notifier_settings(tmp_path, slack, packets=False), clock)
    harness.start_scheduler().run_due()
    assert packet_rows(schema.engine) == []
    harness.stop()


def test_packets_are_due_from_the_packet_day_until_the_months_end(schema, slack, tmp_path):
    """A notifier down on the packet day posts the packets when it is back, within the month."""
    clock = ManualClock(datetime(2027, 1, 1, 12, 0, tzinfo=BOSTON))
    harness = Harness(schema, notifier_settings(tmp_path, slack, packets=True), clock)
    packets = MonthlyPackets(harness.notifier)
    assert packets.due(datetime(2027, 1, 1, 12, 0, tzinfo=BOSTON)) is None  # a holiday, before the packet day
    assert packets.due(datetime(2027, 1, 4, 8, 39, tzinfo=BOSTON)) is None  # the packet day, before its time
    assert packets.due(datetime(2027, 1, 4, 8, 40, tzinfo=BOSTON)) == "2026-12"
    assert packets.due(datetime(2027, 1, 5, 7, 0, tzinfo=BOSTON)) == "2026-12"  # the day after, whatever the hour
    assert packets.due(datetime(2027, 1, 31, 23, 59, tzinfo=BOSTON)) == "2026-12"
    assert packets.due(datetime(2027, 2, 1, 9, 0, tzinfo=BOSTON)) == "2027-01"  # Monday 1 February: January's
    harness.stop()


def refuse_outbox_keys(engine, pattern: str) -> None:
    """A real failure in the database: the outbox refuses rows whose key is LIKE `pattern` (dropped with
    the table after the test)."""
    with engine.begin() as conn:
        conn.execute(text(f"""
            create or replace function refuse_keys() returns trigger language plpgsql as $$
            begin
              if new.key like '{pattern}' then raise exception 'refused in this test: %', new.key; end if;
              return new;
            end $$"""))
        conn.execute(text("drop trigger if exists refuse_keys on notifier_outbox"))
        conn.execute(text("create trigger refuse_keys before insert on notifier_outbox "
                          "for each row execute function refuse_keys()"))


def allow_outbox_keys(engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("drop trigger if exists refuse_keys on notifier_outbox"))


def test_a_missed_packet_day_is_made_up_and_one_departments_failure_skips_no_other(schema, slack, tmp_path):
    clock = ManualClock(datetime(2027, 1, 6, 10, 0, tzinfo=BOSTON))  # Wednesday: the notifier was down Monday
    settings = notifier_settings(tmp_path, slack, packets=True, department_digest=False)
    harness = Harness(schema, settings, clock)
    catalog = harness.runtime.catalog
    seed_scores(schema.engine, catalog, date(2026, 12, 31))
    departments = [d.id for d in catalog.departments if catalog.metrics_of(d.id)]
    refuse_outbox_keys(schema.engine, "packet:public-works:%")
    queued = MonthlyPackets(harness.notifier).post_due()
    assert sorted(queued) == sorted(f"packet:{d}:2026-12" for d in departments if d != "public-works")
    # The next run retries the one that failed, and only it.
    allow_outbox_keys(schema.engine)
    assert MonthlyPackets(harness.notifier).post_due() == ["packet:public-works:2026-12"]
    assert [row.key for row in packet_rows(schema.engine)] == sorted(f"packet:{d}:2026-12" for d in departments)
    harness.stop()


def test_a_failing_digest_does_not_stop_the_catch_ups_packets(schema, slack, tmp_path):
    clock = ManualClock(datetime(2027, 1, 4, 10, 0, tzinfo=BOSTON))  # Monday: digest day and packet day
    settings = notifier_settings(tmp_path, slack, packets=True, department_digest=True)
    harness = Harness(schema, settings, clock)
    catalog = harness.runtime.catalog
    seed_scores(schema.engine, catalog, date(2027, 1, 3))
    harness.start_scheduler()  # the catch-up job's notifier
    refuse_outbox_keys(schema.engine, "digest:%")
    jobs.catch_up()
    departments = [d.id for d in catalog.departments if catalog.metrics_of(d.id)]
    assert [row.key for row in packet_rows(schema.engine)] == sorted(f"packet:{d}:2026-12" for d in departments)
    harness.stop()
