"""Slack's messages of follow-up actions: pure, from hand-made actions."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from services.notifier.record_blocks import closed_message, recorded_reply, reminder_message
from shared.core.record import Action, close

BOSTON = ZoneInfo("America/New_York")
AT = datetime(2026, 6, 30, 14, 0, tzinfo=timezone.utc)
SHOUTY = Action(5, "pothole-on-time", "public-works", "U0CREW", "Ping <!channel> & <https://x.example|click>",
                date(2026, 7, 1), "U0LEAD", AT)


def test_every_fallback_text_escapes_peoples_words_as_the_blocks():
    """The `text` fallback is what Slack's notification shows and reads as mrkdwn: a metric name or
    an action's words can neither ping everyone nor post a link from it."""
    closed = close(SHOUTY, "Done <!here>", "U0CREW", AT)
    for message in (reminder_message(SHOUTY, "Potholes <!everyone>", date(2026, 7, 1), BOSTON),
                    recorded_reply(SHOUTY, "U0LEAD"), closed_message(closed, "Potholes <!everyone>")):
        assert "<!" not in message["text"] and "<https" not in message["text"], message["text"]
        assert "&lt;!channel&gt; &amp; &lt;https://x.example|click&gt;" in message["text"]


def test_the_reminder_says_the_city_day_the_action_was_recorded():
    """Recorded at 9:30 PM EDT on 29 June (01:30 UTC on 30 June): recorded on 29 June."""
    evening = Action(6, "pothole-on-time", "public-works", "U0CREW", "Count the crews", date(2026, 7, 1), "U0LEAD",
                     datetime(2026, 6, 30, 1, 30, tzinfo=timezone.utc))
    message = reminder_message(evening, "Potholes", date(2026, 7, 1), BOSTON)
    assert message["blocks"][1]["elements"][0]["text"] == "Action 6, recorded by <@U0LEAD> on 2026-06-29"
