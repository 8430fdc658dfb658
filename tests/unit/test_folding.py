"""Folding events into daily totals: local days, duplicates, replaced cases and tallies."""

import json
from datetime import date

from click.testing import CliRunner

from services.cli.commands import main
from shared.core.catalog import load_catalog
from shared.core.contract import parse_event
from shared.core.folding import Ledger

BOSTON = load_catalog()


def ledger_of(*events):
    ledger = Ledger(BOSTON)
    for event in events:
        ledger.fold(parse_event(event))
    return ledger


def case(event_id, case_id, opened, closed=None, metric="pothole-on-time", **extra):
    return {"event_id": event_id, "type": "case", "metric": metric, "case_id": case_id,
            "opened_at": opened, "closed_at": closed, **extra}


def incident(event_id, at, metric="shootings", **extra):
    return {"event_id": event_id, "type": "incident", "metric": metric, "occurred_at": at, **extra}


def day_totals(ledger, metric, day):
    return ledger.days[metric].get(date.fromisoformat(day))


def test_an_event_belongs_to_its_local_date():
    # 23:40 in Boston on 22 July is 03:40 UTC on 23 July: it is a 22 July shooting.
    ledger = ledger_of(incident("a", "2026-07-23T03:40:00+00:00"))
    assert day_totals(ledger, "shootings", "2026-07-22").count == 1
    assert day_totals(ledger, "shootings", "2026-07-23") is None


def test_dst_change_days_keep_their_events():
    # 8 March 2026 has 23 hours in Boston: 00:30 EST and 23:30 EDT are both on it,
    # 00:30 EDT the next morning is not; on 1 November (25 hours) both 01:30s are.
    ledger = ledger_of(
        incident("a", "2026-03-08T00:30:00-05:00"),
        incident("b", "2026-03-08T23:30:00-04:00"),
        incident("c", "2026-03-09T04:30:00+00:00"),  # 00:30 EDT on 9 March
        incident("d", "2026-11-01T01:30:00-04:00"),
        incident("e", "2026-11-01T01:30:00-05:00"),
        incident("f", "2026-11-02T04:59:59+00:00"),  # 23:59:59 EST on 1 November
    )
    assert day_totals(ledger, "shootings", "2026-03-08").count == 2
    assert day_totals(ledger, "shootings", "2026-03-09").count == 1
    assert day_totals(ledger, "shootings", "2026-11-01").count == 3


def test_a_repeated_event_id_is_ignored():
    ledger = ledger_of(incident("a", "2026-07-22T10:00:00-04:00", count=2),
                       incident("a", "2026-07-22T10:00:00-04:00", count=2))
    assert day_totals(ledger, "shootings", "2026-07-22").count == 2
    assert ledger.duplicates == 1


def test_a_case_counts_on_the_day_it_closed_against_its_due_time():
    ledger = ledger_of(
        case("a", "1", "2026-07-20T09:00:00-04:00", "2026-07-21T08:59:00-04:00"),  # due 21st 09:00: on time
        case("b", "2", "2026-07-20T09:00:00-04:00", "2026-07-21T09:01:00-04:00"),  # a minute late
        case("c", "3", "2026-07-20T09:00:00-04:00", "2026-07-21T10:00:00-04:00",
             due_at="2026-07-22T09:00:00-04:00"),  # the city's own due time wins over the SLA
        case("d", "4", "2026-07-20T09:00:00-04:00"),  # still open: counts nowhere
    )
    totals = day_totals(ledger, "pothole-on-time", "2026-07-21")
    assert (totals.numerator, totals.denominator) == (2, 3)
    assert day_totals(ledger, "pothole-on-time", "2026-07-20") is None


def test_a_case_closed_exactly_at_its_due_time_on_a_dst_day_is_on_time_whatever_the_offsets():
    # The fold compares the closing and the due time (and finds the closing's local day) on the
    # case's UTC times: the same instants as the event's own, written here in other offsets.
    # Sunday 8 March 2026 is Boston's spring-forward day: 12:00 EDT is 16:00 UTC.
    on_time = case("c1", "C1", "2026-03-07T10:00:00-05:00", "2026-03-08T16:00:00Z", due_at="2026-03-08T12:00:00-04:00")
    late = case("c2", "C2", "2026-03-07T10:00:00-05:00", "2026-03-08T16:00:00.000001+00:00",
                due_at="2026-03-08T12:00:00-04:00")
    # 00:30 EDT on Monday 9 March, written in UTC: Monday's, not Sunday's (EST would say 23:30 Sunday).
    after_midnight = case("c3", "C3", "2026-03-07T10:00:00-05:00", "2026-03-09T04:30:00Z",
                          due_at="2026-03-10T08:30:00+05:30")
    ledger = ledger_of(on_time, late, after_midnight)
    sunday = day_totals(ledger, "pothole-on-time", "2026-03-08")
    assert (sunday.numerator, sunday.denominator) == (1.0, 2.0)
    monday = day_totals(ledger, "pothole-on-time", "2026-03-09")
    assert (monday.numerator, monday.denominator) == (1.0, 1.0)
    kept = ledger.cases["case:public-works/C1"]
    assert kept.closed_at == kept.due_at and kept.closed_at.utcoffset().total_seconds() == 0


