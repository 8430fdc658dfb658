"""Feeds in the catalog and `cityscore import csv`: Philadelphia's public_cases_fc, New York City's
311 export and Boston's two layouts, each as exact events and skip counts (docs/feeds.md)."""

from __future__ import annotations

import io
import json
import re
from datetime import date
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from services.cli.commands import main
from services.cli.offline import fold_lines, score_file
from shared.core.catalog import CatalogError, load_catalog, parse_catalog
from shared.core.feed_rows import (
    BAD_TARGET,
    CLOSED_BEFORE_OPENED,
    CLOSED_WITHOUT_DATE,
    UNMAPPED_TYPE,
    FeedFormatError,
    FeedRows,
)
from shared.core.folding import Ledger
from shared.feeds.csv_feed import CsvFeedReader, convert, resolve_feeds

DATA = Path(__file__).resolve().parents[1] / "data"
FEEDS = DATA / "feeds"
PHILLY = load_catalog(FEEDS / "philadelphia.yaml")
NYC = load_catalog(FEEDS / "nyc.yaml")
BOSTON = load_catalog()


def run(path_or_bytes, catalog, feed):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    out = io.BytesIO()
    feeds = resolve_feeds(catalog, feed)
    summary = convert(io.BytesIO(data), out, lambda text: CsvFeedReader(text, catalog, feeds))
    return [json.loads(line) for line in out.getvalue().splitlines()], summary


def without_ids(events):
    return [{k: v for k, v in e.items() if k != "event_id"} for e in events]


def case(metric, case_id, opened, closed, due, **attributes):
    event = {"metric": metric, "type": "case", "case_id": case_id, "opened_at": opened}
    if closed is not None:
        event["closed_at"] = closed
    event["due_at"] = due
    if attributes:
        event["attributes"] = attributes
    return event


# -- Philadelphia: public_cases_fc --------------------------------------------------------

PHILLY_EVENTS = [
    # city-data.md's example row: requested 00:13:37 UTC on New Year's Day is 19:13 the evening
    # before in Philadelphia; expected 2024-01-08 00:00:00+00 is the day 8 January, due by its end.
    case("illegal-dumping-on-time", "16473162", "2023-12-31T19:13:37-05:00", "2024-01-08T07:22:43-05:00",
         "2024-01-08T23:59:59-05:00", zip="19122"),
    # (the same request exported twice: the second row is skipped as a duplicate)
    # (an information request: skipped; a closed street light without closed_datetime: skipped,
    # its updated_datetime of 2023 is the bulk rewrite, not a close)
    # open, due by the end of its expected day
    case("abandoned-vehicle-on-time", "16480001", "2024-01-03T11:45:00-05:00", None,
         "2024-02-14T23:59:59-05:00", zip="19140"),
    # opened 01:45 EST on the spring-forward Sunday, closed 03:30 EDT: 45 minutes later
    case("street-light-on-time", "16530002", "2024-03-10T01:45:00-05:00", "2024-03-10T03:30:00-04:00",
         "2024-03-15T23:59:59-04:00", zip="19147"),
    # due at the end of the spring-forward Sunday itself (a 23-hour day), closed late the next morning
    case("illegal-dumping-on-time", "16530003", "2024-03-04T08:00:00-05:00", "2024-03-11T10:00:00-04:00",
         "2024-03-10T23:59:59-04:00", zip="19132"),
    # no expected_datetime: the feed's 10 business days for alley lights; Thu 4 Jan 10:00 + 10
    # business days, Martin Luther King Day (15 Jan) skipped -> Fri 19 Jan 10:00
    case("street-light-on-time", "16490004", "2024-01-04T10:00:00-05:00", "2024-01-10T13:30:00-05:00",
         "2024-01-19T10:00:00-05:00", zip="19147"),
    # (Maintenance Complaint: not in the catalog)
    # no expected_datetime, no feed SLA: the metric's 5 business days; opened Friday evening, the
    # clock starts Monday 8 Jan 08:30; 9, 10, 11, 12, (15 a holiday) 16 Jan
    case("street-light-on-time", "16490006", "2024-01-05T18:30:00-05:00", None,
         "2024-01-16T08:30:00-05:00", zip="19147"),
]


