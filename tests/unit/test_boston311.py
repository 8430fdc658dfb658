"""The Boston 311 importer: both export layouts, local time across DST, skips, ids, the CLI."""

import csv
import io
import json
import re
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli.commands import main
from shared.feeds.boston311 import (
    BAD_CASE_ID,
    BAD_CLOSED,
    BAD_OPEN,
    CLOSED_BEFORE_OPENED,
    CLOSED_WITHOUT_DATE,
    MISSING_OPEN,
    UNMAPPED_TYPE,
    WRONG_FIELD_COUNT,
    Boston311FormatError,
    Boston311Reader,
    convert,
    import_file,
)
from shared.core.catalog import load_catalog
from shared.core.contract import validate_event
from shared.core.folding import Ledger
from services.cli.offline import fold_lines, score_file

BOSTON = load_catalog()
DATA = Path(__file__).resolve().parents[1] / "data"
OLD = DATA / "boston311_old.csv"
NEW = DATA / "boston311_new.csv"
EVENT_ID = re.compile(r"boston311-(?P<case>\d+)-(?P<state>open|closed)-[0-9a-f]{12}")


def run(data: bytes):
    out = io.BytesIO()
    summary = convert(io.BytesIO(data), out, BOSTON)
    lines = out.getvalue().splitlines()
    return [json.loads(line) for line in lines], summary, lines


def without_ids(events):
    return [{k: v for k, v in e.items() if k != "event_id"} for e in events]


def case(metric, case_id, opened, closed, due, neighborhood=None):
    event = {"metric": metric, "type": "case", "case_id": case_id, "opened_at": opened}
    if closed is not None:
        event["closed_at"] = closed
    event["due_at"] = due
    if neighborhood is not None:  # the export's neighborhood column, carried for the breakdown
        event["attributes"] = {"neighborhood": neighborhood}
    return event


def drop_column(data: bytes, name: str) -> bytes:
    rows = list(csv.reader(io.StringIO(data.decode())))
    index = [h.lower() for h in rows[0]].index(name.lower())
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([r[:index] + r[index + 1 :] if len(r) > index else r for r in rows])
    return out.getvalue().encode()


# -- the old layout (2015-2018) ------------------------------------------------

OLD_EVENTS = [
    # docs/scoring.md §5's example: opened on New Year's Day (a holiday) just after midnight.
    case("streetlight-on-time", "101001240735", "2015-01-01T00:25:23-05:00", "2015-01-02T16:17:43-05:00",
         "2015-01-16T08:30:00-05:00", "Roxbury"),
    case("pothole-on-time", "101001240801", "2015-01-02T09:14:05-05:00", "2015-01-02T14:30:11-05:00",
         "2015-01-05T09:14:05-05:00", "Dorchester"),
    case("pothole-on-time", "101001240902", "2015-01-05T10:00:00-05:00", "2015-01-07T11:45:00-05:00",
         "2015-01-06T10:00:00-05:00", "Dorchester"),
    # still open: no closed_at
    case("streetlight-on-time", "101001241003", "2015-01-06T19:05:00-05:00", None, "2015-01-22T08:30:00-05:00",
         "Jamaica Plain"),
    # empty TARGET_DT: 24 hours from the catalog SLA, written in local time
    case("signal-repair-on-time", "101001241104", "2015-01-07T15:00:00-05:00", "2015-01-07T21:00:00-05:00",
         "2015-01-08T15:00:00-05:00", "Roxbury"),
    # 02:30 on 8 March 2015 does not exist in Boston: shifted forward to 03:30 EDT
    case("pothole-on-time", "101001403306", "2015-03-08T03:30:00-04:00", "2015-03-09T10:15:00-04:00",
         "2015-03-09T08:30:00-04:00", "Jamaica Plain"),
    # 01:30 on 1 November 2015 happens twice: the first (EDT) is taken
    case("streetlight-on-time", "101001580007", "2015-11-01T01:30:00-04:00", "2015-11-01T01:50:00-04:00",
         "2015-11-17T08:30:00-05:00", "Dorchester"),
]


