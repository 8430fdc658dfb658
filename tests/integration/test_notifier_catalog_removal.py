"""A metric removed from the catalog while its follow-up alert is open.

Nothing can resolve that alert any more (no score of the metric is read), and every
reminder run used to stop on it (the metric's name and owners are looked up in the
catalog). The reminder job closes it instead, once, recording why, and tells the thread.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from services.notifier import outbox
from services.notifier.main import build
from shared.store.tables.notifier import Alert, OutboxMessage
from services.notifier.scheduler import NotifierScheduler
from shared.core.catalog import Catalog
from tests.fakes.clock import ManualClock
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier_harness import ROUTING, Harness, notifier_settings
from tests.helpers.notifier import Changes

BOSTON = ZoneInfo("America/New_York")
REMOVED = "pothole-on-time"


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def without(catalog: Catalog, metric_id: str) -> Catalog:
    data = catalog.model_dump()
    data["metrics"] = [m for m in data["metrics"] if m["id"] != metric_id]
    return Catalog.model_validate(data)


def deliver_all(runtime) -> None:
    for _ in range(100):
        runtime.sender.deliver_due()
        with runtime.engine.connect() as conn:
            if not outbox.pending_keys(conn):
                return
    raise AssertionError("outbox still pending")


def the_alert(engine):
    with engine.connect() as conn:
        return conn.execute(select(Alert.__table__).where(Alert.metric == REMOVED)).one()


def outbox_count(engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(OutboxMessage.id)).all())


def warned(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and getattr(r, "metric", None) == REMOVED]


def test_the_reminder_job_closes_an_alert_whose_metric_left_the_catalog(schema, slack, tmp_path, caplog):
    clock = ManualClock(datetime(2026, 7, 23, 10, 0, tzinfo=BOSTON))
    routing = tmp_path / "routing-by-department.json"  # names no metric, so it outlives the catalog edit
    routing.write_text(json.dumps({k: v for k, v in ROUTING.items() if k != "metrics"}))
    settings = notifier_settings(tmp_path, slack, fire_after=1, repeat_interval_s=3600, routing_file=str(routing))
    before = Harness(schema, settings, clock)
    before.notifier.handle_changes([Changes()(REMOVED, 0.7), Changes()("shootings", 0.6)])
    before.drain()
    [posted] = slack.messages("C0PWD")
    assert "actions" in json.dumps(posted["blocks"])  # Acknowledge / Take ownership

    # The city edits its catalog and restarts the notifier; the alert is still open.
    runtime = build(before.base, settings, clock=clock, engine=schema.engine,
                    catalog=without(before.runtime.catalog, REMOVED))
    scheduler = NotifierScheduler(runtime.notifier, runtime.engine, clock, timer=False)
    scheduler.start()
    try:
        clock.advance(timedelta(hours=2))  # a reminder is due
        with caplog.at_level(logging.WARNING, logger="cityscore.notifier"):
            assert "reminders" in scheduler.run_due()
        closed = the_alert(schema.engine)
        assert closed.status == "resolved"
        assert closed.resolved_reason == f"{REMOVED} is no longer in the catalog"
        deliver_all(runtime)
        [edited] = slack.messages("C0PWD")
        assert "no longer in the catalog" in edited["text"] and "actions" not in json.dumps(edited["blocks"])
        assert any("no longer in the catalog" in m["text"] for m in slack.thread("C0PWD", edited["ts"]))
        # the alert of a metric still in the catalog is reminded as usual
        [shootings] = slack.messages("C0BPD")
        assert any("Still below 1" in m["text"] for m in slack.thread("C0BPD", shootings["ts"]))
        assert [r.getMessage() for r in warned(caplog)] == ["alert closed: its metric is no longer in the catalog"]

        # Later runs find nothing to do for it: no error, no message, no warning.
        queued = outbox_count(schema.engine)
        caplog.clear()
        clock.advance(timedelta(minutes=5))
        with caplog.at_level(logging.WARNING, logger="cityscore.notifier"):
            assert "reminders" in scheduler.run_due()
        assert outbox_count(schema.engine) == queued
        assert warned(caplog) == []
    finally:
        scheduler.shutdown()
