"""Block Kit messages of the notifier: content, order, and Slack's limits on the full Boston catalog."""

import random
from datetime import date, timedelta

import pytest

from services.notifier.blocks import (
    AlertView, alert_message, all_messages_fit, board_message, escape, follow_up_order, limit_problems, mark,
    metric_scores_message, recap_lines, recap_message, reply_message, span_if_known,
)
from services.notifier.routing import RoutingError, load_routing, parse_routing
from shared.core.catalog import load_catalog
from shared.core.scoring import Scoreboard, WindowScore, overall
from tests.helpers.catalogs import CALENDAR_WINDOWS, variant

CATALOG = load_catalog()


def board(seed: int, as_of=date(2026, 7, 23), empty=()) -> Scoreboard:
    rng = random.Random(seed)
    metrics = {m.id: {w: (WindowScore(None, None, None) if m.id in empty else
                          WindowScore(rng.uniform(0.6, 1.4), rng.uniform(10, 100), rng.uniform(50, 120)))
                      for w in CATALOG.windows} for m in CATALOG.metrics}
    return Scoreboard(as_of, overall(metrics.values(), CATALOG.windows), metrics)


def texts(message: dict) -> str:
    return repr(message["blocks"])


def test_marks_read_without_colour():
    assert mark(0.874) == "🔴 0.87 ▼"
    assert mark(1.001) == "⚪ 1.00 ="
    assert mark(1.2) == "🟢 1.20 ▲"
    assert mark(None) == "— no score"


def test_the_board_for_the_boston_catalog_fits_block_kit():
    today, yesterday = board(1), board(2, date(2026, 7, 22))
    message = board_message(today, yesterday, CATALOG, "https://cityscore.example/")
    assert limit_problems(message) == []
    table = [b for b in message["blocks"] if b["type"] == "table"]
    assert len(table) == 1
    rows = table[0]["rows"]
    assert len(rows) == len(CATALOG.metrics) + 1  # a header row and every metric
    assert [c["text"] for c in rows[0]] == ["Metric", "Day", "Week", "Month", "Quarter"]
    assert "https://cityscore.example/" in texts(message)
    assert "since yesterday" in texts(message)


def test_the_board_lists_metrics_needing_follow_up_first():
    today = board(3)
    ordered = follow_up_order(today, CATALOG, "week")
    weeks = [today.metrics[m.id]["week"].score for m in ordered]
    below = [s for s in weeks if round(s, 2) < 1]
    assert below and weeks[: len(below)] == sorted(below)
    assert all(round(s, 2) >= 1 for s in weeks[len(below):])
    message = board_message(today, None, CATALOG, "https://x/")
    first_row = [b for b in message["blocks"] if b["type"] == "table"][0]["rows"][1]
    assert first_row[0]["text"] == ordered[0].name.title()
    assert "🔴" in first_row[2]["text"]


def test_a_board_with_missing_scores_still_fits():
    message = board_message(board(4, empty={m.id for m in CATALOG.metrics[:10]}), None, CATALOG, "https://x/")
    assert limit_problems(message) == []
    assert "— no score" in texts(message)


def test_a_huge_catalog_is_cut_to_the_table_limit():
    big = CATALOG.model_copy(update={"metrics": tuple(
        m.model_copy(update={"id": f"{m.id}-{i}", "name": m.name * 30}) for i in range(6) for m in CATALOG.metrics)})
    metrics = {m.id: {w: WindowScore(0.5, 1, 2) for w in big.windows} for m in big.metrics}
    message = board_message(Scoreboard(date(2026, 7, 23), overall(metrics.values(), big.windows), metrics), None, big,
                            "https://x/")
    assert limit_problems(message) == []
    assert "more metrics on the public board" in texts(message)


def test_the_weekly_recap_names_five_each_way_with_owners():
    today = board(5)
    owners = {m.id: ("U0OWNER",) for m in CATALOG.metrics}
    exceeding, follow_up = recap_lines(today, CATALOG, owners)
    assert len(exceeding) == 5 and len(follow_up) == 5
    assert [l.score for l in exceeding] == sorted((l.score for l in exceeding), reverse=True)
    assert [l.score for l in follow_up] == sorted(l.score for l in follow_up)
    assert all(l.score > 1 for l in exceeding) and all(l.score < 1 for l in follow_up)
    message = recap_message(today, CATALOG, owners, "https://x/")
    assert limit_problems(message) == []
    assert "<@U0OWNER>" in texts(message)


