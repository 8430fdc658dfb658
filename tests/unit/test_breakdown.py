"""Who waits longer: a case-fed metric's on-time share by a case attribute (shared/core/cases.py).

Boston's signal-repair-on-time metric: a 24-hour SLA (elapsed time), trailing 7-day week. As of
Wednesday 22 July 2026 the week is 16-22 July (Boston time).
"""

from __future__ import annotations

from datetime import date

import pytest

from shared.core.cases import NOT_GIVEN, Group, breakdown, breakdown_refusal, check_case_query
from shared.core.catalog import CatalogError
from shared.core.contract import parse_event
from shared.core.folding import Ledger
from tests.helpers.catalogs import boston_with
from tests.helpers.statements import statements_run

METRIC = "signal-repair-on-time"
AS_OF = date(2026, 7, 22)


CATALOG = boston_with(METRIC, breakdowns=["neighborhood", "ward"], public_attributes=[])


def case(event_id, case_id, opened, closed=None, where=None, **extra):
    event = {"event_id": event_id, "type": "case", "metric": METRIC, "case_id": case_id,
             "opened_at": opened, "closed_at": closed, **extra}
    if where is not None:
        event["attributes"] = {"neighborhood": where}
    return event


def ledger_of(*events, catalog=CATALOG):
    ledger = Ledger(catalog)
    for event in events:
        ledger.fold(parse_event(event))
    return ledger


def groups(ledger, as_of=AS_OF, window="week", by="neighborhood", catalog=CATALOG):
    return [(g.name, g.on_time, g.closed) for g in breakdown(ledger.cases.values(), catalog, METRIC, by, as_of, window)]


def test_a_case_closed_exactly_at_its_due_time_is_on_time_in_its_group():
    ledger = ledger_of(case("e1", "c1", "2026-07-20T12:00:00Z", "2026-07-21T12:00:00Z", "Roxbury"),
                       case("e2", "c2", "2026-07-20T12:00:00Z", "2026-07-21T12:00:01Z", "Roxbury"))
    assert groups(ledger) == [("Roxbury", 1, 2)]


def test_a_case_closed_outside_the_window_is_not_counted():
    ledger = ledger_of(
        # Closed 15 July 23:30 Boston time (16 July 03:30 UTC): the day before the week.
        case("e1", "c1", "2026-07-15T12:00:00Z", "2026-07-16T03:30:00Z", "Roxbury"),
        # Closed 23 July 00:30 Boston time: after the as-of day (open then).
        case("e2", "c2", "2026-07-22T12:00:00Z", "2026-07-23T04:30:00Z", "Roxbury"),
        # Closed 16 July 00:30 Boston time: the week's first day.
        case("e3", "c3", "2026-07-15T12:00:00Z", "2026-07-16T04:30:00Z", "Dorchester"),
    )
    assert groups(ledger) == [("Dorchester", 1, 1)]
    # A day later the week is 17-23 July: c2 counts, c3 has left.
    assert groups(ledger, as_of=date(2026, 7, 23)) == [("Roxbury", 1, 1)]


def test_a_reopened_case_is_not_counted_while_open():
    closed = case("e1", "c1", "2026-07-20T12:00:00Z", "2026-07-21T10:00:00Z", "Roxbury")
    reopened = case("e2", "c1", "2026-07-20T12:00:00Z", None, "Roxbury")
    assert groups(ledger_of(closed)) == [("Roxbury", 1, 1)]
    assert groups(ledger_of(closed, reopened)) == []
    closed_again = case("e3", "c1", "2026-07-20T12:00:00Z", "2026-07-22T10:00:00Z", "Roxbury")
    assert groups(ledger_of(closed, reopened, closed_again)) == [("Roxbury", 0, 1)]