def test_philadelphia_public_cases_fc_gives_exact_events_and_skip_counts():
    events, summary = run(FEEDS / "philadelphia_public_cases_fc.csv", PHILLY, "philly311")
    assert without_ids(events) == PHILLY_EVENTS
    assert summary.rows == 12 and summary.written == 6
    assert (summary.closed, summary.open) == (4, 2)
    assert (summary.due_from_export, summary.due_computed) == (4, 2)
    assert summary.target_column == "expected_datetime"
    assert dict(summary.skipped) == {
        "duplicate request": 1,
        "information request": 1,
        CLOSED_WITHOUT_DATE: 1,
        UNMAPPED_TYPE: 3,
    }
    # (this small test catalog maps neither street defects nor rubbish collection; the shipped one does)
    assert summary.unmapped_types == {"Maintenance Complaint": 1, "Street Defect": 1,
                                      "Rubbish/Recyclable Material Collection": 1}
    for event in events:
        assert re.fullmatch(rf"philly311-{event['case_id']}-(open|closed)-[0-9a-f]{{12}}", event["event_id"])


def test_philadelphia_events_score_as_counted_by_hand():
    events, _ = run(FEEDS / "philadelphia_public_cases_fc.csv", PHILLY, "philly311")
    lines = [json.dumps(e).encode() for e in events]
    board, report, _ = score_file(io.BytesIO(b"\n".join(lines)), PHILLY, date(2024, 1, 10))
    assert report.folded == 6 and report.invalid == 0
    # Week 4-10 Jan: the alley light closed 10 Jan before its 19 Jan due time: 1 of 1.
    lights = board.metrics["street-light-on-time"]["week"]
    assert (lights.numerator, lights.denominator) == (1, 1)
    # Quarter to 10 Jan: the dumping case closed 8 Jan 07:22, due by the end of 8 Jan: on time.
    dumping = board.metrics["illegal-dumping-on-time"]["quarter"]
    assert (dumping.numerator, dumping.denominator) == (1, 1)
    board, _, _ = score_file(io.BytesIO(b"\n".join(lines)), PHILLY, date(2024, 3, 11))
    # Week 5-11 Mar: the March dumping case closed 11 Mar, after the end of 10 Mar: late.
    dumping = board.metrics["illegal-dumping-on-time"]["week"]
    assert (dumping.numerator, dumping.denominator) == (0, 1)
    lights = board.metrics["street-light-on-time"]["week"]
    assert (lights.numerator, lights.denominator) == (1, 1)


# -- New York City 311 -------------------------------------------------------------------

NYC_EVENTS = [
    # no Due Date: the metric's 8 hours
    case("noise-residential-on-time", "60000001", "2024-01-31T23:05:07-05:00", "2024-02-01T01:14:52-05:00",
         "2024-02-01T07:05:07-05:00", zip="10027", borough="MANHATTAN"),
    # spring forward: closed at 02:40, a time that did not exist, read as 03:40 EDT
    case("street-light-on-time", "60000002", "2024-03-10T01:30:00-05:00", "2024-03-10T03:40:00-04:00",
         "2024-03-20T01:30:00-04:00", zip="11215", borough="BROOKLYN"),
    # (a duplicate of a previously filed complaint: skipped; a Closed row without a Closed Date: skipped)
    # open: 3 calendar days
    case("heat-on-time", "60000005", "2024-01-15T07:12:44-05:00", None, "2024-01-18T07:12:44-05:00",
         zip="11226", borough="BROOKLYN"),
    # fall back: 01:30 is the first (EDT) one, 02:20 after the change is EST; 8 hours from 05:30 UTC
    case("noise-residential-on-time", "60000006", "2024-11-03T01:30:00-04:00", "2024-11-03T02:20:00-05:00",
         "2024-11-03T08:30:00-05:00", zip="11375", borough="QUEENS"),
    # (closed 01/01/1900: before it opened; Illegal Parking: not in the catalog)
    # In Progress, with the export's Due Date; no zip in the row, so no zip attribute
    case("street-light-on-time", "60000009", "2024-02-05T09:00:00-05:00", None, "2024-02-15T09:00:00-05:00",
         borough="BROOKLYN"),
]


