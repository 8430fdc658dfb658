"""Metrics whose SLA is each case's own (`due_from_case`) and feeds that read a row's SLA in words
(`sla_notice`, Philly311's and Open311's service_notice): the catalog's rules, the contract's
refusal of a case without its due time, and the feed's order (due column, notice, the feed's SLA
by type, the metric's)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shared.core.catalog import SLA, CatalogError, parse_catalog
from shared.core.contract import InvalidEvent, validate_event
from shared.core.feed_rows import NO_DUE_TIME, FeedRows, sla_of_notice
from shared.core.wording import sla_words

FEEDS = Path(__file__).resolve().parents[1] / "data" / "feeds"


@pytest.mark.parametrize("notice, sla", [
    ("5 Business Days", SLA(business_days=5)),
    ("1 Business Day", SLA(business_days=1)),
    ("  10 business days ", SLA(business_days=10)),
    ("3 Calendar Days", SLA(calendar_days=3)),
    ("30 Days", SLA(calendar_days=30)),  # days without "business": calendar days
    ("1 day", SLA(calendar_days=1)),
    ("48 Hours", SLA(hours=48)),
    ("24 hrs", SLA(hours=24)),
    ("1.5 Hours", SLA(hours=1.5)),
    ("366 Days", SLA(calendar_days=366)),  # the most of each unit: a year
    ("261 Business Days", SLA(business_days=261)),
    ("8784 Hours", SLA(hours=8784)),
])
def test_a_notice_states_an_sla(notice, sla):
    assert sla_of_notice(notice) == sla


@pytest.mark.parametrize("notice", ["", "   ", "Varies", "2-3 Business Days", "0 Business Days", "1.5 Days",
                                    "5 Business Hours", "Business Days", "5",
                                    # more than a year: a typo, not a promise (and past the calendar's end)
                                    "9999999 Days", "367 Days", "367 Calendar Days", "262 Business Days",
                                    "8785 Hours", "99999999999 Hours"])
def test_a_notice_that_states_no_sla_this_rule_reads_gives_none(notice):
    assert sla_of_notice(notice) is None


def philadelphia(change=None) -> dict:
    data = yaml.safe_load((FEEDS / "philadelphia.yaml").read_text())
    # Abandoned vehicles: no SLA in the catalog, each case's own.
    vehicles = next(m for m in data["metrics"] if m["id"] == "abandoned-vehicle-on-time")
    del vehicles["sla"]
    vehicles["due_from_case"] = True
    data["feeds"]["philly311"]["sla_notice"] = {"column": "service_notice"}
    if change is not None:
        change(data)
    return data


def test_the_catalog_takes_a_metric_without_an_sla_only_when_it_says_so():
    catalog = parse_catalog(philadelphia(), "test")
    vehicles = catalog.metric("abandoned-vehicle-on-time")
    assert vehicles.due_from_case and vehicles.sla is None
    assert sla_words(vehicles) == "Closed by the due time each case carries from its source"

    def without(data):
        del next(m for m in data["metrics"] if m["id"] == "abandoned-vehicle-on-time")["due_from_case"]
    with pytest.raises(CatalogError, match="sla is required for feed 'cases'.*unless due_from_case: true"):
        parse_catalog(philadelphia(without), "test")

    def both(data):
        next(m for m in data["metrics"] if m["id"] == "abandoned-vehicle-on-time")["sla"] = {"business_days": 30}
    with pytest.raises(CatalogError, match="due_from_case: give either an sla .* not both"):
        parse_catalog(philadelphia(both), "test")

    def not_cases(data):
        data["metrics"].append({"id": "calls", "name": "CALLS", "kind": "ratio", "target": 0.9,
                                "department": "streets", "feed": "threshold", "threshold": 30,
                                "due_from_case": True})
    with pytest.raises(CatalogError, match="due_from_case and case_types only apply to feed 'cases'"):
        parse_catalog(philadelphia(not_cases), "test")


def test_a_feed_that_could_never_give_such_a_metric_a_due_time_is_refused_at_catalog_check():
    def no_due_no_notice(data):
        feed = data["feeds"]["philly311"]
        del feed["due"], feed["sla_notice"]
    with pytest.raises(CatalogError, match=r"feeds\.philly311\.types\['Abandoned Vehicle'\]: metric "
                                           r"'abandoned-vehicle-on-time' takes each case's due time \(due_from_case\), "
                                           r"but this feed names no due column, no sla_notice and no sla for the type"):
        parse_catalog(philadelphia(no_due_no_notice), "test")

    def with_a_type_sla(data):  # the feed's own SLA for the type is a due time for every row
        no_due_no_notice(data)
        data["feeds"]["philly311"]["sla"]["Abandoned Vehicle"] = {"business_days": 30}
    parse_catalog(philadelphia(with_a_type_sla), "test")


def test_the_contract_refuses_a_case_without_its_due_time_for_such_a_metric_naming_the_field():
    catalog = parse_catalog(philadelphia(), "test")
    case = {"event_id": "v-1", "type": "case", "metric": "abandoned-vehicle-on-time", "case_id": "16480001",
            "opened_at": "2024-01-03T16:45:00Z"}
    with pytest.raises(InvalidEvent) as refused:
        validate_event(case, catalog)
    assert "due_at: required: abandoned-vehicle-on-time has no SLA in the catalog (due_from_case)" in str(refused.value)
    accepted = validate_event({**case, "due_at": "2024-02-14T23:59:59Z"}, catalog)
    assert accepted.due_at is not None
    # A metric with an SLA still takes a case without one.
    validate_event({**case, "metric": "street-light-on-time"}, catalog)


HEADER = ["service_request_id", "status", "service_name", "service_notice", "requested_datetime",
          "expected_datetime", "closed_datetime"]


def due_of(catalog, **row) -> str:
    rows = FeedRows(catalog.feeds["philly311"], catalog, HEADER, name="philly311")
    base = {"service_request_id": "1", "status": "Open", "service_name": "Abandoned Vehicle", "service_notice": "",
            "requested_datetime": "2024-01-03 16:45:00+00", "expected_datetime": "", "closed_datetime": ""}
    made = rows.event({**base, **row})
    return made if isinstance(made, str) else made[0].due_at.isoformat()


def test_a_rows_due_time_comes_from_its_due_column_then_its_notice_then_the_feeds_sla_then_the_metrics():
    catalog = parse_catalog(philadelphia(), "test")
    # Wed 3 Jan 2024 11:45 in Philadelphia.
    assert due_of(catalog, expected_datetime="2024-02-14 00:00:00+00",
                  service_notice="30 Business Days") == "2024-02-14T23:59:59-05:00"
    assert due_of(catalog, service_notice="2 Business Days") == "2024-01-05T11:45:00-05:00"
    assert due_of(catalog, service_notice="48 Hours") == "2024-01-05T11:45:00-05:00"
    # Neither column says, and the metric has no SLA: skipped, never guessed.
    assert due_of(catalog) == NO_DUE_TIME
    assert due_of(catalog, service_notice="Varies") == NO_DUE_TIME
    # Alley lights: the notice wins over the feed's 10 business days for the type, which applies
    # when the notice is blank; street lights without either take the metric's 5 business days.
    assert due_of(catalog, service_name="Alley Light Outage", service_notice="1 Business Day") == \
        "2024-01-04T11:45:00-05:00"
    assert due_of(catalog, service_name="Alley Light Outage") == "2024-01-18T11:45:00-05:00"  # (15 Jan a holiday)
    assert due_of(catalog, service_name="Street Light Outage", service_notice="n/a") == "2024-01-10T11:45:00-05:00"


def test_an_open311_requests_service_notice_is_its_sla_when_it_has_no_expected_datetime(tmp_path):
    from shared.core.catalog import load_catalog
    from shared.feeds.open311 import Open311Rows

    data = yaml.safe_load((FEEDS / "philadelphia_open311.yaml").read_text())
    data["extends"] = str(FEEDS / "philadelphia.yaml")
    data["feeds"]["open311"]["sla_notice"] = {"column": "service_notice"}
    (tmp_path / "open311.yaml").write_text(yaml.safe_dump(data))
    catalog = load_catalog(tmp_path / "open311.yaml")
    rows = Open311Rows(catalog, [("open311", catalog.feeds["open311"])], [])
    request = {"service_request_id": "9", "service_name": "Abandoned Vehicle", "status": "open",
               "service_notice": "20 Business Days", "requested_datetime": "2024-01-02T10:00:00-05:00",
               "updated_datetime": "2024-01-02T10:00:00-05:00"}
    event, from_export = rows.mapper.event(request)
    # Tue 2 Jan 10:00 + 20 business days, Martin Luther King Day (15 Jan) skipped: Wed 31 Jan.
    assert event.due_at.isoformat() == "2024-01-31T10:00:00-05:00" and from_export
    assert rows.mapper.event({**request, "expected_datetime": "2024-01-09T10:00:00-05:00"})[0].due_at.isoformat() \
        == "2024-01-09T10:00:00-05:00"


def test_generated_cases_of_such_a_metric_carry_their_due_time_and_are_valid():
    from datetime import date

    from shared.core.catalog import load_catalog
    from shared.dev.generator import generate

    catalog = load_catalog("philadelphia.yaml")
    events = list(generate(catalog, 3, 0, date(2024, 3, 11)))
    lights = [e for e in events if e["metric"] == "street-lights-on-time"]
    assert lights and all("due_at" in e for e in lights)
    for event in events:
        validate_event(event, catalog)  # none refused for a missing due_at


def test_a_row_whose_notice_is_past_any_promise_is_skipped_not_a_crash():
    catalog = parse_catalog(philadelphia(), "test")
    assert due_of(catalog, service_notice="9999999 Days") == NO_DUE_TIME
    assert due_of(catalog, service_notice="3000000 Business Days") == NO_DUE_TIME
