"""Identity per department, corrections and withdrawals, and each metric's plausible dates.

No department can silently drop or replace another's events, every kind of event can be
taken back by the department that sent it, and a date far outside a metric's history is
refused instead of moving its baselines for good.
"""

import json
from datetime import date

import pytest
from click.testing import CliRunner

from services.cli.commands import main
from shared.core.catalog import load_catalog
from shared.core.contract import InvalidEvent, parse_event, validate_event
from shared.core.folding import Ledger
from shared.core.cases import case_fields, with_case_fields
from shared.core.percentile import with_percentiles
from shared.core.staleness import last_days

BOSTON = load_catalog()
AS_OF = date(2026, 7, 25)


def ledger_of(*events):
    ledger = Ledger(BOSTON)
    for event in events:
        ledger.fold(parse_event(event))
    return ledger


def totals(ledger, metric, day):
    return ledger.days[metric].get(date.fromisoformat(day))


def incident(event_id, at="2026-07-22T10:00:00-04:00", metric="shootings", **extra):
    return {"event_id": event_id, "type": "incident", "metric": metric, "occurred_at": at, **extra}


def case(event_id, case_id, metric, closed="2026-07-21T08:00:00-04:00", **extra):
    return {"event_id": event_id, "type": "case", "metric": metric, "case_id": case_id,
            "opened_at": "2026-07-20T09:00:00-04:00", "closed_at": closed, **extra}


def withdrawal(event_id, withdraws, metric="shootings"):
    return {"event_id": event_id, "type": "withdrawal", "metric": metric, "withdraws": withdraws}


def board(ledger):
    return ledger.scoreboard(AS_OF).as_dict(BOSTON)


# -- identity per department -------------------------------------------------------------------

def test_the_same_event_id_from_two_departments_counts_for_both():
    # Shown on the demo: public-works posted "dup-test-1", then police a homicide with the same id.
    ledger = ledger_of(case("dup-test-1", "PW-1", "pothole-on-time"),
                       incident("dup-test-1", metric="homicides"))
    assert totals(ledger, "pothole-on-time", "2026-07-21").denominator == 1
    assert totals(ledger, "homicides", "2026-07-22").count == 1
    assert ledger.duplicates == 0


def test_a_resent_event_of_the_same_department_is_still_a_duplicate():
    ledger = ledger_of(incident("a", department="police"), incident("a"))  # no department: the owner, police
    assert totals(ledger, "shootings", "2026-07-22").count == 1
    assert ledger.duplicates == 1


def test_a_case_id_of_another_department_does_not_replace_its_case():
    # Boston's 311 case ids are public: inspectional services sends public works' case id.
    ledger = ledger_of(case("pw-1", "101001", "pothole-on-time"),
                       case("isd-1", "101001", "code-enforcement-on-time", closed=None))
    assert totals(ledger, "pothole-on-time", "2026-07-21").denominator == 1
    assert ledger.replaced == 0


def test_a_case_resent_by_its_department_still_replaces_it():
    ledger = ledger_of(case("pw-1", "101001", "pothole-on-time"),
                       case("pw-2", "101001", "pothole-on-time", closed=None))  # reopened
    assert totals(ledger, "pothole-on-time", "2026-07-21") is None
    assert ledger.replaced == 1


# -- withdrawals and corrections --------------------------------------------------------------

def test_a_withdrawn_incident_dated_years_back_gives_back_the_baseline():
    history = [incident(f"h{year}", f"{year}-07-22T10:00:00-04:00") for year in range(2021, 2027)]
    clean = board(ledger_of(*history))
    mistaken = ledger_of(*history, incident("typo", "2011-01-01T10:00:00-05:00"))
    assert mistaken.first_day["shootings"] == date(2011, 1, 1)
    assert board(mistaken) != clean  # ten empty baseline years
    mistaken.fold(parse_event(withdrawal("w-typo", "typo")))
    assert mistaken.first_day["shootings"] == date(2021, 7, 22)
    assert board(mistaken) == clean


def test_a_correction_takes_the_place_of_the_event_it_names():
    ledger = ledger_of(incident("a", count=5),
                       incident("a-fixed", "2026-07-23T10:00:00-04:00", count=2, replaces="a"))
    assert totals(ledger, "shootings", "2026-07-22") is None
    assert totals(ledger, "shootings", "2026-07-23").count == 2
    assert board(ledger) == board(ledger_of(incident("b", "2026-07-23T10:00:00-04:00", count=2)))


def test_a_withdrawn_measurement_leaves_the_median():
    def ems(event_id, value):
        return {"event_id": event_id, "type": "measurement", "metric": "ems-response-time",
                "occurred_at": "2026-07-24T10:00:00-04:00", "value": value}
    ledger = ledger_of(ems("a", 5.0), ems("b", 7.0), ems("c", 90.0), withdrawal("w", "c", "ems-response-time"))
    assert totals(ledger, "ems-response-time", "2026-07-24").values == [5.0, 7.0]
    assert board(ledger) == board(ledger_of(ems("a", 5.0), ems("b", 7.0)))


def test_a_withdrawn_case_and_tally_count_nowhere():
    tally = {"event_id": "t1", "type": "tally", "metric": "bps-attendance", "date": "2026-07-22",
             "numerator": 40000, "denominator": 46000}
    ledger = ledger_of(case("pw-1", "9", "pothole-on-time"), tally,
                       withdrawal("w1", "pw-1", "pothole-on-time"), withdrawal("w2", "t1", "bps-attendance"))
    assert totals(ledger, "pothole-on-time", "2026-07-21") is None
    assert totals(ledger, "bps-attendance", "2026-07-22") is None
    assert board(ledger) == board(Ledger(BOSTON))


