"""Early warnings (docs/architecture.md, "At-risk alerts"): the at-risk decision at its edges, its
damping by the follow-up's streaks, its setting, and its Slack messages."""

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.notifier.at_risk import OLDEST_SHOWN, AtRiskView, at_risk_message, at_risk_reply
from services.notifier.blocks import (
    ACKNOWLEDGE, ADD_NOTE, RECORD_ACTION, SHOW_CASES, TAKE_OWNERSHIP, AlertView, limit_problems, span_if_known,
)
from services.notifier.lifecycle import (
    Policy, Reading, Status, Streak, Transition, at_risk, at_risk_window, evaluate_condition, risk_of, watched_window,
)
from services.notifier.settings import NotifierSettings
from shared.core.cases import OVERDUE, Case, CaseLine, oldest as oldest_of
from shared.core.catalog import load_catalog
from shared.core.scoring import WindowScore
from tests.helpers.catalogs import boston_with

CATALOG = load_catalog()
POTHOLES = CATALOG.by_id["pothole-on-time"]  # a ratio of cases, target 80%
CALLS = CATALOG.by_id["311-call-center"]  # a ratio, but of calls (a threshold feed): no cases, no projection
BOSTON = ZoneInfo("America/New_York")
AS_OF = date(2026, 7, 23)
POLICY = Policy(fire_after=2, resolve_after=2)


def reading(numerator: float, denominator: float) -> Reading:
    return Reading(numerator / denominator / 0.8, numerator, denominator, AS_OF)


# -- the decision ------------------------------------------------------------------------------


def test_a_score_at_or_above_1_with_a_projection_below_1_is_at_risk():
    risk = risk_of(POTHOLES, reading(10, 10), 5, AS_OF)  # 1.25 now; 10 of 15 if the 5 close late: 0.83
    assert (risk.reading.score, round(risk.projected.score, 4), risk.projected.denominator) == (1.25, 0.8333, 15)
    assert risk.projected.numerator == 10 and risk.projected.as_of == AS_OF
    assert risk.at_risk is True


def test_a_projection_of_exactly_1_is_not_at_risk():
    risk = risk_of(POTHOLES, reading(8, 8), 2, AS_OF)  # 8 of 10 at a target of 80%: exactly 1
    assert risk.projected.score == 1.0
    assert risk.at_risk is False


def test_scores_are_judged_as_shown_so_0_996_is_on_target():
    assert at_risk(1.2, 0.996) is False  # reads 1.00
    assert at_risk(0.996, 0.5) is True  # the score reads 1.00: not yet the follow-up's
    assert at_risk(1.0, 0.994) is True


def test_a_score_below_1_is_the_follow_up_s_not_an_early_warning():
    risk = risk_of(POTHOLES, reading(7, 10), 5, AS_OF)  # 0.875 now, 0.58 projected
    assert risk.reading.score < 1 and risk.projected.score < 1
    assert risk.at_risk is False


def test_no_overdue_case_projects_the_score_itself():
    risk = risk_of(POTHOLES, reading(10, 10), 0, AS_OF)
    assert risk.projected.score == risk.reading.score == 1.25
    assert risk.at_risk is False


def test_no_score_and_nothing_overdue_says_nothing_either_way():
    risk = risk_of(POTHOLES, Reading(None, as_of=AS_OF), 0, AS_OF)
    assert risk.at_risk is None
    assert evaluate_condition(Streak(1, 0), None, risk.at_risk, POLICY) == (Streak(1, 0), Transition.NONE)


def test_nothing_closed_in_the_window_with_cases_overdue_is_at_risk():
    # No score (nothing closed all week) and 3 overdue: projected 0 of 3, the worst backlog of all,
    # and no follow-up fires on a null score.
    risk = risk_of(POTHOLES, Reading(None, as_of=AS_OF), 3, AS_OF)
    assert (risk.projected.score, risk.projected.denominator) == (0.0, 3)
    assert risk.at_risk is True


def test_a_metric_not_fed_cases_has_no_projection_and_no_early_warning():
    assert risk_of(CALLS, Reading(1.02, 97, 100, AS_OF), 5, AS_OF) is None
    assert at_risk(1.2, None) is False