def test_old_layout_gives_exact_events_and_skip_counts():
    events, summary, _ = run(OLD.read_bytes())
    assert without_ids(events) == OLD_EVENTS
    assert summary.format == "old" and summary.target_column == "TARGET_DT"
    assert summary.rows == 12 and summary.written == 7
    assert (summary.closed, summary.open) == (6, 1)
    assert (summary.due_from_export, summary.due_computed) == (6, 1)
    assert dict(summary.skipped) == {
        UNMAPPED_TYPE: 1,  # Request for Snow Plowing
        CLOSED_BEFORE_OPENED: 1,
        BAD_CASE_ID: 1,  # 1.01001E+11, a spreadsheet's rendering of the id
        MISSING_OPEN: 1,
        BAD_OPEN: 1,  # 13/45/2015
    }
    assert summary.unmapped_types == {"Request for Snow Plowing": 1}


# -- the new layout (2019 on) --------------------------------------------------

NEW_EVENTS = [
    case("pothole-on-time", "101002700001", "2019-01-02T08:10:11-05:00", "2019-01-02T13:05:42-05:00",
         "2019-01-03T08:30:00-05:00", "Dorchester"),
    case("pothole-on-time", "101002700002", "2019-01-02T09:00:00-05:00", "2019-01-03T09:00:00-05:00",
         "2019-01-03T09:00:00-05:00", "South Boston / South Boston Waterfront"),
    case("pothole-on-time", "101002700003", "2019-01-02T10:00:00.123456-05:00", "2019-01-04T11:00:00-05:00",
         "2019-01-03T10:00:00-05:00", "Jamaica Plain"),
    # empty sla_target_dt: 1 business day from the catalog
    case("pothole-on-time", "101002700004", "2019-01-03T14:00:00-05:00", "2019-01-04T12:00:00-05:00",
         "2019-01-04T14:00:00-05:00", "Roxbury"),
    case("streetlight-on-time", "101002700005", "2019-01-03T16:20:00-05:00", None, "2019-01-17T16:20:00-05:00",
         "Roxbury"),
    case("pothole-on-time", "101002950008", "2019-03-10T03:15:00-04:00", "2019-03-11T08:00:00-04:00",
         "2019-03-11T08:30:00-04:00", "Jamaica Plain"),
    case("streetlight-on-time", "101003180009", "2019-11-03T01:30:00-04:00", "2019-11-04T09:00:00-05:00",
         "2019-11-19T08:30:00-05:00", "Dorchester"),
]


def test_new_layout_gives_exact_events_and_skip_counts():
    events, summary, _ = run(NEW.read_bytes())
    assert without_ids(events) == NEW_EVENTS
    assert summary.format == "new" and summary.target_column == "sla_target_dt"
    assert summary.rows == 12 and summary.written == 7
    assert (summary.due_from_export, summary.due_computed) == (6, 1)
    assert dict(summary.skipped) == {
        UNMAPPED_TYPE: 1,  # Parking Enforcement
        CLOSED_BEFORE_OPENED: 1,
        CLOSED_WITHOUT_DATE: 1,
        BAD_CLOSED: 1,  # 25:00:00
        WRONG_FIELD_COUNT: 1,  # a truncated last row
    }


def test_every_output_line_passes_the_contract():
    for path in (OLD, NEW):
        _, _, lines = run(path.read_bytes())
        assert lines
        for line in lines:
            validate_event(line, BOSTON)


# -- due_at computed when the export has no target column -------------------------


def test_export_without_target_column_gets_due_at_from_the_catalog():
    events, summary, _ = run(drop_column(OLD.read_bytes(), "TARGET_DT"))
    assert summary.target_column is None
    assert (summary.due_from_export, summary.due_computed) == (0, 7)
    due = {e["case_id"]: e["due_at"] for e in events}
    # Thu 1 Jan 2015 00:25 is a holiday: the clock starts Fri 2 Jan 08:30; 10 business days.
    assert due["101001240735"] == "2015-01-16T08:30:00-05:00"
    assert due["101001240801"] == "2015-01-05T09:14:05-05:00"  # Friday + 1 business day
    assert due["101001241003"] == "2015-01-22T08:30:00-05:00"  # evening start; MLK day skipped
    assert due["101001241104"] == "2015-01-08T15:00:00-05:00"  # 24 hours
    assert due["101001403306"] == "2015-03-10T08:30:00-04:00"  # Sunday: starts Monday 08:30
    assert due["101001580007"] == "2015-11-17T08:30:00-05:00"  # Veterans Day skipped
    # What the scorer would compute itself, so writing it changes no score.
    assert without_ids(events) == [
        {**e, "due_at": due[e["case_id"]]} for e in OLD_EVENTS
    ]


