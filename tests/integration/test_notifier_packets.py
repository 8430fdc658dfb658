"""The monthly review packets with the fake Slack server: on the first working day of the month (the
catalog's holidays decide) each department's packet of the month before is uploaded to its channel as
a PDF, once, whatever the job's runs, the catch-up and restarts."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pypdfium2
import pytest
from sqlalchemy import select

from services.notifier.packets import MonthlyPackets, packet_day
from shared.core.business_time import BusinessCalendar
from shared.core.catalog import load_catalog
from shared.store.tables.notifier import OutboxMessage
from tests.fakes.clock import ManualClock
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier import seed_scores
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

    # The next day is not a packet day.
    clock.set(datetime(2027, 1, 5, 8, 40, tzinfo=BOSTON))
    assert MonthlyPackets(harness.notifier).due(clock.now()) is None
    harness.stop()


def test_packets_are_on_by_default_and_off_when_turned_off(schema, slack, tmp_path):
    assert notifier_settings(tmp_path, slack).packets  # on unless a city turns it off
    clock = ManualClock(datetime(2027, 1, 4, 8, 45, tzinfo=BOSTON))
    harness = Harness(schema, notifier_settings(tmp_path, slack, packets=False), clock)
    harness.start_scheduler().run_due()
    assert packet_rows(schema.engine) == []
    harness.stop()
