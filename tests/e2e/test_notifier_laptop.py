"""The laptop defaults: SQLite, no Slack token (messages go to the log and the outbox), and the commands."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime
from zoneinfo import ZoneInfo

from click.testing import CliRunner

from services.notifier.cli import alerts_group, notify_group
from services.notifier.main import build
from services.notifier.settings import NotifierSettings
from shared.platform.settings import Settings
from tests.fakes.clock import ManualClock
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier_harness import ROUTING
from tests.helpers.notifier import Changes, seed_scores

BOSTON = ZoneInfo("America/New_York")


def test_without_a_token_messages_go_to_the_log_and_the_outbox_on_sqlite(tmp_path, caplog):
    clock = ManualClock(datetime(2026, 7, 23, 21, 0, tzinfo=BOSTON))
    runtime = build(Settings(DATABASE_URL=f"sqlite:///{tmp_path}/cityscore.db"),
                    NotifierSettings(slack_bot_token=None, quiet_hours="20:00-07:30"), clock=clock)
    change = Changes()
    runtime.notifier.handle_changes([change("pothole-on-time", 0.8), change("pothole-on-time", 0.7)])
    assert runtime.sender.deliver_due() == 0  # 21:00 is quiet: held for the morning
    clock.set(datetime(2026, 7, 24, 7, 31, tzinfo=BOSTON))
    with caplog.at_level(logging.INFO, logger="cityscore.notifier.slack"):
        assert runtime.sender.deliver_due() == 1
    assert any("not sent: no SLACK_BOT_TOKEN" in r.getMessage() for r in caplog.records)
    stats = runtime.notifier.stats()
    assert stats["messages"]["sent"] == 1 and stats["alerts_open"] == 1
    # a redelivered change is ignored on SQLite too
    stale = {**change("pothole-on-time", 0.5), "changed_at": "2026-07-24T08:00:00+00:00"}
    assert runtime.notifier.handle_changes([stale]) == 0


def test_notify_board_and_alerts_list_commands(tmp_path, monkeypatch):
    routing = tmp_path / "routing.json"
    routing.write_text(json.dumps(ROUTING))
    url = f"sqlite:///{tmp_path}/cityscore.db"
    with FakeSlack() as slack:
        for name, value in {"DATABASE_URL": url, "SLACK_BOT_TOKEN": slack.token, "SLACK_BASE_URL": slack.base_url,
                            "NOTIFIER_MAYOR_CHANNEL": "C0MAYOR", "NOTIFIER_ROUTING": str(routing),
                            "NOTIFIER_QUIET_HOURS": "off", "NOTIFIER_FIRE_AFTER": "1"}.items():
            monkeypatch.setenv(name, value)
        from shared.platform.settings import get_settings

        get_settings.cache_clear()
        try:
            runtime = build()
            seed_scores(runtime.engine, runtime.catalog, date(2026, 7, 26), days=100, years_of_history=0)
            runtime.notifier.handle_changes([Changes()("shootings", 0.5)])
            runner = CliRunner()
            first = runner.invoke(notify_group, ["board", "--date", "2026-07-26"])
            assert first.exit_code == 0, first.output
            assert "board:C0MAYOR:2026-07-26: queued now" in first.output
            again = runner.invoke(notify_group, ["board", "--date", "2026-07-26"])
            assert again.exit_code == 0 and "queued before" in again.output
            assert len(slack.messages("C0MAYOR")) == 1
            assert len(slack.thread("C0MAYOR", slack.messages("C0MAYOR")[0]["ts"])) == 1  # the chart
            listed = runner.invoke(alerts_group, ["list"])
            assert listed.exit_code == 0 and "shootings:week:1" in listed.output and "firing" in listed.output
            bad = runner.invoke(notify_group, ["board", "--date", "26/07/2026"])
            assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output
        finally:
            get_settings.cache_clear()
