"""The "Show cases" answer as Block Kit (services/notifier/case_replies.py), the button on alerts,
and which response_urls the notifier posts to: pure, no server."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from services.notifier.app import slack_response_url
from services.notifier.blocks import SHOW_CASES, AlertView, alert_message, limit_problems, show_cases_button
from services.notifier.case_replies import SHOWN, UNDER_A_MINUTE, cases_message, metric_page_url
from shared.core.wording import lateness_words
from shared.core.cases import LATE, OVERDUE, Case, CaseLine, oldest
from shared.core.catalog import load_catalog
from tests.helpers.catalogs import boston_with

CATALOG = load_catalog()
POTHOLE = CATALOG.by_id["pothole-on-time"]
AS_OF = date(2026, 7, 23)
WEEK = (date(2026, 7, 17), date(2026, 7, 23))
PAGE = "https://cityscore.example/metric/pothole-on-time?as_of=2026-07-23"
UTC = timezone.utc


def late(n: int, attributes=()) -> CaseLine:
    """Closed late: case L{n} closed n hours into 22 July (UTC), 26 hours after its due time."""
    closed = datetime(2026, 7, 22, tzinfo=UTC) + timedelta(hours=n)
    case = Case("boston-311", f"L{n}", POTHOLE.id, closed - timedelta(days=3), closed - timedelta(hours=26),
                closed, tuple(attributes))
    return CaseLine(case, LATE, 26.0)


def overdue(n: int) -> CaseLine:
    """Open past its due time: case O{n} opened n days before 20 July, due a day later."""
    opened = datetime(2026, 7, 20, 13, 0, tzinfo=UTC) - timedelta(days=n)
    case = Case("boston-311", f"O{n}", POTHOLE.id, opened, opened + timedelta(days=1), None)
    return CaseLine(case, OVERDUE, round((datetime(2026, 7, 24, 4, tzinfo=UTC) - opened).total_seconds() / 3600 - 24, 2))


def answer(lates, overdues, metric=POTHOLE, shown=SHOWN) -> dict:
    """The answer for these whole lists (as ScoreReader.case_lines lists them: newest first), given
    the pages the notifier reads of them: the latest late cases and the oldest overdue ones."""
    return cases_message(metric, "week", WEEK, AS_OF, lates[:shown], len(lates), oldest(overdues, shown),
                         len(overdues), PAGE, CATALOG.zone)


def section_text(message: dict, index: int) -> str:
    return message["blocks"][index]["text"]["text"]


def ids_in(text: str) -> list[str]:
    return [line.split("`")[1] for line in text.splitlines() if line.startswith("• ")]


def test_the_latest_late_and_the_oldest_overdue_cases_in_order_with_their_counts_and_the_link():
    # As ScoreReader.case_lines lists them: late newest closing first, overdue newest opened first.
    lates = [late(n) for n in range(14, 0, -1)]
    overdues = [overdue(n) for n in range(1, 13)]
    message = answer(lates, overdues)
    assert message["response_type"] == "ephemeral" and message["replace_original"] is False
    assert limit_problems(message) == []

    late_text = section_text(message, 1)
    assert late_text.startswith("*Late cases*: the 10 latest of 14 closed late in the week of 17–23 July, "
                                "newest first\n")
    assert ids_in(late_text) == [f"L{n}" for n in range(14, 4, -1)]  # the ten closed last
    assert "• `L14` closed 22 July 2026, 10:00 AM, 26 hours late" in late_text  # Boston's time

    overdue_text = section_text(message, 2)
    assert overdue_text.startswith("*Overdue cases*: the 10 oldest of 12 open past their due time at the end "
                                   "of Thursday 23 July 2026, oldest first\n")
    assert ids_in(overdue_text) == [f"O{n}" for n in range(12, 2, -1)]  # waiting longest first
    assert "• `O12` opened 8 July 2026, 9:00 AM, due 9 July 2026, 9:00 AM, 14 days 15 hours late" in overdue_text

    links = message["blocks"][3]["elements"][0]["text"]
    assert links == f"<{PAGE}|Pothole On-Time % on the public board>"
    assert message["text"] == ("Pothole On-Time %: 14 cases closed late in the week of 17–23 July; "
                               "12 overdue at the end of Thursday 23 July 2026.")


def test_lists_no_longer_than_shown_are_shown_whole():
    message = answer([late(2), late(1)], [overdue(1)])
    assert section_text(message, 1).startswith("*Late cases*: all 2 closed late in the week of 17–23 July, "
                                               "newest first\n")
    assert section_text(message, 2).startswith("*Overdue cases*: the one open past its due time at the end of "
                                               "Thursday 23 July 2026\n")
    assert ids_in(section_text(message, 1)) == ["L2", "L1"] and ids_in(section_text(message, 2)) == ["O1"]


def test_empty_lists_are_said_in_words():
    message = answer([], [])
    assert section_text(message, 1) == "*Late cases*: none closed late in the week of 17–23 July."
    assert section_text(message, 2) == ("*Overdue cases*: none open past its due time at the end of "
                                        "Thursday 23 July 2026.")
    assert message["text"] == ("Pothole On-Time %: 0 cases closed late in the week of 17–23 July; "
                               "0 overdue at the end of Thursday 23 July 2026.")


def test_only_the_attributes_the_catalog_marks_public_now_are_shown():
    public = boston_with("pothole-on-time", public_attributes=["neighborhood"])
    kept = late(1, [("neighborhood", "Dorchester"), ("reporter", "<@U0ALL> Jane Roe")])
    text = section_text(answer([kept], [], metric=public.by_id["pothole-on-time"]), 1)
    assert "· neighborhood: Dorchester" in text and "reporter" not in text and "Jane" not in text
    assert "neighborhood" not in section_text(answer([kept], []), 1)  # the shipped catalog shows none


def test_case_ids_and_values_cannot_mention_or_link():
    public = boston_with("pothole-on-time", public_attributes=["neighborhood"])
    line = late(1, [("neighborhood", "<!channel> & <https://evil.example|x>")])
    line = line._replace(case=line.case._replace(case_id="<@U0ALL>`x"))
    text = section_text(answer([line], [], metric=public.by_id["pothole-on-time"]), 1)
    assert "<" not in text and ">" not in text.replace("&gt;", "")
    assert "&lt;@U0ALL&gt;`x closed" in text and "&lt;!channel&gt; &amp; &lt;https://evil.example|x&gt;" in text


def test_a_metric_whose_case_lists_are_not_public_still_lists_them_and_says_so():
    private = boston_with("pothole-on-time", public_case_lists=False).by_id["pothole-on-time"]
    message = answer([late(1)], [overdue(1)], metric=private)
    assert ids_in(section_text(message, 1)) == ["L1"] and ids_in(section_text(message, 2)) == ["O1"]
    notes = [element["text"] for element in message["blocks"][3]["elements"]]
    assert notes[1].startswith("These case lists are not on the public pages")
    assert len(answer([late(1)], [], metric=POTHOLE)["blocks"][3]["elements"]) == 1


def test_a_thousand_cases_still_fit_block_kit():
    long_ids = [late(n)._replace(case=late(n).case._replace(case_id="9" * 128)) for n in range(1000)]
    assert limit_problems(answer(long_ids, [overdue(n) for n in range(1000)])) == []


@pytest.mark.parametrize("hours, words", [
    (0.0, "less than a minute"), (0.004, "less than a minute"), (0.02, "1 minute"), (0.67, "40 minutes"),
    (1.0, "1 hour"), (7.2, "7 hours"), (47.4, "47 hours"), (48.0, "2 days"), (76.0, "3 days 4 hours"),
    (73.0, "3 days 1 hour"),
])
def test_how_late_in_words(hours, words):
    assert lateness_words(hours, UNDER_A_MINUTE) == words


def test_the_metric_page_link():
    assert metric_page_url("https://cityscore.example/", "pothole-on-time", AS_OF) == PAGE
    assert metric_page_url("https://city.example/scores", "a b", None) == "https://city.example/scores/metric/a%20b"


def alert_view(metric_id: str, status: str = "firing") -> AlertView:
    return AlertView(7, CATALOG.by_id[metric_id], "week", status, 0.8, 39.0, 60.0, 1.0, 0.8, "Public Works",
                     ("U0AAA",), as_of=AS_OF)


def buttons(message: dict) -> list[str]:
    return [element["action_id"] for block in message["blocks"] if block["type"] == "actions"
            for element in block["elements"]]


def test_an_alert_of_a_case_fed_metric_carries_the_show_cases_button_and_others_do_not():
    assert show_cases_button(7) == {"type": "button", "text": {"type": "plain_text", "text": "Show cases"},
                                    "action_id": SHOW_CASES, "value": "7"}
    assert buttons(alert_message(alert_view("pothole-on-time")))[-1] == SHOW_CASES
    assert SHOW_CASES in buttons(alert_message(alert_view("pothole-on-time", "acknowledged")))
    assert SHOW_CASES not in buttons(alert_message(alert_view("shootings")))  # incidents: no cases
    assert buttons(alert_message(alert_view("pothole-on-time", "resolved"))) == []


@pytest.mark.parametrize("url, base, slack", [
    ("https://hooks.slack.com/actions/T0CITY/1/abc", "https://slack.com/api/", True),
    ("https://hooks.slack-gov.com/actions/T0CITY/1/abc", "https://slack-gov.com/api/", True),
    ("http://127.0.0.1:4567/actions/T0FAKE/1/x", "http://127.0.0.1:4567/api/", True),  # the fake Slack
    ("http://hooks.slack.com/actions/T0CITY/1/abc", "https://slack.com/api/", False),  # not https
    ("https://hooks.slack.com:8443/actions/T0CITY/1/abc", "https://slack.com/api/", False),
    ("https://hooks.slack.com.evil.example/actions/1", "https://slack.com/api/", False),
    ("http://10.0.0.5/admin", "https://slack.com/api/", False),
    ("http://127.0.0.1:9999/actions/T0FAKE/1/x", "http://127.0.0.1:4567/api/", False),  # another port
    ("https://hooks.slack.com:bad/actions", "https://slack.com/api/", False),
])
def test_only_slack_s_response_urls_are_answered(url, base, slack):
    assert slack_response_url(url, base) is slack
