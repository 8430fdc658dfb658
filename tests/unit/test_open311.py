"""Open311 GeoReport v2: windows, flattening, the close rule, the pull's cursor and state, and
`cityscore import open311` on a saved answer, as exact events and skip counts (docs/feeds.md)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from services.cli.commands import main
from services.puller.pull import StateError, StateFile
from shared.core.catalog import CatalogError, load_catalog, parse_catalog
from shared.core.feed_rows import CLOSED_WITHOUT_DATE, FeedFormatError
from shared.core.open311 import (
    Cursor,
    backoff_delay,
    flatten,
    halves,
    latest_versions,
    parse_duration,
    requests_of,
    stamp,
    to_send,
    version_of,
    windows,
)
from shared.feeds.open311 import Open311Reader, Open311Rows, requests_url

FEEDS = Path(__file__).resolve().parents[1] / "data" / "feeds"
CATALOG_FILE = FEEDS / "philadelphia_open311.yaml"
CATALOG = load_catalog(CATALOG_FILE)
SAVED = FEEDS / "philadelphia_open311.json"
UTC = timezone.utc


def at(day: int, hour: int = 0, month: int = 1) -> datetime:
    return datetime(2024, month, day, hour, tzinfo=UTC)


# -- windows ----------------------------------------------------------------------------------


def test_a_period_is_asked_for_in_windows_of_at_most_90_days_that_meet():
    start, end = at(1), at(1) + timedelta(days=200)
    spans = windows(start, end)
    assert [(b - a).days for a, b in spans] == [90, 90, 20]
    assert spans[0][0] == start and spans[-1][1] == end
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
    assert windows(start, start + timedelta(days=90)) == [(start, start + timedelta(days=90))]
    assert windows(start, start) == [] and windows(end, start) == []
    with pytest.raises(ValueError, match="span"):
        windows(start, end, timedelta(0))


def test_a_window_cut_at_the_limit_is_halved_down_to_a_second():
    assert halves(at(1), at(3)) == [(at(1), at(2)), (at(2), at(3))]
    assert halves(at(1), at(1) + timedelta(seconds=1)) is None
    assert stamp(datetime(2024, 1, 1, 7, tzinfo=timezone(timedelta(hours=-5)))) == "2024-01-01T12:00:00Z"


# -- requests as rows ---------------------------------------------------------------------------


def test_a_request_is_flattened_with_its_extensions():
    row = flatten({"service_request_id": 7, "lat": 39.9, "status": "closed", "expected_datetime": None,
                   "extended_attributes": {"parent_service_request_id": "6", "duplicate": True, "x": {"deep": 1}},
                   "notes": [{"type": "opened", "datetime": "2024-01-01T10:00:00Z"},
                             {"type": "Closed", "datetime": "2024-01-02T10:00:00Z"}]})
    assert row == {"service_request_id": "7", "lat": "39.9", "status": "closed", "expected_datetime": "",
                   "extended_attributes.parent_service_request_id": "6", "extended_attributes.duplicate": "true",
                   "notes.closed": "2024-01-02T10:00:00Z"}
    assert requests_of({"service_requests": [{"a": 1}, "junk"]}) == [{"a": 1}]
    with pytest.raises(ValueError, match="expected a list of service requests"):
        requests_of({"error": "no"})
    assert requests_url("https://city.example/open311/v2/") == "https://city.example/open311/v2/requests.json"
    assert requests_url("https://city.example/v2/requests.json?x=1") == "https://city.example/v2/requests.json"


def test_a_request_read_twice_counts_once_in_its_latest_version():
    older = {"service_request_id": "1", "status": "open", "updated_datetime": "2024-01-02T00:00:00Z"}
    newer = {"service_request_id": "1", "status": "closed", "updated_datetime": "2024-01-03T00:00:00Z"}
    no_id = {"status": "open"}
    assert latest_versions([dict(older), dict(no_id), dict(newer), dict(no_id)]) == [newer, no_id, no_id]
    assert latest_versions([dict(newer), dict(older)]) == [newer]
    assert version_of({"requested_datetime": "2024-01-01T05:00:00-05:00"}) == at(1, 10)


def test_updated_datetime_is_the_close_time_only_of_a_closed_request():
    rows = Open311Rows(CATALOG, [("open311", CATALOG.feeds["open311"])], [])
    request = {"service_request_id": "9", "service_name": "Illegal Dumping", "status": "open",
               "requested_datetime": "2024-01-02T10:00:00-05:00", "updated_datetime": "2024-01-03T10:00:00-05:00"}
    event, _ = rows.mapper.event(request)
    assert event.closed_at is None  # an open request's update is a change, not a close
    event, _ = rows.mapper.event({**request, "status": "Closed"})
    assert event.closed_at.isoformat() == "2024-01-03T10:00:00-05:00"
    assert rows.mapper.event({**request, "status": "closed", "updated_datetime": ""}) == CLOSED_WITHOUT_DATE
    # A city with the notes history: the closed note, whatever updated_datetime says.
    notes = Open311Rows(CATALOG, [("open311-notes", CATALOG.feeds["open311-notes"])], [])
    event, _ = notes.mapper.event(flatten({**request, "status": "closed", "notes": [
        {"type": "closed", "datetime": "2024-01-04T08:00:00-05:00"}]}))
    assert event.closed_at.isoformat() == "2024-01-04T08:00:00-05:00"


def test_a_request_reopened_to_its_first_state_is_a_new_version_not_a_duplicate():
    # Open, closed, then reopened with the same times and attributes as when it was first open:
    # only updated_datetime (the feed's version) tells the third apart from the first.
    from shared.core.folding import Ledger

    rows = Open311Rows(CATALOG, [("open311", CATALOG.feeds["open311"])], [])
    first = {"service_request_id": "900", "service_name": "Illegal Dumping", "zipcode": "19104",
             "requested_datetime": "2024-01-02T10:00:00-05:00", "expected_datetime": "2024-01-04T10:00:00-05:00",
             "status": "open", "updated_datetime": "2024-01-02T10:00:00-05:00"}
    closed = {**first, "status": "closed", "updated_datetime": "2024-01-03T09:00:00-05:00"}
    reopened = {**first, "updated_datetime": "2024-01-03T15:00:00-05:00"}
    events = [rows.mapper.event(flatten(request))[0] for request in (first, closed, reopened)]
    assert len({event.event_id for event in events}) == 3
    ledger = Ledger(CATALOG)
    assert [ledger.fold(event) for event in events] == [True, True, True]
    (case,) = ledger.cases.values()
    assert case.closed_at is None  # open again, as the city's system says
    # The same version read again is the same event (a duplicate downstream).
    assert rows.mapper.event(flatten(dict(reopened)))[0].event_id == events[2].event_id


def test_a_field_the_feed_names_is_a_column_even_when_no_request_read_carries_it(monkeypatch, caplog):
    # Philadelphia's own closed_datetime: a read whose requests are all open has none of it.
    import shared.feeds.open311 as open311

    monkeypatch.setattr(open311, "_WARNED_ABSENT", set())
    philly = load_catalog(Path(__file__).resolve().parents[2] / "shared" / "catalogs" / "philadelphia.yaml")
    feeds = [("philly311", philly.feeds["philly311"])]
    open_only = [flatten({"service_request_id": "1", "status": "Open", "service_name": "Illegal Dumping",
                          "requested_datetime": "2024-01-02T10:00:00-05:00", "zipcode": "19104"})]
    with caplog.at_level("WARNING", logger="cityscore.open311"):
        rows = Open311Rows(philly, feeds, open_only)
        Open311Rows(philly, feeds, open_only)  # the next cycle: warned once
    (event,) = rows.events(open_only)
    assert event.case_id == "1" and event.closed_at is None
    absent = "a field the feed names is in no request read: read as blank"
    warned = [r for r in caplog.records if r.getMessage() == absent]
    assert [(r.feed, r.field) for r in warned] == [("philly311", "closed_datetime")]
    # A request carrying it is read by it.
    closed = flatten({**open_only[0], "service_request_id": "2", "status": "Closed",
                      "closed_datetime": "2024-01-03T10:00:00-05:00"})
    (event,) = Open311Rows(philly, feeds, [closed]).events([closed])
    assert event.closed_at.isoformat() == "2024-01-03T10:00:00-05:00"


def test_when_status_closed_is_refused_where_it_cannot_apply():
    data = yaml.safe_load(CATALOG_FILE.read_text())
    base = yaml.safe_load((FEEDS / "philadelphia.yaml").read_text())
    feed = data["feeds"]["open311"]
    for change, message in (
            ({"status": None}, "feeds.open311: closed.when_status_closed: give status"),
            ({"opened": {"column": "requested_datetime", "when_status_closed": True}},
             "feeds.open311: opened.when_status_closed: only the closed time may depend on the status")):
        changed = {k: v for k, v in {**feed, **change}.items() if v is not None}
        with pytest.raises(CatalogError) as refused:
            parse_catalog({**base, "feeds": {"open311": changed}})
        assert any(message in problem for problem in refused.value.problems), refused.value.problems
    # A file (a CSV) without the status column cannot say which updates are closes.
    from shared.core.feed_rows import FeedRows

    with pytest.raises(FeedFormatError, match=r"no column for status \(status\)"):
        FeedRows(CATALOG.feeds["open311"], CATALOG, ["service_request_id", "requested_datetime", "updated_datetime",
                                                      "service_name", "extended_attributes.parent_service_request_id"])


# -- a saved answer -------------------------------------------------------------------------------

SAVED_EVENTS = [
    {"event_id": "open311-16473162-closed-c8445b565742", "metric": "illegal-dumping-on-time", "type": "case",
     "case_id": "16473162", "opened_at": "2023-12-31T19:13:37-05:00", "closed_at": "2024-01-08T07:22:43-05:00",
     "due_at": "2024-01-08T17:00:00-05:00", "attributes": {"zip": "19102"}},
    # Open: its updated_datetime is a change. Due: the metric's 5 business days.
    {"event_id": "open311-16473200-open-7c5ae16e23b8", "metric": "street-light-on-time", "type": "case",
     "case_id": "16473200", "opened_at": "2024-01-02T15:00:00-05:00", "due_at": "2024-01-09T15:00:00-05:00",
     "attributes": {"zip": "19104"}},
    # No expected_datetime: the feed's 10 business days for alley lights (15 January, MLK Day, is a holiday).
    {"event_id": "open311-16473201-closed-fe25163c6dba", "metric": "street-light-on-time", "type": "case",
     "case_id": "16473201", "opened_at": "2024-01-02T10:00:00-05:00", "closed_at": "2024-01-05T11:00:00-05:00",
     "due_at": "2024-01-17T10:00:00-05:00"},
]


def test_import_open311_of_a_saved_answer_gives_exact_events_and_skip_counts(tmp_path):
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(main, ["import", "open311", str(SAVED), "--feed", "open311", "--catalog",
                                       str(CATALOG_FILE), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in out.read_text().splitlines()] == SAVED_EVENTS
    # 9 requests, one of them twice (its older version is not read): 8.
    assert ("8 rows read (open311, due column expected_datetime): 3 events written (2 closed, 1 open; "
            "due_at from the export 1, computed from the catalog SLA 2), 5 rows skipped") in result.stderr
    for reason in ("bad case id", "case type not in the catalog", "closed case without a closed date",
                   "duplicate request", "information request"):
        assert f"skipped, {reason}: 1" in result.stderr


def test_the_same_request_gives_the_same_event_from_a_csv_export_and_from_open311():
    # One row rule: the reader of a saved answer yields what FeedRows makes of the flattened request.
    reader = Open311Reader.from_file(str(SAVED), CATALOG, [("open311", CATALOG.feeds["open311"])])
    assert [e.model_dump(mode="json", exclude_none=True) for e in reader] == SAVED_EVENTS


def test_import_open311_refuses_what_it_cannot_read(tmp_path):
    bad = tmp_path / "answer.json"
    bad.write_text('{"error": "bad api key"}')
    result = CliRunner().invoke(main, ["import", "open311", str(bad), "--feed", "open311", "--catalog",
                                       str(CATALOG_FILE), "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 1 and "expected a list of service requests" in result.output
    result = CliRunner().invoke(main, ["import", "open311", str(SAVED), "--feed", "nope", "--catalog",
                                       str(CATALOG_FILE), "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 2 and "has no feed 'nope'" in result.output
    result = CliRunner().invoke(main, ["import", "open311", str(SAVED), "--feed", "open311", "--catalog",
                                       str(CATALOG_FILE), "--start", "2024-01-01", "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 2 and "--start, --end and --param read an endpoint" in result.output
    assert not (tmp_path / "x.jsonl").exists()


# -- the pull's cursor ---------------------------------------------------------------------------------


def request(number: int, updated: datetime | None, requested: datetime = at(1)) -> dict[str, str]:
    row = {"service_request_id": str(number), "requested_datetime": requested.isoformat()}
    if updated is not None:
        row["updated_datetime"] = updated.isoformat()
    return row


def test_requests_go_in_version_then_id_order_and_the_cursor_leaves_exactly_the_rest():
    rows = [request(3, at(5)), request(1, at(5)), request(2, at(4)), request(4, None, at(2)),
            {"requested_datetime": at(1).isoformat()}, request(5, None, at(9))]
    rows[-1]["requested_datetime"] = "yesterday"  # no version: cannot be placed
    order = to_send([dict(r) for r in rows], None)
    assert [(c.version, c.case_id) for c, _ in order] == [(at(2), "4"), (at(4), "2"), (at(5), "1"), (at(5), "3")]
    # Stopped after any request, a restart sends exactly the ones after it.
    for stop in range(len(order)):
        rest = to_send([dict(r) for r in rows], order[stop][0])
        assert [c for c, _ in rest] == [c for c, _ in order[stop + 1:]]
    # A request updated after the cursor is sent again, in its new version.
    again = to_send([dict(r) for r in rows] + [request(2, at(6))], order[-1][0])
    assert [(c.version, c.case_id) for c, _ in again] == [(at(6), "2")]


def test_a_requests_version_is_read_by_the_feeds_time_rule():
    # Local Philadelphia time without an offset, as import open311 reads it: 09:00 EST is 14:00 UTC.
    rows = Open311Rows(CATALOG, [("open311", CATALOG.feeds["open311"])], [])
    local = {"service_request_id": "5", "requested_datetime": "2024-01-02T10:00:00",
             "updated_datetime": "2024-01-03T09:00:00"}
    assert rows.version_of(local) == at(3, 14)
    assert rows.version_of({**local, "updated_datetime": ""}) == at(2, 15)  # never updated: requested
    assert [(c.version, c.case_id) for c, _ in to_send([dict(local)], None, rows.version_of)] == [(at(3, 14), "5")]


def test_requests_within_the_overlap_not_sent_as_they_are_are_sent_and_only_those():
    from shared.core.open311 import kept_in_overlap, request_digest

    seen = [request(1, at(5, 10)), request(3, at(5, 12))]
    first = to_send([dict(r) for r in seen], None, sent={}, overlap=timedelta(days=1))
    cursor = first[-1][0]
    sent = {c.case_id: (c.version, request_digest(row)) for c, row in first}
    # 2 (a version between 1 and 3, shown late), 4 (back-dated 20 hours), 6 (an equal version, a
    # lower id, shown late): sent; 5 (two days back, beyond the overlap): never; 1 and 3: already sent.
    late = [request(2, at(5, 11)), request(4, at(4, 16)), request(5, at(3, 12)), request(0, at(5, 12))]
    again = to_send([dict(r) for r in seen + late], cursor, sent=sent, overlap=timedelta(days=1))
    assert [c.case_id for c, _ in again] == ["4", "2", "0"]
    # Without what was sent: the strict high-water mark, as before.
    assert to_send([dict(r) for r in seen + late], cursor) == []
    # A request changed without a newer version is not as it was sent.
    changed = {**seen[0], "status_notes": "crew assigned"}
    resent = to_send([changed, dict(seen[1])], cursor, sent=sent, overlap=timedelta(days=1))
    assert [c.case_id for c, _ in resent] == ["1"]
    assert kept_in_overlap({**sent, "9": (at(2), "x")}, cursor, timedelta(days=1)) == sent


def test_the_cursor_survives_its_file_and_a_state_of_another_endpoint_is_refused(tmp_path):
    state = StateFile(tmp_path / "state" / "pull.json", "http://a/requests.json", "open311")
    assert state.load() is None
    cursor = Cursor(at(5, 3), "16473162")
    state.save(cursor)
    assert state.load() == cursor and state.sent() == {}
    state.save(cursor, {"16473162": (at(5, 3), "ab12")})
    assert state.load() == cursor and state.sent() == {"16473162": (at(5, 3), "ab12")}
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["pull.json"]  # no temporary left
    with pytest.raises(StateError, match="endpoint is 'http://a/requests.json', this pull's is 'http://b/"):
        StateFile(state.path, "http://b/requests.json", "open311").load()
    state.path.write_text("{not json")
    with pytest.raises(StateError, match="cannot read the pull's state"):
        state.load()


def test_back_off_doubles_up_to_its_cap_and_durations_read_as_seconds():
    assert [backoff_delay(n, 5, 60) for n in range(0, 7)] == [0, 5, 10, 20, 40, 60, 60]
    assert backoff_delay(10_000, 5, 60) == 60
    assert [parse_duration(t) for t in ("15m", "30s", "2h", "90d", "500ms", "12")] == [900, 30, 7200, 7776000,
                                                                                        0.5, 12]
    with pytest.raises(ValueError, match="'soon' is not a duration"):
        parse_duration("soon")


def test_the_pulls_health_says_alive_and_ready_only_after_a_good_cycle(tmp_path):
    from services.puller.app import create_app
    from services.puller.pull import Open311Pull
    from shared.feeds.open311 import Open311Client

    state = StateFile(tmp_path / "pull.json", "http://city.example/requests.json", "open311")
    state.save(Cursor(at(5), "16473162"))
    pull = Open311Pull(Open311Client("http://city.example"), CATALOG, [("open311", CATALOG.feeds["open311"])],
                       lambda: None, state, lookback_s=86400)
    client = create_app(pull, lambda: True).test_client()
    assert client.get("/healthz").status_code == 200
    answer = client.get("/readyz")
    assert answer.status_code == 503 and answer.json["cursor"] == {"version": "2024-01-05T00:00:00+00:00",
                                                                   "case_id": "16473162"}
    pull.last_success = at(6)
    assert client.get("/readyz").status_code == 200
    pull.failures = 2  # backing off
    assert client.get("/readyz").json == {"ready": False, "cycles": 0, "failures_in_a_row": 2,
                                          "last_success": "2024-01-06T00:00:00+00:00",
                                          "cursor": {"version": "2024-01-05T00:00:00+00:00", "case_id": "16473162"}}
    assert create_app(pull, lambda: False).test_client().get("/healthz").status_code == 503
