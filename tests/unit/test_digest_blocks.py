"""The weekly department digest's blocks: pure, from hand-made boards."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from services.notifier.blocks import limit_problems
from services.notifier.digest_blocks import DigestWeek, digest_message, moved, who_is
from shared.core.catalog import load_catalog, parse_catalog
from shared.core.record import Action
from shared.core.scoring import NULL, Scoreboard, WindowScore
from shared.store.open_alerts import OpenAlert

BOSTON = load_catalog()
NEAR = parse_catalog({**BOSTON.model_dump(by_alias=True, exclude_none=True), "near_target": 0.9}, "near band")
AS_OF = date(2026, 7, 5)


def board(as_of: date, scores: dict[str, float | None]) -> Scoreboard:
    metrics = {m.id: {w: (WindowScore(scores[m.id], 1, 1) if scores.get(m.id) is not None else NULL)
                      for w in BOSTON.windows} for m in BOSTON.metrics}
    return Scoreboard(as_of, {w: None for w in BOSTON.windows}, metrics)


def week(catalog, now: dict, before: dict, **extra) -> DigestWeek:
    department = catalog.departments_by_id["public-works"]
    values = dict(case_fields={}, alerts=[], actions=[], today=AS_OF + timedelta(days=1))  # posted on Monday
    values.update(extra)
    return DigestWeek(department, catalog.metrics_of("public-works"), board(AS_OF, now), board(date(2026, 6, 28), before),
                      **values)


def sections(message: dict) -> list[str]:
    return [block["text"]["text"] for block in message["blocks"] if block["type"] == "section"]


def test_moved_says_how_the_week_score_moved_as_shown():
    assert moved(0.61, 0.72) == "−0.11 since the week before (0.72)"
    assert moved(1.254, 1.17) == "+0.08 since the week before (1.17)"
    assert moved(0.996, 1.004) == "unchanged since the week before"  # both read 1.00
    assert moved(None, 0.9) == "no score" and moved(0.9, None) == "no score the week before"


def test_a_quiet_week_says_nothing_is_at_risk():
    message = digest_message(week(BOSTON, {"pothole-on-time": 1.1}, {"pothole-on-time": 1.0}), BOSTON, "https://x/d")
    scores, risks = sections(message)
    assert "*Pothole On-Time %* 🟢 1.10 ▲ · _+0.10 since the week before (1.00)_" in scores
    assert "*Graffiti On-Time %* — no score · _no score_" in scores
    assert risks.startswith("*At risk*\nNothing:")
    assert limit_problems(message) == []


def test_the_near_target_band_marks_the_digest_and_a_near_score_is_still_at_risk():
    now = {"pothole-on-time": 0.95, "streetlight-on-time": 0.5}
    message = digest_message(week(NEAR, now, now), NEAR, "https://x/d")
    scores, risks = sections(message)
    assert "*Pothole On-Time %* 🟡 0.95 ▽" in scores and "*Streetlight On-Time %* 🔴 0.50 ▼" in scores
    # Below 1 is below target, band or not: a department is held to its target.
    assert "• *Pothole On-Time %* is below target this week at 🟡 0.95 ▽" in risks
    assert "near target (0.90 to 0.99)" in message["blocks"][-2]["elements"][0]["text"]


def test_the_backlog_alerts_and_actions_at_risk_are_named_and_escaped():
    fields = {"pothole-on-time": {"open": {"overdue": 12, "due_soon": 3},
                                  "projected": {"week": {"score": 0.84, "numerator": 1, "denominator": 1}}}}
    alert = OpenAlert(7, "streetlight-on-time", "at-risk:week", "firing", 1.01,
                      datetime(2026, 7, 2, 13, 0, tzinfo=timezone.utc), None, None)
    action = Action(3, "pothole-on-time", "public-works", "Night crew <lead>", "Fix <!channel> & more",
                    date(2026, 7, 1), "U0LEAD", datetime(2026, 6, 30, tzinfo=timezone.utc))
    message = digest_message(week(BOSTON, {"pothole-on-time": 1.1}, {}, case_fields=fields, alerts=[alert],
                                  actions=[action]), BOSTON, "https://x/d")
    risks = sections(message)[1]
    assert "• *Pothole On-Time %*: 12 cases overdue; the week would score 🔴 0.84 ▼ if they closed late now" in risks
    assert "• Alert open since 2 July: Streetlight On-Time % (at risk, week), no owner yet" in risks
    assert "• Action overdue since 1 July: Fix &lt;!channel&gt; &amp; more (Night crew &lt;lead&gt;)" in risks
    assert who_is("U0PWD1") == "<@U0PWD1>"


def test_an_action_due_on_the_boards_day_is_overdue_when_the_digest_is_posted():
    """Posted on Monday as of Sunday: an action due on Sunday is overdue (Action.overdue with the day
    it is posted, as the department page and the packet say); one due on Monday is due."""
    def action(due: date) -> Action:
        return Action(None, "pothole-on-time", "public-works", "U0CREW", f"Due {due}", due, "U0LEAD",
                      datetime(2026, 6, 30, tzinfo=timezone.utc))
    message = digest_message(week(BOSTON, {}, {}, actions=[action(AS_OF), action(AS_OF + timedelta(days=1))]),
                             BOSTON, "https://x/d")
    risks = sections(message)[1]
    assert "• Action overdue since 5 July: Due 2026-07-05" in risks
    assert "• Action due 6 July: Due 2026-07-06" in risks


def test_the_fallback_text_escapes_the_departments_name():
    """The `text` fallback is mrkdwn in Slack's notification: a name with `&` or `<…>` is shown, not read."""
    from dataclasses import replace

    plain = week(BOSTON, {}, {})
    named = replace(plain, department=plain.department.model_copy(update={"name": "Parks & <!channel>"}))
    message = digest_message(named, BOSTON, "https://x/d")
    assert message["text"].startswith("Parks &amp; &lt;!channel&gt;: week of")
    assert message["blocks"][0]["text"]["text"].startswith("Parks & <!channel>: week of")  # plain text header


def test_the_daily_board_and_the_terminal_mark_the_band_where_the_catalog_sets_one():
    from io import StringIO

    from rich.console import Console

    from services.cli.terminal_board import render_table
    from services.notifier.blocks import board_message

    scores = board(AS_OF, {"pothole-on-time": 0.95, "streetlight-on-time": 0.5, "graffiti-on-time": 1.2})

    def cells_of(catalog) -> dict[str, str]:
        table = next(b for b in board_message(scores, None, catalog, "https://x/", chart=False)["blocks"]
                     if b["type"] == "table")
        return {str(row[0]): str(row[2]) for row in table["rows"][1:]}

    near_cells, plain_cells = cells_of(NEAR), cells_of(BOSTON)
    pothole = next(text for name, text in near_cells.items() if "Pothole" in name)
    assert "🟡 0.95 ▽" in pothole
    assert "🔴 0.95 ▼" in next(text for name, text in plain_cells.items() if "Pothole" in name)
    assert "🔴 0.50 ▼" in next(text for name, text in near_cells.items() if "Streetlight" in name)

    out = StringIO()
    render_table(scores, NEAR, Console(file=out, width=200))
    assert "0.95 ▽" in out.getvalue() and "0.50 ▼" in out.getvalue() and "near target (0.90 to 0.99)" in out.getvalue()
    out = StringIO()
    render_table(scores, BOSTON, Console(file=out, width=200))
    assert "0.95 ▼" in out.getvalue() and "near" not in out.getvalue()