def test_worst_first_ties_by_name_and_cases_without_the_attribute_in_their_own_group():
    ledger = ledger_of(
        case("e1", "c1", "2026-07-20T12:00:00Z", "2026-07-20T13:00:00Z", "South End"),
        case("e2", "c2", "2026-07-20T12:00:00Z", "2026-07-22T13:00:00Z", "South End"),  # late
        case("e3", "c3", "2026-07-20T12:00:00Z", "2026-07-22T13:00:00Z", "Roxbury"),  # late
        case("e4", "c4", "2026-07-20T12:00:00Z", "2026-07-22T13:00:00Z", "Allston"),  # late
        case("e5", "c5", "2026-07-20T12:00:00Z", "2026-07-20T13:00:00Z", "Dorchester"),
        case("e6", "c6", "2026-07-20T12:00:00Z", "2026-07-20T13:00:00Z"),  # no attributes at all
        case("e7", "c7", "2026-07-20T12:00:00Z", "2026-07-22T13:00:00Z", "  "),  # blank: not given, late
        case("e8", "c8", "2026-07-20T12:00:00Z", "2026-07-20T13:00:00Z", metric="streetlight-on-time"),
    )
    assert groups(ledger) == [("Allston", 0, 1), ("Roxbury", 0, 1), (NOT_GIVEN, 1, 2), ("South End", 1, 2),
                              ("Dorchester", 1, 1)]
    # The groups add up to the window's score.
    week = ledger.scoreboard(AS_OF).metrics[METRIC]["week"]
    found = breakdown(ledger.cases.values(), CATALOG, METRIC, "neighborhood", AS_OF)
    assert (sum(g.on_time for g in found), sum(g.closed for g in found)) == (week.numerator, week.denominator)
    assert Group("Roxbury", 1, 4).as_dict() == {"group": "Roxbury", "numerator": 1, "denominator": 4, "share": 0.25}


def test_a_second_breakdown_attribute_and_the_case_keeps_groups_but_lists_no_private_attribute():
    ledger = ledger_of(case("e1", "c1", "2026-07-20T12:00:00Z", "2026-07-20T13:00:00Z",
                            attributes={"ward": "Ward 13", "caller": "Jane Doe"}))
    kept = next(iter(ledger.cases.values()))
    assert kept.attributes == ()  # nothing public: a case list shows none of them
    assert kept.groups == (None, "Ward 13")
    assert groups(ledger, by="ward") == [("Ward 13", 1, 1)]
    assert groups(ledger, by="neighborhood") == [(NOT_GIVEN, 1, 1)]


def test_the_window_chooses_the_cases():
    ledger = ledger_of(case("e1", "c1", "2026-07-01T12:00:00Z", "2026-07-01T13:00:00Z", "Roxbury"),
                       case("e2", "c2", "2026-06-29T12:00:00Z", "2026-06-29T13:00:00Z", "Roxbury"))
    assert groups(ledger, window="month") == [("Roxbury", 2, 2)]  # trailing 30 days: 23 June - 22 July
    assert groups(ledger, window="week") == []


def test_refusals_name_the_field():
    with pytest.raises(ValueError, match="metric: no metric 'nope' in the catalog"):
        breakdown([], CATALOG, "nope", "neighborhood", AS_OF)
    with pytest.raises(ValueError, match=r"by: 'caller' is not one of signal-repair-on-time's breakdowns "
                                         r"in the catalog \(neighborhood, ward\)"):
        breakdown([], CATALOG, METRIC, "caller", AS_OF)
    with pytest.raises(ValueError, match="window: 'year' is not one of the catalog's windows"):
        breakdown([], CATALOG, METRIC, "neighborhood", AS_OF, "year")


def test_one_refusal_for_every_reader_and_it_asks_the_cases_nothing():
    """The core, `cityscore breakdown` and the read API give breakdown_refusal's words; a question
    the catalog cannot answer is refused before any case is read."""
    def never_read():
        raise AssertionError("the cases were read")
        yield
    with pytest.raises(ValueError, match="by: 'caller' is not one of"):
        breakdown(never_read(), CATALOG, METRIC, "caller", AS_OF)
    with pytest.raises(ValueError, match="window: 'year' is not one of the catalog's windows"):
        check_case_query(CATALOG, METRIC, "year", status="late")
    with pytest.raises(ValueError, match="status: 'closed' is not one of late, on_time, open, overdue"):
        check_case_query(CATALOG, METRIC, "week", status="closed")
    check_case_query(CATALOG, METRIC, "week", status="late")  # a good question: no refusal
    check_case_query(CATALOG, METRIC, "week", by="ward")
    metric = CATALOG.metric(METRIC)
    assert breakdown_refusal(metric, "ward") is None
    assert breakdown_refusal(metric, None) == ("required: one of signal-repair-on-time's breakdowns in the "
                                               "catalog (neighborhood, ward)")
    bare = boston_with(METRIC, breakdowns=[])
    assert breakdown_refusal(bare.metric(METRIC), "ward") == (
        "'ward' is not one of signal-repair-on-time's breakdowns in the catalog (none: the catalog names no "
        "breakdowns for it)")
    with pytest.raises(ValueError, match=r"\(none: the catalog names no breakdowns for it\)"):
        breakdown([], bare, METRIC, "ward", AS_OF)
    with pytest.raises(ValueError, match=r"by: required: one of signal-repair-on-time's breakdowns"):
        breakdown([], CATALOG, METRIC, None, AS_OF)