def test_an_event_withdrawn_before_it_comes_counts_nothing_when_it_comes():
    ledger = ledger_of(withdrawal("w", "late"), incident("late"))
    assert totals(ledger, "shootings", "2026-07-22") is None
    assert ledger.duplicates == 1


def test_a_department_cannot_withdraw_another_departments_event():
    # Public works names police's event id: it withdraws its own (unseen) id, not police's.
    ledger = ledger_of(incident("x"), {**withdrawal("w", "x", "pothole-on-time")})
    assert totals(ledger, "shootings", "2026-07-22").count == 1


def test_version_1_events_are_still_accepted_and_the_schema_shows_how_to_correct():
    runner = CliRunner()
    result = runner.invoke(main, ["contract", "schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert "withdrawal" in schema["discriminator"]["mapping"]
    assert "replaces" in schema["$defs"]["CaseEvent"]["properties"]
    assert "(contract version 2)" in schema["title"]
    assert parse_event(incident("v1-event")).replaces is None


def test_a_withdrawal_names_what_it_withdraws_not_replaces():
    with pytest.raises(InvalidEvent) as refused:
        parse_event({**withdrawal("w", "a"), "replaces": "b"})
    assert [(p.field, p.reason) for p in refused.value.problems] == [
        ("replaces", "a withdrawal names what it withdraws in 'withdraws'")]
    with pytest.raises(InvalidEvent) as refused:
        parse_event(withdrawal("w", "w"))
    assert refused.value.problems[0].field == "withdraws"


# -- plausible dates ---------------------------------------------------------------------------

def test_a_date_before_the_metrics_history_is_refused_with_the_field():
    with pytest.raises(InvalidEvent) as refused:
        validate_event(incident("old", "2000-01-01T12:00:00-05:00"), BOSTON)
    assert [(p.field, p.reason) for p in refused.value.problems] == [
        ("occurred_at", "falls on 2000-01-01, before shootings's history starts (2010-01-01)")]
    tally = {"event_id": "t", "type": "tally", "metric": "library-users", "date": "2009-12-31", "count": 3}
    with pytest.raises(InvalidEvent) as refused:
        validate_event(tally, BOSTON)
    assert refused.value.problems[0].field == "date"


def test_a_date_more_than_a_day_ahead_is_refused_when_today_is_known():
    today = date(2026, 7, 22)
    validate_event(incident("tomorrow", "2026-07-23T23:00:00-04:00"), BOSTON, today)
    with pytest.raises(InvalidEvent) as refused:
        validate_event(case("c", "1", "pothole-on-time", closed="2026-07-24T09:00:00-04:00"), BOSTON, today)
    assert [(p.field, p.reason) for p in refused.value.problems] == [
        ("closed_at", "falls on 2026-07-24, more than a day after today (2026-07-22)")]


# -- the offline command -------------------------------------------------------------------

def test_cityscore_score_counts_colliding_ids_of_two_departments_and_names_a_bad_line(tmp_path):
    lines = [case("dup-test-1", "PW-1", "pothole-on-time"),
             {**incident("dup-test-1", metric="homicides"), "department": "police"},
             incident("gone"), withdrawal("w-gone", "gone"),
             {**incident("bad"), "count": 0}]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = CliRunner().invoke(main, ["score", "--events", str(path), "--as-of", "2026-07-25",
                                                       "--format", "json", "--skip-invalid"])
    assert result.exit_code == 0, result.output + result.stderr
    assert f"{path}:5: count:" in result.stderr
    assert "4 events folded" in result.stderr and "1 invalid" in result.stderr
    expected = ledger_of(case("dup-test-1", "PW-1", "pothole-on-time"), incident("dup-test-1", metric="homicides"))
    # `cityscore score` prints each metric's percentile beside its scores (docs/scoring.md §4b), and each
    # case-fed metric's backlog and projected week (§5a)
    # and each metric's feed, with its last day with data (§4c)
    board = with_percentiles(expected.scoreboard(AS_OF)._replace(last_data=last_days(expected.days, AS_OF)),
                             BOSTON, expected.days, expected.first_day)
    printed = with_case_fields(board.as_dict(BOSTON), case_fields(board, BOSTON, expected.cases.values()))
    assert json.loads(result.stdout) == json.loads(json.dumps(printed, default=str))


def test_the_allowed_days_run_from_the_first_local_instant_of_the_history_to_the_last_of_tomorrow():
    today = date(2026, 7, 22)
    for at in ("2010-01-01T00:00:00-05:00", "2010-01-01T05:00:00Z",  # Boston's first instant of 2010
               "2026-07-23T23:59:59-04:00", "2026-07-24T03:59:59Z"):  # and its last of tomorrow
        validate_event(incident("edge", at), BOSTON, today)
    for at, day in (("2009-12-31T23:59:59-05:00", "2009-12-31"), ("2010-01-01T04:59:59Z", "2009-12-31"),
                    ("2026-07-24T00:00:00-04:00", "2026-07-24"), ("2026-07-24T04:00:00Z", "2026-07-24")):
        with pytest.raises(InvalidEvent) as refused:
            validate_event(incident("edge", at), BOSTON, today)
        assert refused.value.problems[0].reason.startswith(f"falls on {day}"), at