def test_a_subclass_of_an_event_class_folds_as_that_class():
    # The fold tells events apart by their class, looked up rather than asked with isinstance.
    from shared.core.contract import CaseEvent
    from shared.core.folding import event_class, replace_key

    class ResentCase(CaseEvent):
        pass

    event = ResentCase.model_validate(parse_event(case("c1", "C1", "2026-03-02T10:00:00-05:00",
                                                       "2026-03-03T10:00:00-05:00")).model_dump())
    assert event_class(event) is CaseEvent
    assert replace_key(event, "public-works") == "case:public-works/C1"
    assert event_class(object()) is None
    ledger = Ledger(BOSTON)
    ledger.fold(event)
    assert set(ledger.cases) == {"case:public-works/C1"}
    assert day_totals(ledger, "pothole-on-time", "2026-03-03").denominator == 1.0


def test_a_case_sent_again_replaces_its_earlier_version_everywhere():
    opened = "2026-07-20T09:00:00-04:00"
    ledger = ledger_of(
        case("v1", "9", opened, "2026-07-20T10:00:00-04:00"),  # closed on time on the 20th
        case("v2", "9", opened),  # reopened: no longer counts anywhere
    )
    # the day's only contribution was taken back: the day holds no data any more
    assert day_totals(ledger, "pothole-on-time", "2026-07-20") is None
    ledger.fold(parse_event(case("v3", "9", opened, "2026-07-24T10:00:00-04:00")))  # closed again, late
    assert day_totals(ledger, "pothole-on-time", "2026-07-20") is None
    totals = day_totals(ledger, "pothole-on-time", "2026-07-24")
    assert (totals.numerator, totals.denominator) == (0, 1)
    # corrected into another metric: leaves potholes, joins streetlights
    ledger.fold(parse_event(case("v4", "9", opened, "2026-07-24T10:00:00-04:00", metric="streetlight-on-time")))
    assert day_totals(ledger, "pothole-on-time", "2026-07-24") is None
    assert day_totals(ledger, "streetlight-on-time", "2026-07-24").numerator == 1
    assert ledger.replaced == 3


def test_a_later_tally_replaces_the_days_earlier_one():
    tally = {"type": "tally", "metric": "bps-attendance", "date": "2026-03-02"}
    ledger = ledger_of({**tally, "event_id": "t1", "numerator": 40000, "denominator": 46000},
                       {**tally, "event_id": "t2", "numerator": 43120, "denominator": 46012})
    totals = day_totals(ledger, "bps-attendance", "2026-03-02")
    assert (totals.numerator, totals.denominator) == (43120, 46012)


def test_late_events_update_earlier_days_and_their_windows():
    ledger = ledger_of({"event_id": "m1", "type": "measurement", "metric": "311-call-center",
                        "occurred_at": "2026-07-22T10:00:00-04:00", "value": 12})
    before = ledger.scoreboard(date(2026, 7, 23)).metrics["311-call-center"]
    assert before["day"].score is None and before["week"].numerator == 1
    ledger.fold(parse_event({"event_id": "m0", "type": "measurement", "metric": "311-call-center",
                             "occurred_at": "2026-07-20T10:00:00-04:00", "value": 45}))
    after = ledger.scoreboard(date(2026, 7, 23)).metrics["311-call-center"]
    assert (after["week"].numerator, after["week"].denominator) == (1, 2)


def test_measurements_feed_by_kind():
    ledger = ledger_of(
        {"event_id": "s1", "type": "measurement", "metric": "311-surveys", "occurred_at": "2026-07-22T10:00:00-04:00",
         "value": 5},
        {"event_id": "s2", "type": "measurement", "metric": "311-surveys", "occurred_at": "2026-07-22T11:00:00-04:00",
         "value": 2},
        {"event_id": "e1", "type": "measurement", "metric": "ems-response-time",
         "occurred_at": "2026-07-22T11:00:00-04:00", "value": 5.4},
        {"event_id": "c1", "type": "measurement", "metric": "311-call-center",
         "occurred_at": "2026-07-22T11:00:00-04:00", "value": 30},  # exactly at the threshold: answered in time
    )
    surveys = day_totals(ledger, "311-surveys", "2026-07-22")
    assert (surveys.numerator, surveys.denominator) == (7, 2)
    assert day_totals(ledger, "ems-response-time", "2026-07-22").values == [5.4]
    assert day_totals(ledger, "311-call-center", "2026-07-22").numerator == 1