def test_the_reader_refuses_a_question_before_it_reads_a_case(tmp_path):
    """ScoreReader.breakdown, case_lines and case_page refuse a bad attribute, status or window
    without a statement to the database."""
    from shared.store.engine import make_engine, migrate
    from shared.store.score_reader import ScoreReader

    engine = make_engine(f"sqlite:///{tmp_path / 'scores.db'}")
    migrate(engine)
    reader = ScoreReader(engine, CATALOG)
    with statements_run(engine) as statements:
        with pytest.raises(ValueError, match="by: 'caller' is not one of"):
            reader.breakdown(METRIC, "caller", AS_OF)
        with pytest.raises(ValueError, match="window: 'year' is not one of"):
            reader.breakdown(METRIC, "ward", AS_OF, "year")
        with pytest.raises(ValueError, match="status: 'closed' is not one of"):
            reader.case_lines(METRIC, AS_OF, "closed")
        with pytest.raises(ValueError, match="window: 'year' is not one of"):
            reader.case_page(METRIC, AS_OF, "overdue", "year")
    engine.dispose()
    assert statements == []


def test_breakdowns_are_refused_where_they_mean_nothing():
    with pytest.raises(CatalogError, match=r"metrics\[\d+\] \(shootings\): breakdowns only applies to feed 'cases'"):
        boston_with("shootings", breakdowns=["neighborhood"])
    with pytest.raises(CatalogError, match=r"\(signal-repair-on-time\): breakdowns: name each attribute once"):
        boston_with(METRIC, breakdowns=["neighborhood", "neighborhood"])


# -- Boston 311: the export's neighbourhood, carried through to a breakdown -----------------

def test_the_boston_311_import_carries_the_neighbourhood_to_a_breakdown():
    import io
    from pathlib import Path

    from services.cli.offline import fold_lines
    from shared.core.catalog import load_catalog
    from shared.feeds.boston311 import convert

    boston = load_catalog()
    assert all(metric.breakdowns == ("neighborhood",) for metric in boston.metrics if metric.feed.value == "cases")
    sample = (Path(__file__).resolve().parents[1] / "data" / "boston311_new.csv").read_bytes()
    rows = sample.decode().splitlines()
    header = rows[0].split(",")
    at = header.index("neighborhood")
    fields = rows[4].split(",")  # 101002700004, Roxbury: closed on time
    assert fields[0] == "101002700004" and fields[at] == "Roxbury"
    fields[at] = " "  # a row without a neighbourhood: its case goes to "(not given)"
    rows[4] = ",".join(fields)
    out = io.BytesIO()
    convert(io.BytesIO(("\n".join(rows) + "\n").encode()), out, boston)
    ledger = Ledger(boston)
    assert fold_lines(out.getvalue().splitlines(), ledger).folded == 7
    # Pothole cases closed 2-4 January 2019: the week as of Friday 4 January.
    found = breakdown(ledger.cases.values(), boston, "pothole-on-time", "neighborhood", date(2019, 1, 4))
    assert [(g.name, g.on_time, g.closed) for g in found] == [
        ("Jamaica Plain", 0, 1),  # closed a day after its due time
        (NOT_GIVEN, 1, 1),
        ("Dorchester", 1, 1),
        ("South Boston / South Boston Waterfront", 1, 1),  # closed exactly at its due time
    ]