def test_new_york_city_311_gives_exact_events_and_skip_counts():
    events, summary = run(FEEDS / "nyc_311.csv", NYC, "nyc311")
    assert without_ids(events) == NYC_EVENTS
    assert summary.rows == 9 and summary.written == 5
    assert (summary.closed, summary.open) == (3, 2)
    assert (summary.due_from_export, summary.due_computed) == (2, 3)
    assert dict(summary.skipped) == {
        "duplicate request": 1,
        CLOSED_WITHOUT_DATE: 1,
        CLOSED_BEFORE_OPENED: 1,
        UNMAPPED_TYPE: 1,
    }


# -- Boston's two layouts as feeds --------------------------------------------------------


@pytest.mark.parametrize("export", ["boston311_old.csv", "boston311_new.csv"])
def test_import_csv_with_bostons_feed_is_import_boston311(tmp_path, export):
    runner = CliRunner()
    by_feed = runner.invoke(main, ["import", "csv", str(DATA / export), "--feed", "boston311", "--out", "-"])
    by_name = runner.invoke(main, ["import", "boston311", str(DATA / export), "--out", "-"])
    assert by_feed.exit_code == 0 and by_name.exit_code == 0, by_feed.stderr + by_name.stderr
    assert by_feed.stdout == by_name.stdout and len(by_feed.stdout.splitlines()) == 7
    layout = "old 2015-2018 layout" if "old" in export else "new 2019+ layout"
    assert f"12 rows read ({layout}" in by_feed.stderr
    assert by_feed.stderr.splitlines()[:-1] == by_name.stderr.splitlines()[:-1]  # the last line has the time


NEW_HEADER = (DATA / "boston311_new.csv").read_text().splitlines()[0]
OLD_HEADER = (DATA / "boston311_old.csv").read_text().splitlines()[0]


def boston_row(header: str, **values) -> str:
    names = header.split(",")
    row = ["" for _ in names]
    for name, value in values.items():
        row[[n.lower() for n in names].index(name)] = value
    return ",".join(row)


def test_boston_edge_rows_in_both_layouts():
    """Boston's feeds keep today's rules: an exported-twice case is one case (same event id), a
    closed case without a closed time and a date-only target are skipped, types outside the
    catalog (Boston's exports carry no information requests; its own unscored types) are counted
    as such, and DST days follow the zone rule."""
    for header, times in ((NEW_HEADER, ("2019-03-10 02:30:00", "2019-03-11 09:00:00", "2019-03-12 09:00:00",
                                        "2019-03-11")),
                          (OLD_HEADER, ("03/10/2019 02:30:00 AM", "03/11/2019 09:00:00 AM",
                                        "03/12/2019 09:00:00 AM", "03/11/2019"))):
        opened, closed, target, day_only = times
        pothole = "Request for Pothole Repair"
        rows = [
            boston_row(header, case_enquiry_id="101002950100", open_dt=opened, closed_dt=closed,
                       case_status="Closed", type=pothole, neighborhood="Roxbury",
                       **{"sla_target_dt" if header is NEW_HEADER else "target_dt": target}),
            boston_row(header, case_enquiry_id="101002950100", open_dt=opened, closed_dt=closed,
                       case_status="Closed", type=pothole, neighborhood="Roxbury",
                       **{"sla_target_dt" if header is NEW_HEADER else "target_dt": target}),
            boston_row(header, case_enquiry_id="101002950101", open_dt=opened, case_status="Closed", type=pothole),
            boston_row(header, case_enquiry_id="101002950102", open_dt=opened, case_status="Open", type=pothole,
                       **{"sla_target_dt" if header is NEW_HEADER else "target_dt": day_only}),
            boston_row(header, case_enquiry_id="101002950103", open_dt=opened, case_status="Open",
                       type="General Comments For a Program or Policy"),
        ]
        events, summary = run(("\n".join([header, *rows]) + "\n").encode(), BOSTON, "boston311")
        assert summary.format == ("new" if header is NEW_HEADER else "old")
        # 02:30 on 10 March 2019 did not exist in Boston: 03:30 EDT.
        expected = case("pothole-on-time", "101002950100", "2019-03-10T03:30:00-04:00",
                        "2019-03-11T09:00:00-04:00", "2019-03-12T09:00:00-04:00", neighborhood="Roxbury")
        assert without_ids(events) == [expected, expected]
        assert events[0]["event_id"] == events[1]["event_id"]
        assert dict(summary.skipped) == {CLOSED_WITHOUT_DATE: 1, BAD_TARGET: 1, UNMAPPED_TYPE: 1}
        ledger = Ledger(BOSTON)
        report = fold_lines([json.dumps(e).encode() for e in events], ledger)
        assert (report.folded, report.duplicates) == (1, 1)