def alert_view(status="firing", **extra) -> AlertView:
    metric = CATALOG.by_id["pothole-on-time"]
    values = dict(alert_id=7, metric=metric, window="week", status=status, score=0.8125, numerator=39.0,
                  denominator=60.0, previous_score=1.02, first_score=0.85, department="Public Works Department",
                  owners=("U0AAA", "U0BBB"), as_of=date(2026, 7, 23))
    values.update(extra)
    return AlertView(**values)


def test_an_alert_shows_score_audit_target_trend_owners_and_buttons():
    message = alert_message(alert_view())
    body = texts(message)
    assert limit_problems(message) == []
    for expected in ("0.81", "39 of 60", "80%", "1.02 → 0.81 ▼", "<@U0AAA> <@U0BBB>", "Acknowledge",
                     "Take ownership", "Add a note", "Record an action"):
        assert expected in body, expected
    assert "<@U0AAA>" in message["text"]  # the notification itself mentions the owners


def test_an_acknowledged_alert_drops_the_acknowledge_button_and_a_resolved_one_every_button():
    acknowledged = texts(alert_message(alert_view("acknowledged", acknowledged_by="U0AAA")))
    assert "cityscore_acknowledge" not in acknowledged and "acknowledged by <@U0AAA>" in acknowledged
    resolved = alert_message(alert_view("resolved", score=1.05))
    assert not [b for b in resolved["blocks"] if b["type"] == "actions"]
    assert "Resolved" in texts(resolved)


def test_every_alert_message_and_reply_fits_for_every_metric():
    messages = []
    for metric in CATALOG.metrics:
        view = alert_view(metric=metric)
        messages.append(alert_message(view))
        for kind in ("recovering", "better", "worse", "resolved", "acknowledged", "owner", "reminder"):
            messages.append(reply_message(kind, view, user="U0CCC"))
        messages.append(reply_message("note", view, user="U0CCC", note="x" * 5000))
        messages.append(metric_scores_message(metric, {w: WindowScore(0.9, 9, 10) for w in CATALOG.windows},
                                              date(2026, 7, 23)))
    assert all_messages_fit(messages) == []


def test_limit_problems_finds_breaches():
    message = {"text": "x", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}] * 51}
    problems = limit_problems(message)
    assert any("51 blocks" in p for p in problems) and any("3001 chars" in p for p in problems)