# -- the offline command ----------------------------------------------------------


def write_jsonl(path, events, extra_lines=()):
    lines = [json.dumps(e) for e in events] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")


def test_score_command_prints_the_contract_shape(tmp_path):
    events = tmp_path / "events.jsonl"
    write_jsonl(events, [
        case("a", "1", "2026-07-20T09:00:00-04:00", "2026-07-21T08:59:00-04:00"),
        case("b", "2", "2026-07-20T09:00:00-04:00", "2026-07-22T08:59:00-04:00"),
    ])
    result = CliRunner().invoke(main, ["score", "--events", str(events), "--as-of", "2026-07-22"])
    assert result.exit_code == 0, result.output
    board = json.loads(result.stdout)
    assert board["as_of"] == "2026-07-22"
    assert set(board["cityscore"]) == {"day", "week", "month", "quarter"}
    pothole = board["metrics"]["pothole-on-time"]
    assert pothole["name"] == "POTHOLE ON-TIME %"
    assert pothole["target"] == 0.8
    assert pothole["day"] == {"score": 0.0, "numerator": 0.0, "denominator": 1.0, "state": "scored",
                              "start": "2026-07-22", "end": "2026-07-22", "target": 0.8}
    assert pothole["week"] == {"score": 0.5 / 0.8, "numerator": 1.0, "denominator": 2.0, "state": "scored",
                               "start": "2026-07-16", "end": "2026-07-22", "target": 0.8}
    assert board["metrics"]["homicides"]["week"] == {"score": None, "numerator": None, "denominator": None,
                                                     "state": "no_data",
                                                     "start": "2026-07-16", "end": "2026-07-22", "target": None}
    # the day before (1 of 1 on time) is the only past day score: today's 0 is below it
    assert pothole["percentile"] == 0.0 and board["metrics"]["homicides"]["percentile"] is None
    assert board["windows"]["quarter"] == {"start": "2026-04-24", "end": "2026-07-22"}
    assert board["cityscore"]["week"] == 0.5 / 0.8  # the only metric with a score
    assert len(board["metrics"]) == 23


def test_score_command_leaves_the_percentile_out_when_asked(tmp_path):
    events = tmp_path / "events.jsonl"
    write_jsonl(events, [case("a", "1", "2026-07-20T09:00:00-04:00", "2026-07-21T08:59:00-04:00")])
    args = ["score", "--events", str(events), "--as-of", "2026-07-22"]
    with_it, without = (json.loads(CliRunner().invoke(main, args + extra).stdout) for extra in ([], ["--no-percentile"]))
    assert "percentile" in with_it["metrics"]["pothole-on-time"]
    assert all("percentile" not in metric for metric in without["metrics"].values())
    for metric_id, metric in without["metrics"].items():  # the scores themselves are the same
        assert {k: v for k, v in with_it["metrics"][metric_id].items() if k != "percentile"} == metric


def test_score_command_refuses_invalid_lines_with_their_numbers(tmp_path):
    events = tmp_path / "events.jsonl"
    write_jsonl(events, [incident("a", "2026-07-22T10:00:00-04:00")],
                extra_lines=['{"event_id": "b", "type": "incident", "metric": "shootings"}', "", "not json"])
    result = CliRunner().invoke(main, ["score", "--events", str(events), "--as-of", "2026-07-22"])
    assert result.exit_code == 1
    assert f"{events}:2: occurred_at: required field is missing" in result.stderr
    assert f"{events}:4: not valid JSON" in result.stderr
    assert result.stdout == ""

    result = CliRunner().invoke(main, ["score", "--events", str(events), "--as-of", "2026-07-22", "--skip-invalid"])
    assert result.exit_code == 0
    assert "2 invalid" in result.stderr and "1 events folded" in result.stderr
    assert json.loads(result.stdout)["metrics"]["shootings"]["day"]["denominator"] is None  # no history yet


def test_score_command_table(tmp_path):
    events = tmp_path / "events.jsonl"
    write_jsonl(events, [case("a", "1", "2026-07-20T09:00:00-04:00", "2026-07-21T08:59:00-04:00")])
    result = CliRunner().invoke(main, ["score", "--events", str(events), "--as-of", "2026-07-21", "--format", "table"])
    assert result.exit_code == 0, result.output
    assert "CITYSCORE" in result.stdout and "POTHOLE ON-TIME %" in result.stdout
    assert "1.25 ▲" in result.stdout


def test_score_command_rejects_a_bad_date(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text("")
    result = CliRunner().invoke(main, ["score", "--events", str(events), "--as-of", "22/07/2026"])
    assert result.exit_code == 2 and "YYYY-MM-DD" in result.output