def test_older_new_layout_column_names_and_explicit_offsets():
    data = (
        "case_enquiry_id,open_dt,target_dt,closed_dt,ontime,case_status,type\n"
        "101002600001,2019-01-02T13:10:11+00,2019-01-03 08:30:00,2019-01-02 13:05:42,ONTIME,Closed,"
        "Request for Pothole Repair\n"
        "101002600002,2019-01-02 09:00:00,2019-01-03T14:00:00Z,,ONTIME,Open,request for pothole repair\n"
    ).encode()
    events, summary, _ = run(data)
    assert summary.format == "new" and summary.target_column == "target_dt"
    assert without_ids(events) == [
        # An explicit offset is an exact instant: 13:10 UTC is 08:10 in Boston.
        case("pothole-on-time", "101002600001", "2019-01-02T08:10:11-05:00", "2019-01-02T13:05:42-05:00",
             "2019-01-03T08:30:00-05:00"),
        # TYPE matched without regard to case; an open case.
        case("pothole-on-time", "101002600002", "2019-01-02T09:00:00-05:00", None, "2019-01-03T09:00:00-05:00"),
    ]


def test_bom_and_crlf_change_nothing():
    plain = run(NEW.read_bytes())
    windows = run(b"\xef\xbb\xbf" + NEW.read_bytes().replace(b"\n", b"\r\n"))
    assert windows[2] == plain[2]
    assert windows[1].as_dict() == plain[1].as_dict()
    old_bom = run(b"\xef\xbb\xbf" + OLD.read_bytes().replace(b"\n", b"\r\n"))
    assert old_bom[1].format == "old" and old_bom[2] == run(OLD.read_bytes())[2]


def test_timestamps_both_styles_and_dst():
    reader = Boston311Reader(io.StringIO("CASE_ENQUIRY_ID,OPEN_DT,CLOSED_DT,TYPE\n"), BOSTON)
    iso = lambda text: reader.parse_time(text).isoformat()  # noqa: E731
    assert iso("01/01/2015 12:25:23 AM") == "2015-01-01T00:25:23-05:00"
    assert iso("01/01/2015 12:25:23 PM") == "2015-01-01T12:25:23-05:00"
    assert iso("07/04/2016 11:59:59 PM") == "2016-07-04T23:59:59-04:00"
    assert iso("7/4/2016 23:59") == "2016-07-04T23:59:00-04:00"  # re-saved by a spreadsheet
    assert iso("2019-01-01 00:25:23") == "2019-01-01T00:25:23-05:00"
    assert iso("2019-01-01 00:25:23.5") == "2019-01-01T00:25:23.500000-05:00"
    assert iso("2019-03-10 01:59:59") == "2019-03-10T01:59:59-05:00"
    assert iso("2019-03-10 02:00:00") == "2019-03-10T03:00:00-04:00"  # the gap: shifted forward
    assert iso("2019-11-03 00:59:59") == "2019-11-03T00:59:59-04:00"
    assert iso("2019-11-03 01:00:00") == "2019-11-03T01:00:00-04:00"  # repeated hour: first one
    assert iso("2019-11-03 02:00:00") == "2019-11-03T02:00:00-05:00"
    for bad in ("", "soon", "13/01/2015 10:00:00 AM", "01/01/2015 13:00:00 PM", "2019-02-29 10:00:00"):
        assert reader.parse_time(bad) is None, bad


def test_a_file_that_is_not_a_311_export_is_refused():
    with pytest.raises(Boston311FormatError, match="case type"):
        run(b"case_enquiry_id,open_dt,closed_dt,status\n1,2019-01-01 00:00:00,,Open\n")
    with pytest.raises(Boston311FormatError, match="empty"):
        run(b"")


# -- event ids: re-import is idempotent, a changed case replaces -----------------


def test_event_ids_are_deterministic_and_name_case_and_state():
    first = run(NEW.read_bytes())[0]
    again = run(NEW.read_bytes())[0]
    assert [e["event_id"] for e in first] == [e["event_id"] for e in again]
    for event in first:
        match = EVENT_ID.fullmatch(event["event_id"])
        assert match, event["event_id"]
        assert match["case"] == event["case_id"]
        assert match["state"] == ("closed" if "closed_at" in event else "open")
    assert len({e["event_id"] for e in first}) == len(first)


