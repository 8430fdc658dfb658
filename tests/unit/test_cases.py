"""The cases behind a score, the overdue backlog and the projected score (shared/core/cases.py).

Boston's signal-repair-on-time metric: a 24-hour SLA (elapsed time), target 0.8, trailing
7-day week. As of Wednesday 22 July 2026, the as-of day ends at 2026-07-23 00:00 Boston time,
04:00 UTC.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from shared.core.cases import (
    Backlog, backlogs, case_fields, cases_behind, end_of_day, projected, with_case_fields,
)
from shared.core.catalog import CatalogError, load_catalog
from shared.core.contract import parse_event
from shared.core.folding import Ledger
from tests.helpers.catalogs import boston_with
from shared.core.scoring import NULL, WindowScore

BOSTON = load_catalog()
METRIC = "signal-repair-on-time"
AS_OF = date(2026, 7, 22)


def case(event_id, case_id, opened, closed=None, metric=METRIC, **extra):
    return {"event_id": event_id, "type": "case", "metric": metric, "case_id": case_id,
            "opened_at": opened, "closed_at": closed, **extra}


def ledger_of(*events, catalog=BOSTON):
    ledger = Ledger(catalog)
    for event in events:
        ledger.fold(parse_event(event))
    return ledger


def listed(ledger, status, as_of=AS_OF, window="week", catalog=BOSTON):
    return [(line.case.case_id, line.hours_late)
            for line in cases_behind(ledger.cases.values(), catalog, METRIC, as_of, status, window)]


def test_the_as_of_day_ends_at_local_midnight():
    assert end_of_day(AS_OF, BOSTON) == datetime(2026, 7, 23, 4, 0, tzinfo=timezone.utc)


def test_a_case_closed_exactly_at_its_due_time_is_on_time():
    ledger = ledger_of(case("e1", "c1", "2026-07-20T12:00:00Z", "2026-07-21T12:00:00Z"))  # 24 h SLA
    assert listed(ledger, "on_time") == [("c1", 0.0)]
    assert listed(ledger, "late") == []
    assert ledger.scoreboard(AS_OF).metrics[METRIC]["week"].numerator == 1


def test_a_case_closed_a_minute_after_its_due_time_is_late_by_that_much():
    ledger = ledger_of(case("e1", "c1", "2026-07-20T12:00:00Z", "2026-07-21T13:30:00Z"))
    assert listed(ledger, "late") == [("c1", 1.5)]
    assert listed(ledger, "on_time") == []


def test_a_case_closed_after_the_as_of_day_is_still_open_then_and_overdue():
    # Due 21 July 12:00 UTC, closed 23 July 10:00 UTC: after the end of 22 July (04:00 UTC).
    ledger = ledger_of(case("e1", "c1", "2026-07-20T12:00:00Z", "2026-07-23T10:00:00Z"))
    assert listed(ledger, "late") == []
    assert listed(ledger, "overdue") == [("c1", 40.0)]  # 21 July 12:00 to 23 July 04:00 UTC
    assert backlogs(ledger.cases.values(), BOSTON, AS_OF)[METRIC] == Backlog(overdue=1, due_soon=0)
    # The next day it is closed, late, in that day's week.
    assert listed(ledger, "late", as_of=date(2026, 7, 23)) == [("c1", 46.0)]
    assert backlogs(ledger.cases.values(), BOSTON, date(2026, 7, 23))[METRIC] == Backlog(0, 0)


def test_a_case_opened_after_the_as_of_day_is_not_there_yet():
    ledger = ledger_of(case("e1", "c1", "2026-07-23T04:00:00Z"))
    assert listed(ledger, "open") == [] and listed(ledger, "overdue") == []
    assert backlogs(ledger.cases.values(), BOSTON, AS_OF)[METRIC] == Backlog(0, 0)


def test_a_reopened_case_is_open_again_and_no_longer_counted():
    closed = case("e1", "c1", "2026-07-20T12:00:00Z", "2026-07-21T10:00:00Z")
    reopened = case("e2", "c1", "2026-07-20T12:00:00Z")  # sent again open, same case_id
    ledger = ledger_of(closed, reopened)
    assert listed(ledger, "on_time") == []
    assert listed(ledger, "overdue") == [("c1", 40.0)]
    assert ledger.scoreboard(AS_OF).metrics[METRIC]["week"] == NULL
    assert len(ledger.cases) == 1


def test_a_case_without_a_due_time_is_due_when_the_catalog_sla_says():
    # Opened 22 July 10:00 UTC, no due_at: 24 hours later, 23 July 10:00 UTC, within a day of the
    # end of the as-of day; its twin carrying its own due_at (26 July) is neither.
    ledger = ledger_of(case("e1", "c1", "2026-07-22T10:00:00Z"),
                       case("e2", "c2", "2026-07-22T10:00:00Z", due_at="2026-07-26T10:00:00Z"))
    due = {c.case_id: c.due_at for c in ledger.cases.values()}
    assert due["c1"] == datetime(2026, 7, 23, 10, 0, tzinfo=timezone.utc)
    assert due["c2"] == datetime(2026, 7, 26, 10, 0, tzinfo=timezone.utc)
    assert backlogs(ledger.cases.values(), BOSTON, AS_OF)[METRIC] == Backlog(overdue=0, due_soon=1)
    assert [c for c, _ in listed(ledger, "open")] == ["c2", "c1"]  # opened together: by case id, newest first


def test_a_business_day_sla_decides_a_due_time_too():
    # Pothole: 1 business day. Opened Friday 17 July 2026 16:00 Boston: due Monday 20 July 16:00.
    ledger = ledger_of(case("e1", "p1", "2026-07-17T20:00:00Z", metric="pothole-on-time"))
    assert next(iter(ledger.cases.values())).due_at == datetime(2026, 7, 20, 20, 0, tzinfo=timezone.utc)


def test_due_soon_is_the_next_24_hours_and_overdue_what_is_past():
    ledger = ledger_of(
        case("e1", "due-at-midnight", "2026-07-22T03:00:00Z", due_at="2026-07-23T04:00:00Z"),  # not past yet
        case("e2", "due-in-a-day", "2026-07-22T03:00:00Z", due_at="2026-07-24T03:59:00Z"),
        case("e3", "due-later", "2026-07-22T03:00:00Z", due_at="2026-07-24T04:00:00Z"),
        case("e4", "overdue", "2026-07-20T03:00:00Z", due_at="2026-07-23T03:59:00Z"),
    )
    assert backlogs(ledger.cases.values(), BOSTON, AS_OF)[METRIC] == Backlog(overdue=1, due_soon=2)
    assert [c for c, _ in listed(ledger, "overdue")] == ["overdue"]
    assert listed(ledger, "open") == [("due-later", 0.0), ("due-in-a-day", 0.0), ("due-at-midnight", 0.0)]


def test_lists_are_newest_first_and_keep_to_the_window():
    ledger = ledger_of(
        case("e1", "old", "2026-07-10T12:00:00Z", "2026-07-14T12:00:00Z"),  # closed before the week
        case("e2", "a", "2026-07-18T12:00:00Z", "2026-07-20T12:00:00Z"),
        case("e3", "b", "2026-07-19T12:00:00Z", "2026-07-22T12:00:00Z"),
    )
    assert [c for c, _ in listed(ledger, "late")] == ["b", "a"]
    assert [c for c, _ in listed(ledger, "late", window="quarter")] == ["b", "a", "old"]
    assert [c for c, _ in listed(ledger, "late", window="day")] == ["b"]


def test_a_withdrawn_case_leaves_the_lists():
    ledger = ledger_of(case("e1", "c1", "2026-07-20T12:00:00Z"),
                       {"event_id": "w1", "type": "withdrawal", "metric": METRIC, "withdraws": "e1"})
    assert ledger.cases == {}
    assert listed(ledger, "overdue") == []


def test_the_same_case_id_in_two_departments_is_two_cases():
    ledger = ledger_of(case("e1", "c1", "2026-07-20T12:00:00Z", department="transportation"),
                       case("e1", "c1", "2026-07-20T12:00:00Z", department="public-works"))
    assert backlogs(ledger.cases.values(), BOSTON, AS_OF)[METRIC].overdue == 2


def test_projected_closes_every_overdue_case_late_now():
    events = [case(f"e{n}", f"on{n}", "2026-07-20T12:00:00Z", "2026-07-21T00:00:00Z") for n in range(3)]
    events.append(case("l1", "late1", "2026-07-18T12:00:00Z", "2026-07-21T00:00:00Z"))
    events += [case(f"o{n}", f"open{n}", "2026-07-20T12:00:00Z") for n in range(2)]
    ledger = ledger_of(*events)
    board = ledger.scoreboard(AS_OF)
    assert board.metrics[METRIC]["week"] == WindowScore(3 / 4 / 0.8, 3, 4)
    fields = case_fields(board, BOSTON, ledger.cases.values())
    assert fields[METRIC] == {"open": {"overdue": 2, "due_soon": 0},
                              "projected": {"week": {"score": 3 / 6 / 0.8, "numerator": 3, "denominator": 6}}}
    # Every case-fed metric shows its backlog, no other metric does.
    assert set(fields) == {m.id for m in BOSTON.metrics if m.feed.value == "cases"}
    assert fields["pothole-on-time"] == {"open": {"overdue": 0, "due_soon": 0},
                                         "projected": {"week": {"score": None, "numerator": None,
                                                                "denominator": None}}}
    shown = with_case_fields(board.as_dict(BOSTON), fields)
    assert shown["metrics"][METRIC]["open"] == {"overdue": 2, "due_soon": 0}
    assert "open" not in shown["metrics"]["shootings"]


def test_projected_with_nothing_closed_is_zero_of_the_overdue():
    metric = BOSTON.by_id[METRIC]
    assert projected(metric, NULL, 3, AS_OF) == WindowScore(0.0, 0.0, 3.0)


def test_projected_uses_the_target_of_the_windows_last_day_and_the_min_denominator():
    catalog = boston_with(METRIC, target=[{"from": "2020-01-01", "target": 0.8}, {"from": "2026-07-22", "target": 0.5}],
                          min_denominator=10)
    metric = catalog.by_id[METRIC]
    assert projected(metric, WindowScore(None, 4, 8, True), 1, AS_OF) == WindowScore(None, 4, 9, True)
    assert projected(metric, WindowScore(None, 4, 8, True), 2, AS_OF) == WindowScore(4 / 10 / 0.5, 4, 10)
    assert projected(metric, WindowScore(None, 4, 8, True), 2, date(2026, 7, 21)) == WindowScore(4 / 10 / 0.8, 4, 10)


def test_projected_applies_only_to_pooled_ratios():
    catalog = boston_with(METRIC, kind="mean_daily_ratio")
    assert projected(catalog.by_id[METRIC], WindowScore(0.5, 0.5, 0.8), 3, AS_OF) is None


def test_a_list_shows_only_the_public_attributes():
    catalog = boston_with(METRIC, public_attributes=["neighborhood"])
    ledger = ledger_of(case("e1", "c1", "2026-07-20T12:00:00Z",
                            attributes={"neighborhood": "Dorchester", "caller": "Jane Doe"}), catalog=catalog)
    assert next(iter(ledger.cases.values())).attributes == (("neighborhood", "Dorchester"),)
    hidden = ledger_of(case("e1", "c1", "2026-07-20T12:00:00Z", attributes={"neighborhood": "Dorchester"}))
    assert next(iter(hidden.cases.values())).attributes == ()


def test_public_attributes_are_refused_where_they_mean_nothing():
    with pytest.raises(CatalogError, match=r"metrics\[\d+\] \(shootings\): public_attributes only applies to feed 'cases'"):
        boston_with("shootings", public_attributes=["neighborhood"])
    with pytest.raises(CatalogError, match=r"\(signal-repair-on-time\): public_attributes: name each attribute once"):
        boston_with(METRIC, public_attributes=["neighborhood", "neighborhood"])


def test_unknown_status_and_window_are_refused_by_name():
    with pytest.raises(ValueError, match="status: 'closed' is not one of late, on_time, open, overdue"):
        cases_behind([], BOSTON, METRIC, AS_OF, "closed")
    with pytest.raises(ValueError, match="window: 'year' is not one of the catalog's windows"):
        cases_behind([], BOSTON, METRIC, AS_OF, "late", "year")


def test_the_oldest_overdue_cases_come_oldest_first_and_as_many_as_asked():
    from shared.core.cases import OVERDUE, oldest

    ledger = ledger_of(*(case(f"e{n}", f"C-{n}", f"2026-07-{10 + n:02d}T09:00:00-04:00") for n in range(5)))
    lines = cases_behind(ledger.cases.values(), BOSTON, METRIC, AS_OF, OVERDUE)
    assert [line.case.case_id for line in lines] == ["C-4", "C-3", "C-2", "C-1", "C-0"]  # lists: newest first
    assert [line.case.case_id for line in oldest(lines, 3)] == ["C-0", "C-1", "C-2"]
    assert [line.case.case_id for line in oldest(lines, 10)] == ["C-0", "C-1", "C-2", "C-3", "C-4"]
    assert oldest([], 3) == []