# -- the pure rule, row by row -------------------------------------------------------------


def catalog_with_feed(feed: dict, catalog_file: Path = FEEDS / "philadelphia.yaml"):
    data = yaml.safe_load(catalog_file.read_text())
    data["feeds"] = {"test": feed}
    return parse_catalog(data, "test catalog")


BASIC = {
    "title": "Test 311",
    "case_id": {"column": "id"},
    "opened": {"column": "opened"},
    "closed": {"column": "closed"},
    "type": {"column": "kind"},
    "types": {"Illegal Dumping": "illegal-dumping-on-time"},
}


def test_a_row_becomes_an_event_or_a_reason_without_any_file():
    catalog = catalog_with_feed({
        **BASIC,
        "timezone": "UTC",  # this export writes UTC without an offset
        "due": {"column": "due", "format": "%d.%m.%Y", "date_only": True},
        "skip": [{"reason": "merged", "column": "parent", "not_blank": True},
                 {"reason": "test row", "column": "note", "contains": ["TEST"]}],
        "attributes": {"ward": ["ward", "ward_number"]},
    })
    rows = FeedRows(catalog.feeds["test"], catalog, ["ID", "Opened", "Closed", "Kind", "Due", "Parent", "Note",
                                                     "Ward_Number"], name="test")
    row = {"ID": "A-1", "Opened": "2024-01-02 15:00:00", "Closed": "", "Kind": "illegal dumping", "Due": "05.01.2024",
           "Parent": "", "Note": "", "Ward_Number": " 7 "}
    event, from_export = rows.event(row)
    assert from_export is True
    assert event.model_dump(mode="json", exclude_none=True) == {
        "event_id": event.event_id, "type": "case", "metric": "illegal-dumping-on-time", "case_id": "A-1",
        "opened_at": "2024-01-02T10:00:00-05:00", "due_at": "2024-01-05T23:59:59-05:00", "attributes": {"ward": "7"}}
    assert event.event_id.startswith("test-A-1-open-")
    assert rows.event({**row, "Parent": "A-0"}) == "merged"
    assert rows.event({**row, "Note": "a test ticket"}) == "test row"
    assert rows.event({**row, "Due": "2024-01-05"}) == BAD_TARGET  # not the feed's format
    # A blank due time: the metric's SLA (5 business days from Tue 2 Jan 10:00).
    event, from_export = rows.event({**row, "Due": ""})
    assert from_export is False and event.due_at.isoformat() == "2024-01-09T10:00:00-05:00"


def test_a_case_reopened_to_an_earlier_state_gets_a_new_event_id_by_its_version_column():
    # New York: closed, then reopened with the row as it was when first open; only "Resolution
    # Action Updated Date" (the feed's version) differs from the first open row.
    header = ["Unique Key", "Created Date", "Closed Date", "Complaint Type", "Status", "Due Date",
              "Resolution Action Updated Date", "Resolution Description", "Incident Zip", "Borough"]
    rows = FeedRows(NYC.feeds["nyc311"], NYC, header, name="nyc311")
    first = {"Unique Key": "61000001", "Created Date": "02/05/2024 09:00:00 AM", "Closed Date": "",
             "Complaint Type": "Street Light Condition", "Status": "Open", "Due Date": "",
             "Resolution Action Updated Date": "02/05/2024 09:00:00 AM", "Resolution Description": "",
             "Incident Zip": "11215", "Borough": "BROOKLYN"}
    closed = {**first, "Status": "Closed", "Closed Date": "02/06/2024 10:00:00 AM",
              "Resolution Action Updated Date": "02/06/2024 10:00:00 AM"}
    reopened = {**first, "Status": "Open", "Resolution Action Updated Date": "02/07/2024 08:00:00 AM"}
    ids = [rows.event(row)[0].event_id for row in (first, closed, reopened)]
    assert len(set(ids)) == 3 and ids[2].startswith("nyc311-61000001-open-")
    assert rows.event(dict(reopened))[0].event_id == ids[2]  # the same version: the same event
    # A file without the version column: the ids the rows always had (such a reopen is not told).
    plain = FeedRows(NYC.feeds["nyc311"], NYC, header[:6] + header[7:], name="nyc311")
    assert plain.event(first)[0].event_id == plain.event(reopened)[0].event_id