def test_routing_maps_metric_to_department_channel_and_owners(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text("default_channel: C0DEF\ndepartments:\n  public-works: {channel: C0PWD, owners: [U0A, U0B]}\n"
                    "metrics:\n  pothole-on-time: {owners: [U0C]}\n")
    routing = load_routing(str(path), CATALOG, "C0FALLBACK")
    assert routing.route(CATALOG, "pothole-on-time").channel == "C0PWD"
    assert routing.route(CATALOG, "pothole-on-time").owners == ("U0C",)
    assert routing.route(CATALOG, "graffiti-on-time").owners == ("U0A", "U0B")
    assert routing.route(CATALOG, "shootings").channel == "C0DEF"
    assert load_routing(None, CATALOG, "C0FALLBACK").route(CATALOG, "shootings").channel == "C0FALLBACK"
    with pytest.raises(RoutingError, match="departments.nowhere"):
        parse_routing({"departments": {"nowhere": {"channel": "C1"}}}, CATALOG, "C0")
    with pytest.raises(RoutingError, match="metrics.pothole-on-time"):
        parse_routing({"metrics": {"pothole-on-time": {"channel": "C1"}}}, CATALOG, "C0")


def test_a_departments_channel_is_one_rule_for_its_alerts_digest_packet_and_reminders():
    routing = parse_routing({"departments": {"public-works": {"channel": "C0PWD"}}}, CATALOG, "C0DEF")
    assert routing.channel_of("public-works") == "C0PWD" == routing.route(CATALOG, "pothole-on-time").channel
    assert routing.channel_of("police") == "C0DEF" == routing.route(CATALOG, "shootings").channel


def test_responders_named_by_a_department_and_its_owners_alone_may_act():
    routing = parse_routing({"departments": {
        "public-works": {"channel": "C0PWD", "owners": ["U0A"], "responders": ["U0LEAD"]},
        "police": {"channel": "C0BPD", "owners": ["U0B"]},
        "boston-311": {"channel": "C0311", "responders": []}},
        "metrics": {"pothole-on-time": {"owners": ["U0C"]}}}, CATALOG, "C0")
    assert routing.may_act(CATALOG, "pothole-on-time", "U0LEAD") and routing.may_act(CATALOG, "pothole-on-time", "U0C")
    assert not routing.may_act(CATALOG, "pothole-on-time", "U0A")  # the metric's own owners replace the department's
    assert routing.may_act(CATALOG, "graffiti-on-time", "U0A")
    assert not routing.may_act(CATALOG, "graffiti-on-time", "U0EVIL")
    assert routing.may_act(CATALOG, "shootings", "U0ANYONE")  # no list: anyone, as before
    assert not routing.may_act(CATALOG, "311-call-center", "U0ANYONE")  # an empty list: the owners alone
    assert routing.may_act(CATALOG, "no-such-metric", "U0ANYONE")
    with pytest.raises(RoutingError, match="departments.police.responders"):
        parse_routing({"departments": {"police": {"channel": "C1", "responders": 5}}},
                      CATALOG, "C0")


def test_notes_are_escaped_so_they_cannot_mention_or_link():
    metric = CATALOG.by_id["pothole-on-time"]
    view = AlertView(1, metric, "week", "firing", 0.8, 8, 10, 0.9, 0.8, "Public Works", ("U0A",))
    reply = reply_message("note", view, user="U0B", note="<!channel> <https://x.example|fix> & <@U0C> *done*")
    assert reply["text"] == "📝 <@U0B>: &lt;!channel&gt; &lt;https://x.example|fix&gt; &amp; &lt;@U0C&gt; *done*"
    assert reply["blocks"][0]["text"]["text"] == reply["text"]
    assert escape("a &amp; b") == "a &amp;amp; b"  # what was typed is what is shown


def test_the_chart_is_a_png():
    pytest.importorskip("matplotlib")
    from services.notifier.chart import chart_png

    days = [date(2026, 4, 25) + timedelta(days=i) for i in range(90)]
    png = chart_png([(d, 0.9 + (i % 20) / 100 if i != 5 else None) for i, d in enumerate(days)], "CityScore")
    assert png.startswith(b"\x89PNG") and len(png) > 5000


# -- each window's dates, trailing or calendar ----------------------------------------------------

# Boston's published calendar windows, and a pothole target raised on Monday 20 July 2026: a
# trailing week to Thursday 23 July is scored against 85%, the calendar week 13-19 July against 80%.
CALENDAR = variant(CATALOG, windows=CALENDAR_WINDOWS, targets={"pothole-on-time": [
    {"from": date(2016, 1, 1), "target": 0.8}, {"from": date(2026, 7, 20), "target": 0.85}]})
RAISED = variant(CATALOG, targets={"pothole-on-time": [
    {"from": date(2016, 1, 1), "target": 0.8}, {"from": date(2026, 7, 20), "target": 0.85}]})
THURSDAY = date(2026, 7, 23)


def board_of(catalog, seed: int, as_of: date = THURSDAY) -> Scoreboard:
    rng = random.Random(seed)
    metrics = {m.id: {w: WindowScore(rng.uniform(0.6, 1.4), rng.uniform(10, 100), rng.uniform(50, 120))
                      for w in catalog.windows} for m in catalog.metrics}
    return Scoreboard(as_of, overall(metrics.values(), catalog.windows), metrics)


def fields_of(message: dict) -> list[str]:
    return [field["text"] for block in message["blocks"] if "fields" in block for field in block["fields"]]


def context_of(message: dict) -> str:
    return " ".join(e["text"] for block in message["blocks"] if block["type"] == "context" for e in block["elements"])


@pytest.mark.parametrize("catalog, dates", [
    (CATALOG, {"day": "23 July", "week": "17–23 July", "month": "24 June – 23 July", "quarter": "25 April – 23 July"}),
    (CALENDAR, {"day": "23 July", "week": "13–19 July", "month": "June 2026", "quarter": "April – June 2026"}),
])
def test_the_board_says_the_days_of_each_window_as_the_catalog_defines_it(catalog, dates):
    message = board_message(board_of(catalog, 6), board_of(catalog, 7, THURSDAY - timedelta(days=1)), catalog,
                            "https://x/")
    assert limit_problems(message) == []
    assert [field.split("\n")[0] for field in fields_of(message)] == [
        f"*{window.title()}* · {words}" for window, words in dates.items()]
    assert ("Scores as of 2026-07-23, the last full day: " + ", ".join(
        f"{window} {words}" for window, words in dates.items()) + ".") in context_of(message)
    assert f"in the week of {dates['week']}" in texts(message)  # the follow-ups name the week's days
    for window, words in dates.items():  # the notification's own text too
        assert f"{window.title()} " in message["text"] and f"({words})" in message["text"]


@pytest.mark.parametrize("catalog, week", [(CATALOG, "17–23 July 2026"), (CALENDAR, "13–19 July 2026")])
def test_the_weekly_recap_says_which_week(catalog, week):
    message = recap_message(board_of(catalog, 8), catalog, {}, "https://x/")
    assert limit_problems(message) == []
    assert message["blocks"][0]["text"]["text"] == f"Boston CityScore weekly recap — week of {week}"
    assert message["text"].startswith(f"Boston CityScore weekly recap — week of {week}: CityScore for the week ")
    assert f"*CityScore for the week of {week.removesuffix(' 2026')}:*" in texts(message)


@pytest.mark.parametrize("catalog, days, target", [
    (RAISED, "17–23 July", "85%"),  # the trailing week ends after the target was raised
    (CALENDAR, "13–19 July", "80%"),  # the calendar week ended before
])
def test_an_alert_says_the_days_of_its_window_and_the_target_it_was_scored_with(catalog, days, target):
    span = span_if_known(catalog, "week", THURSDAY)
    assert span is not None and span[1] - span[0] == timedelta(days=6)
    pothole = catalog.by_id["pothole-on-time"]
    message = alert_message(alert_view(span=span, metric=pothole))
    assert limit_problems(message) == []
    assert message["text"].startswith(f"Pothole On-Time % week score 0.81 for {days} (39 of 60 cases closed on time "
                                      f"(65%); target {target})")
    body = texts(message)
    assert f"for the week of {days} and needs follow-up" in body
    assert f"*Target*\\n{target}" in body
    resolved = alert_message(alert_view("resolved", score=1.05, span=span, metric=pothole))
    assert f"back at 🟢 1.05 ▲ for the week of {days}" in texts(resolved)
    assert reply_message("resolved", alert_view("resolved", score=1.05, span=span, metric=pothole))["text"] == \
        f"✅ Resolved: Pothole On-Time % is at 🟢 1.05 ▲ for the week of {days}."
    # A window the catalog no longer has, or an alert with no as-of date, has no days to say.
    assert span_if_known(catalog, "fortnight", THURSDAY) is None and span_if_known(catalog, "week", None) is None


def test_the_slash_command_says_each_windows_days():
    pothole = CALENDAR.by_id["pothole-on-time"]
    message = metric_scores_message(pothole, {w: WindowScore(0.9, 9, 10) for w in CALENDAR.windows}, THURSDAY,
                                    CALENDAR.windows)
    lines = message["blocks"][1]["text"]["text"].split("\n")
    assert [line.split(" 🔴")[0] for line in lines] == [
        "*Day* · 23 July", "*Week* · 13–19 July", "*Month* · June 2026", "*Quarter* · April – June 2026"]
    assert "Target: 85%." in context_of(message)  # the target in force on the as-of date


def test_the_slash_command_says_the_target_of_each_window_scored_with_an_earlier_one():
    # Raised on Monday 20 July: the day (23 July) has the 85% stated below; the calendar week, month
    # and quarter ended before it, so each says the 80% it was scored with.
    pothole = CALENDAR.by_id["pothole-on-time"]
    message = metric_scores_message(pothole, {w: WindowScore(0.9, 9, 10) for w in CALENDAR.windows}, THURSDAY,
                                    CALENDAR.windows)
    lines = dict(zip(CALENDAR.windows, message["blocks"][1]["text"]["text"].split("\n")))
    assert "target" not in lines["day"]
    assert lines["week"].endswith("(9 of 10 cases closed on time (90%); target 80% (in force on 19 July))")
    assert lines["month"].endswith("; target 80% (in force on 30 June))")
    assert lines["quarter"].endswith("; target 80% (in force on 30 June))")
    assert "Target: 85%." in context_of(message)
    # Trailing windows all end on the as-of date: one target, stated once.
    trailing = metric_scores_message(RAISED.by_id["pothole-on-time"], {w: WindowScore(0.9, 9, 10)
                                                                        for w in RAISED.windows}, THURSDAY,
                                     RAISED.windows)
    assert "; target" not in trailing["blocks"][1]["text"]["text"]