def test_reimport_is_ignored_and_a_later_export_replaces():
    before = NEW.read_bytes()
    # A later export: the open streetlight case has closed, a pothole was re-dated.
    after = before.replace(
        b"101002700005,2019-01-03 16:20:00,2019-01-17 16:20:00,,ONTIME,Open,",
        b"101002700005,2019-01-03 16:20:00,2019-01-17 16:20:00,2019-01-08 10:00:00,ONTIME,Closed,",
    ).replace(b"2019-01-02 13:05:42", b"2019-01-03 13:05:42")
    assert after != before
    _, _, lines_before = run(before)
    events_after, _, lines_after = run(after)

    ledger = Ledger(BOSTON)
    report = fold_lines(lines_before, ledger)
    assert report.folded == 7
    report = fold_lines(lines_before, ledger)  # the same file again: all duplicates
    assert (report.folded, report.duplicates) == (0, 7)
    report = fold_lines(lines_after, ledger)
    # Only the two changed cases are new events; they replace their earlier versions.
    assert (report.folded, report.duplicates) == (2, 5)
    assert ledger.replaced == 2
    changed = {e["case_id"]: e["event_id"] for e in events_after}
    assert EVENT_ID.fullmatch(changed["101002700005"])["state"] == "closed"
    week = ledger.scoreboard(date(2019, 1, 8)).metrics["streetlight-on-time"]["week"]
    assert (week.numerator, week.denominator) == (1, 1)


# -- scoring what was imported ----------------------------------------------------


def test_imported_cases_score_the_expected_pothole_ratio(tmp_path):
    out = tmp_path / "events.jsonl"
    import_file(str(NEW), str(out), BOSTON)
    with out.open("rb") as stream:
        board, report, _ = score_file(stream, BOSTON, date(2019, 1, 4))
    assert report.invalid == 0 and report.folded == 7
    pothole = board.metrics["pothole-on-time"]
    # Week 29 Dec - 4 Jan: closed 2 Jan on time, 3 Jan on time (exactly at due),
    # 4 Jan late (internal), 4 Jan on time (computed due) -> 3 of 4 against 0.80.
    assert (pothole["week"].numerator, pothole["week"].denominator) == (3, 4)
    assert pothole["week"].score == pytest.approx(0.75 / 0.80)
    assert (pothole["day"].numerator, pothole["day"].denominator) == (1, 2)
    assert pothole["day"].score == pytest.approx(0.5 / 0.80)
    # The March case (opened in the DST gap) is outside the quarter ending 4 January.
    assert pothole["quarter"].denominator == 4


# -- the command ------------------------------------------------------------------


def test_cli_writes_events_and_prints_the_summary_on_stderr(tmp_path):
    out = tmp_path / "old.jsonl"
    result = CliRunner().invoke(main, ["import", "boston311", str(OLD), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "12 rows read" in result.stderr and "7 events written" in result.stderr
    assert "skipped, case type not in the catalog: 1" in result.stderr
    assert "skipped, bad case id: 1" in result.stderr
    lines = out.read_bytes().splitlines()
    assert [validate_event(line, BOSTON).case_id for line in lines] == [e["case_id"] for e in OLD_EVENTS]
    assert list(tmp_path.iterdir()) == [out]  # no partial file left behind


def test_cli_to_stdout_and_scored_by_the_score_command(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["import", "boston311", str(NEW), "--out", "-"])
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 7
    assert "12 rows read" in result.stderr
    events = tmp_path / "new.jsonl"
    events.write_text(result.stdout)
    scored = runner.invoke(main, ["score", "--events", str(events), "--as-of", "2019-01-04"])
    assert scored.exit_code == 0, scored.stderr
    pothole = json.loads(scored.stdout)["metrics"]["pothole-on-time"]["week"]
    assert (pothole["numerator"], pothole["denominator"]) == (3, 4)


def test_cli_refuses_a_file_that_is_not_an_export(tmp_path):
    bad = tmp_path / "calls.csv"
    bad.write_text("call_id,answered_at,seconds\n1,2019-01-01 00:00:00,12\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["import", "boston311", str(bad), "--out", str(out)])
    assert result.exit_code == 1
    assert "not a Boston 311 export" in result.stderr
    assert not out.exists()


def test_progress_bar_goes_to_stderr_only(tmp_path, capsys):
    out = tmp_path / "events.jsonl"
    summary = import_file(str(OLD), str(out), BOSTON, show_progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "importing boston311_old.csv" in captured.err
    assert summary.written == 7 and len(out.read_bytes().splitlines()) == 7