def test_repeated_rows_are_skipped_by_value_but_blank_values_are_not_repeats():
    catalog = catalog_with_feed({**BASIC, "skip": [{"reason": "duplicate", "column": "ref", "repeated": True}]})
    rows = FeedRows(catalog.feeds["test"], catalog, ["id", "opened", "closed", "kind", "ref"])
    row = {"id": "1", "opened": "2024-01-02 10:00:00", "closed": "", "kind": "Illegal Dumping", "ref": "R1"}
    assert not isinstance(rows.event(row), str)
    assert rows.event({**row, "id": "2"}) == "duplicate"
    assert not isinstance(rows.event({**row, "id": "3", "ref": ""}), str)
    assert not isinstance(rows.event({**row, "id": "4", "ref": ""}), str)


def test_a_header_without_a_needed_column_is_refused_naming_it():
    with pytest.raises(FeedFormatError) as refused:
        FeedRows(PHILLY.feeds["philly311"], PHILLY, ["service_request_id", "requested_datetime", "status"])
    assert str(refused.value) == (
        "not a Philadelphia 311 (public_cases_fc) export: the header has no column for closed time "
        "(closed_datetime), case type (service_name), skip rule 'information request' (service_name)")


# -- the catalog's feeds section: checked, errors naming the field -------------------------


@pytest.mark.parametrize("change, message", [
    ({"opened": {"column": "opened", "timezone": "Mars/Olympus"}},
     "feeds.test.opened.timezone: unknown time zone 'Mars/Olympus'"),
    ({"opened": {"column": "opened", "date_only": True}},
     "feeds.test: opened.date_only: only a due time may be a date"),
    ({"opened": {"column": "opened", "format": "YYYY-MM-DD"}}, "feeds.test.opened.format: 'YYYY-MM-DD'"),
    ({"types": {"Illegal Dumping": "no-such-metric"}},
     "feeds.test.types['Illegal Dumping']: unknown metric 'no-such-metric'"),
    ({"sla": {"Pothole": {"business_days": 3}}}, "feeds.test.sla['Pothole']: not a type this feed maps"),
    ({"skip": [{"reason": "x", "column": "a", "equals": ["b"], "not_blank": True}]},
     "feeds.test.skip[0]: give exactly one of equals, contains, not_blank, repeated"),
    ({"status": {"column": "status"}}, "feeds.test.status.closed: Field required"),
    ({"case_id": {"column": []}}, "feeds.test.case_id.column: Tuple should have at least 1 item"),
    ({"colums": {}}, "feeds.test.colums: Extra inputs are not permitted"),
    ({"types": {}}, "feeds.test.types: map at least one type to a metric, or leave types out"),
    ({"recognised_by": {}}, "feeds.test.recognised_by: name at least one column in any_column or upper_case_column"),
    ({"version": {"column": "changed", "date_only": True}}, "feeds.test: version.date_only: only a due time may be"),
])
def test_feed_mistakes_are_refused_naming_the_field(change, message):
    with pytest.raises(CatalogError) as refused:
        catalog_with_feed({**BASIC, **change})
    assert any(message in problem for problem in refused.value.problems), refused.value.problems


def test_types_must_map_to_case_metrics(tmp_path):
    data = yaml.safe_load((DATA.parent.parent / "shared" / "catalogs" / "boston.yaml").read_text())
    data["feeds"] = {"calls": {**BASIC, "types": {"Call": "311-call-center"}}}
    with pytest.raises(CatalogError, match=r"feeds.calls.types\['Call'\]: metric '311-call-center' is fed "
                                           r"'threshold', not cases"):
        parse_catalog(data)