def test_at_risk_alerts_have_a_window_of_their_own_beside_the_follow_up_s():
    assert at_risk_window("week") == "at-risk:week"
    assert watched_window("at-risk:week") == "week"
    assert watched_window("week") is None and watched_window("feed") is None


# -- the lifecycle: the follow-up's damping ----------------------------------------------------------


def run(conditions):
    streak, status, seen = Streak(), None, []
    for holds in conditions:
        streak, transition = evaluate_condition(streak, status, holds, POLICY)
        seen.append(transition)
        if transition is Transition.FIRE:
            status = Status.FIRING
        elif transition is Transition.RESOLVE:
            status = None
    return seen


def test_at_risk_fires_after_the_damping_and_resolves_after_it():
    assert run([True, True, True, False, False]) == [
        Transition.NONE, Transition.FIRE, Transition.CHANGE, Transition.CHANGE, Transition.RESOLVE]


def test_a_backlog_flapping_around_the_line_never_fires():
    assert set(run([True, False, True, False, None, True, False])) == {Transition.NONE}


# -- the setting -----------------------------------------------------------------------------------


def test_early_warnings_are_on_by_default_and_can_be_turned_off():
    assert NotifierSettings().at_risk is True
    assert NotifierSettings().at_risk_check_every_s == 900
    assert NotifierSettings(NOTIFIER_AT_RISK="false").at_risk is False
    assert NotifierSettings(NOTIFIER_AT_RISK_CHECK_EVERY="300").at_risk_check_every_s == 300


def test_an_alert_window_named_like_the_at_risk_windows_is_refused_naming_the_field():
    with pytest.raises(ValidationError, match="(?s)NOTIFIER_ALERT_WINDOWS.*at-risk"):
        NotifierSettings(NOTIFIER_ALERT_WINDOWS="week,at-risk:week")
    with pytest.raises(ValidationError, match="NOTIFIER_AT_RISK_CHECK_EVERY"):
        NotifierSettings(NOTIFIER_AT_RISK_CHECK_EVERY="10")


# -- the messages ----------------------------------------------------------------------------------


def overdue_cases(count: int) -> list[CaseLine]:
    """Overdue pothole cases as ScoreReader.case_lines lists them: newest opened first."""
    end = datetime(2026, 7, 24, 4, 0, tzinfo=timezone.utc)  # the end of 23 July in Boston
    lines = []
    for n in range(count):
        opened = datetime(2026, 7, 10, 13, 0, tzinfo=timezone.utc) + timedelta(days=n)
        due = opened + timedelta(days=1)
        case = Case("public-works", f"P-{n}", POTHOLES.id, opened, due, None,
                    (("description", "pothole outside 12 Elm St"),), ("Dorchester",))
        lines.append(CaseLine(case, OVERDUE, round((end - due).total_seconds() / 3600, 2)))
    return lines[::-1]


def view(status: str = "firing", score: float = 1.25, overdue: int = 7, **people) -> AtRiskView:
    alert = AlertView(41, POTHOLES, "week", status, score, 10 * score * 0.8, 10, None, score, "Public Works",
                      ("U0PWD1",), as_of=AS_OF, span=span_if_known(CATALOG, "week", AS_OF), **people)
    projected = WindowScore(10 * score * 0.8 / (10 + overdue) / 0.8, 10 * score * 0.8, 10 + overdue)
    oldest = tuple(oldest_of(overdue_cases(overdue), OLDEST_SHOWN)) if status != "resolved" else ()
    return AtRiskView(alert, projected, 0.74, overdue, BOSTON, oldest)


