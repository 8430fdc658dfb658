"""Data alerts for stale feeds: when one fires, changes, resolves (lifecycle.feed_transition),
and what it says (blocks.data_alert_message). docs/scoring.md §4c."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from pydantic import ValidationError

from services.notifier.blocks import data_alert_message
from services.notifier.lifecycle import FEED, Reading, Transition, feed_transition, fire, resolve
from services.notifier.settings import NotifierSettings
from shared.core.staleness import FeedStatus
from tests.helpers.stale_feeds import CATALOG

NOW = datetime(2026, 2, 10, 15, 0, tzinfo=timezone.utc)
FEB_3 = date(2026, 2, 3)


def open_alert(last_data: date | None = FEB_3):
    return fire("calls", FEED, 1, "C0OPS", Reading(None, as_of=last_data), NOW, None)


def test_a_stale_feed_fires_once_and_a_fresh_one_resolves_it():
    assert feed_transition(True, FEB_3, None) is Transition.FIRE
    assert feed_transition(True, FEB_3, open_alert()) is Transition.NONE  # already told
    assert feed_transition(False, date(2026, 2, 10), open_alert()) is Transition.RESOLVE
    assert feed_transition(False, date(2026, 2, 10), None) is Transition.NONE


def test_a_resolved_alert_lets_the_next_quiet_fire_a_new_one():
    resolved = resolve(open_alert(), Reading(None, as_of=date(2026, 2, 10)), NOW)
    assert feed_transition(True, date(2026, 2, 10), resolved) is Transition.FIRE
    assert feed_transition(False, date(2026, 2, 12), resolved) is Transition.NONE


def test_some_data_that_leaves_the_feed_stale_edits_the_alert():
    assert feed_transition(True, date(2026, 2, 5), open_alert()) is Transition.CHANGE


def test_a_feed_that_never_sent_anything_raises_no_alert():
    # Not a feed gone quiet: one not started (a new deployment); the board says "no data yet".
    assert feed_transition(True, None, None) is Transition.NONE


def test_the_alert_says_since_when_and_how_often_data_is_expected():
    metric = CATALOG.by_id["calls"]
    message = data_alert_message(metric, FeedStatus(FEB_3, True, "daily"), date(2026, 2, 10), resolved=False,
                                 department="Operations", owners=("U1",))
    assert message["text"] == "No data for Calls Answered since 3 February; expected daily. <@U1>"
    assert "actions" not in str(message["blocks"])
    inspections = CATALOG.by_id["inspections"]
    message = data_alert_message(inspections, FeedStatus(date(2025, 12, 30), True, "every 48 hours"),
                                 date(2026, 2, 10), resolved=False, department="Operations")
    assert message["text"] == "No data for Inspections On Time since 30 December 2025; expected every 48 hours."


def test_the_resolved_alert_says_data_arrives_again():
    metric = CATALOG.by_id["calls"]
    message = data_alert_message(metric, FeedStatus(date(2026, 2, 10), False, "daily"), date(2026, 2, 10),
                                 resolved=True, department="Operations", owners=("U1",))
    assert message["text"] == "Resolved: data for Calls Answered arrives again (data up to 10 February)."


def test_no_follow_up_window_may_be_the_data_alerts_own():
    with pytest.raises(ValidationError, match="NOTIFIER_ALERT_WINDOWS[\\s\\S]*'feed' is the data alerts' own window"):
        NotifierSettings(NOTIFIER_ALERT_WINDOWS="week, feed")
    assert NotifierSettings(NOTIFIER_ALERT_WINDOWS="week,month").windows == ("week", "month")