def test_catalog_check_names_the_feeds_and_their_mistakes(tmp_path):
    ok = CliRunner().invoke(main, ["catalog", "check", str(FEEDS / "philadelphia.yaml")])
    assert ok.exit_code == 0, ok.output
    assert "feeds: philly311 (Philadelphia 311 (public_cases_fc))" in ok.output
    data = yaml.safe_load((FEEDS / "philadelphia.yaml").read_text())
    data["feeds"]["philly311"]["due"]["timezone"] = "Philadelphia"
    bad = tmp_path / "philly.yaml"
    bad.write_text(yaml.safe_dump(data))
    refused = CliRunner().invoke(main, ["catalog", "check", str(bad)])
    assert refused.exit_code != 0
    assert "feeds.philly311.due.timezone: unknown time zone 'Philadelphia'" in refused.output


# -- the command ----------------------------------------------------------------------------


def test_import_csv_writes_events_and_the_summary(tmp_path):
    out = tmp_path / "nyc.jsonl"
    result = CliRunner().invoke(main, ["import", "csv", str(FEEDS / "nyc_311.csv"), "--feed", "nyc311",
                                       "--catalog", str(FEEDS / "nyc.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "9 rows read (nyc311, due column Due Date): 5 events written" in result.stderr
    assert "skipped, duplicate request: 1" in result.stderr
    assert without_ids([json.loads(line) for line in out.read_text().splitlines()]) == NYC_EVENTS
    assert list(tmp_path.iterdir()) == [out]


def test_import_csv_refuses_an_unknown_feed_and_a_file_that_does_not_fit(tmp_path):
    unknown = CliRunner().invoke(main, ["import", "csv", str(FEEDS / "nyc_311.csv"), "--feed", "nyc",
                                        "--catalog", str(FEEDS / "nyc.yaml"), "--out", str(tmp_path / "x.jsonl")])
    assert unknown.exit_code == 2
    assert "the catalog (New York City) has no feed 'nyc' (feeds: nyc311)" in unknown.stderr
    out = tmp_path / "out.jsonl"
    wrong = CliRunner().invoke(main, ["import", "csv", str(FEEDS / "philadelphia_public_cases_fc.csv"),
                                      "--feed", "nyc311", "--catalog", str(FEEDS / "nyc.yaml"), "--out", str(out)])
    assert wrong.exit_code == 1
    assert "not a New York City 311 export: the header has no column for case id (Unique Key)" in wrong.stderr
    assert not out.exists()
    none = CliRunner().invoke(main, ["import", "csv", str(DATA / "boston311_new.csv"), "--feed", "x",
                                     "--catalog", str(FEEDS / "nyc.yaml"), "--ingest-url", "http://127.0.0.1:9"])
    assert none.exit_code == 2 and "--ingest-url needs --api-key" in none.stderr


def test_an_output_that_is_not_a_regular_file_stays_what_it_is(tmp_path):
    """--out /dev/null or a named pipe is written to, never replaced by a renamed temporary file."""
    import os
    import threading

    pipe = tmp_path / "events.pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()), daemon=True)
    reader.start()
    result = CliRunner().invoke(main, ["import", "csv", str(FEEDS / "nyc_311.csv"), "--feed", "nyc311",
                                       "--catalog", str(FEEDS / "nyc.yaml"), "--out", str(pipe)])
    reader.join(timeout=5)
    assert result.exit_code == 0, result.output
    assert pipe.is_fifo()
    assert without_ids([json.loads(line) for line in received[0].splitlines()]) == NYC_EVENTS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.pipe"]


def test_docs_describe_every_field_of_a_feed():
    from shared.core.catalog import CaseFeed, FeedRecognition, FeedSkip, FeedStatus, FeedTime

    docs = (Path(__file__).resolve().parents[2] / "docs" / "feeds.md").read_text()
    for model in (CaseFeed, FeedTime, FeedStatus, FeedSkip, FeedRecognition):
        for name in model.model_fields:
            assert re.search(rf"`[^`]*\b{name}\b[^`]*`", docs), f"docs/feeds.md does not describe {model.__name__}.{name}"