def test_the_message_lists_the_oldest_overdue_cases_first_with_ids_and_times_only():
    message = at_risk_message(view())
    assert limit_problems(message) == []
    assert message["text"] == ("At risk: Pothole On-Time % week score 1.25 now, 0.74 if its 7 overdue cases close late "
                               "<@U0PWD1>")
    blocks = repr(message["blocks"])
    assert "is at risk for the week of 17–23 July" in blocks
    listed = next(b["text"]["text"] for b in message["blocks"]
                  if b["type"] == "section" and "text" in b and "Oldest overdue" in b["text"]["text"])
    lines = listed.splitlines()[1:]
    assert [line.split()[1] for line in lines[:5]] == ["`P-0`", "`P-1`", "`P-2`", "`P-3`", "`P-4`"]
    assert lines[0] == "• `P-0` opened 10 July 2026, 9:00 AM, due 11 July 2026, 9:00 AM, 12 days 15 hours late"
    assert lines[5] == "…and 2 more"
    # The case's breakdown group is not public, nor its description now that the catalog names none.
    assert "Elm St" not in blocks and "Dorchester" not in blocks
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in actions["elements"]] == [ACKNOWLEDGE, TAKE_OWNERSHIP, ADD_NOTE, RECORD_ACTION,
                                                             SHOW_CASES]
    assert all(e["value"] == "41" for e in actions["elements"])


def test_acknowledged_and_owned_the_message_says_so_and_drops_those_buttons():
    message = at_risk_message(view("acknowledged", acknowledged_by="U0PWD2", owner="U0PWD2"))
    assert "*At risk, acknowledged* — acknowledged by <@U0PWD2>, owned by <@U0PWD2>" in repr(message["blocks"])
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    assert [e["text"]["text"] for e in actions["elements"]] == ["Add a note", "Record an action", "Show cases"]


def test_resolved_when_the_backlog_cleared_or_handed_over_when_the_score_fell():
    cleared = at_risk_message(view("resolved", score=1.05, overdue=0))
    assert cleared["text"] == "No longer at risk: Pothole On-Time % week score 1.05, 1.05 projected"
    assert not [b for b in cleared["blocks"] if b["type"] == "actions"]
    assert "Oldest overdue" not in repr(cleared["blocks"])
    fell = view("resolved", score=0.83, overdue=0)
    assert fell.handed_over
    assert at_risk_message(fell)["text"] == ("No longer at risk: Pothole On-Time % fell below 1 for the week of "
                                             "17–23 July; its follow-up takes over.")
    assert "its follow-up takes over" in at_risk_reply("resolved", fell)["text"]
    assert at_risk_reply("resolved", view("resolved", score=1.05, overdue=0))["text"].startswith(
        "✅ No longer at risk: Pothole On-Time % would score 🟢 1.05")


def test_thread_replies_speak_of_the_projection_and_people_s_actions_as_on_a_follow_up():
    assert at_risk_reply("reminder", view())["text"] == (
        "⏰ Still at risk: 7 overdue cases would bring it to 🔴 0.74 ▼, and not acknowledged. <@U0PWD1>")
    assert at_risk_reply("worse", view())["text"].startswith("📉 Projected down to 🔴 0.74 ▼ with 7 overdue cases")
    assert at_risk_reply("acknowledged", view(), user="U0PWD2")["text"] == (
        "👀 <@U0PWD2> acknowledged this; reminders stop.")


def test_a_public_attribute_is_listed_beside_its_case_and_a_breakdown_group_never():
    catalog = boston_with(POTHOLES.id, public_attributes=["description"])
    potholes = catalog.by_id[POTHOLES.id]
    shown = view()
    message = at_risk_message(AtRiskView(replace(shown.alert, metric=potholes), shown.projected,
                                         shown.first_projected, shown.overdue, BOSTON, shown.oldest))
    blocks = repr(message["blocks"])
    assert "`P-0` opened 10 July 2026, 9:00 AM, due 11 July 2026, 9:00 AM, 12 days 15 hours late · description: " \
           "pothole outside 12 Elm St" in blocks
    assert "Dorchester" not in blocks


def test_an_at_risk_message_without_a_score_says_nothing_has_closed():
    alert = AlertView(41, POTHOLES, "week", "firing", None, None, None, None, None, "Public Works",
                      ("U0PWD1",), as_of=AS_OF, span=span_if_known(CATALOG, "week", AS_OF))
    message = at_risk_message(AtRiskView(alert, WindowScore(0.0, 0.0, 3), None, 3, BOSTON,
                                         tuple(oldest_of(overdue_cases(3), OLDEST_SHOWN))))
    assert limit_problems(message) == []
    assert "no case has closed in it yet" in message["blocks"][0]["text"]["text"]
    assert "has no score yet" in message["text"]
