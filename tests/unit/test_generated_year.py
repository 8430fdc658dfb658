"""The fast scoring core against an independent, naive reference (tests/oracle/reference_scoring.py).

A year of generated Boston events is folded into the project's Ledger and scored as
of several dates; every metric, window, score, numerator and denominator must match
what the reference computes straight from docs/scoring.md. Smaller hand-written cases
pin the rules a generated year rarely exercises: 29 February in trend baselines,
the "first day with data" rule, and SLA due times across DST and holidays.

No servers needed. The generated year takes ~20 s to build (module-scoped fixture).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from shared.core.catalog import load_catalog, parse_catalog
from shared.core.contract import parse_event
from shared.core.folding import Ledger
from shared.dev.generator import generate

from tests.helpers.boards import board_differences, same
from tests.oracle.reference_scoring import Reference

CATALOG_PATH = Path(__file__).resolve().parents[2] / "shared" / "catalogs" / "boston.yaml"
WINDOWS = ("day", "week", "month", "quarter")
FIELDS = ("score", "numerator", "denominator")

END = date(2026, 6, 30)
DAYS = 365
SEED = 20260630


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(CATALOG_PATH)


@pytest.fixture(scope="module")
def raw_catalog():
    return yaml.safe_load(CATALOG_PATH.read_text(encoding="utf-8"))


# Both sides score in Python from the same totals, so they agree far closer than the store's SQL sums do.
ABS_TOL = 1e-12


def mismatches(ledger_scores: dict, reference_scores: dict) -> list[str]:
    """Every field where the Ledger's scoreboard and the reference differ, described (reference != ledger)."""
    assert set(ledger_scores["metrics"]) == set(reference_scores["metrics"])
    for scores in (ledger_scores, reference_scores):
        assert set(scores["cityscore"]) == set(WINDOWS)
        assert all(set(WINDOWS) <= set(windows) for windows in scores["metrics"].values())
    return [f"as of {reference_scores['as_of']} {difference} (reference != ledger)"
            for difference in board_differences(reference_scores, ledger_scores, abs_tol=ABS_TOL)]


def both(events: list[dict], catalog, raw_catalog, as_of: date) -> tuple[dict, dict]:
    ledger = Ledger(catalog)
    for event in events:
        ledger.fold(parse_event(event))
    return ledger.scoreboard(as_of).as_dict(catalog), Reference(events, raw_catalog).scores(as_of)


# ------------------------------------------------------------------ a generated year


class Year:
    def __init__(self, catalog, raw_catalog):
        self.catalog = catalog
        self.events = list(generate(catalog, DAYS, SEED, END))
        self.ledger = Ledger(catalog)
        for event in self.events:
            self.ledger.fold(parse_event(event))
        self.reference = Reference(self.events, raw_catalog)
        trend_ids = {m["id"] for m in raw_catalog["metrics"] if m["kind"].startswith("trend_")}
        self.first_trend_day = min(date.fromisoformat(e["date"]) for e in self.events
                                   if e["type"] == "tally" and e["metric"] in trend_ids)

    def compare(self, as_of: date) -> tuple[dict, dict, list[str]]:
        ledger_scores = self.ledger.scoreboard(as_of).as_dict(self.catalog)
        reference_scores = self.reference.scores(as_of)
        return ledger_scores, reference_scores, mismatches(ledger_scores, reference_scores)


@pytest.fixture(scope="module")
def year(catalog, raw_catalog):
    return Year(catalog, raw_catalog)


AS_OF = {
    "end": END,
    "100-days-before": END - timedelta(days=100),  # 2026-03-22
    "after-spring-dst": date(2026, 3, 9),  # clocks went forward on Sunday 8 March 2026
    "after-fall-dst": date(2025, 11, 3),  # clocks went back on Sunday 2 November 2025
    # The week's window lies next to 28 February; moved back two years it lands in
    # 2024, whose 29 February belongs to no moved date.
    "next-to-28-feb": date(2026, 3, 1),
    "quarter-spans-new-year": date(2026, 1, 15),
}


@pytest.mark.parametrize("as_of", list(AS_OF.values()), ids=list(AS_OF))
def test_ledger_matches_reference(year, as_of):
    ledger_scores, reference_scores, problems = year.compare(as_of)
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:40])
    week = [m["week"]["score"] for m in reference_scores["metrics"].values()]
    assert sum(score is not None for score in week) >= 20, "comparison is vacuous: too few week scores"
    quarter = [m["quarter"]["score"] for m in reference_scores["metrics"].values()]
    assert sum(score is not None for score in quarter) >= 22


def test_first_day_with_data_boundary(year):
    """Trend history starts on `first`: the week whose window, moved back three years,
    begins exactly on `first` counts three prior years; one day earlier, only two."""
    first = year.first_trend_day
    three_years_on = date(first.year + 3, first.month, first.day)
    on_boundary = three_years_on + timedelta(days=6)
    assert END - timedelta(days=DAYS - 1) <= on_boundary - timedelta(days=1) <= END
    bfd_weeks = []
    for as_of in (on_boundary, on_boundary - timedelta(days=1)):
        _, reference_scores, problems = year.compare(as_of)
        assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:40])
        bfd_weeks.append(reference_scores["metrics"]["bfd-incidents"]["week"])
    # Not vacuous: the trend scores exist on both sides of the boundary.
    assert all(week["score"] is not None for week in bfd_weeks)


def test_whole_year_non_vacuous(year):
    _, reference_scores, _ = year.compare(END)
    week = [m["week"]["score"] for m in reference_scores["metrics"].values()]
    assert sum(score is not None for score in week) >= 20
    assert all(reference_scores["cityscore"][w] is not None for w in WINDOWS)
    # Every feed is exercised: cases, thresholds, ratings, values, incidents, tallies.
    for metric in ("pothole-on-time", "311-call-center", "311-surveys", "ems-response-time",
                   "bfd-incidents", "library-users", "bps-attendance", "parks-maintenance-on-time"):
        assert reference_scores["metrics"][metric]["month"]["score"] is not None, metric


# ------------------------------------------- calendar windows and targets that changed


# Targets that changed during the generated year: on a Monday, on a Sunday that is a month's
# first day, and on a month's last day (a Saturday).
TARGET_CHANGES = {
    "pothole-on-time": [{"from": date(2016, 1, 1), "target": 0.8}, {"from": date(2026, 2, 23), "target": 0.85}],
    "ems-response-time": [{"from": date(2016, 1, 1), "target": 6.0}, {"from": date(2026, 3, 1), "target": 5.5}],
    "bps-attendance": [{"from": date(2016, 1, 1), "target": 0.95}, {"from": date(2026, 2, 28), "target": 0.9}],
}


class CalendarYear(Year):
    """The same generated year, scored with Boston's calendar windows (boston-calendar.yaml)
    and the target changes above, by the Ledger and by the reference."""

    def __init__(self, year: Year, raw_catalog: dict):
        calendar = yaml.safe_load((CATALOG_PATH.parent / "boston-calendar.yaml").read_text(encoding="utf-8"))
        raw = {**raw_catalog, "windows": calendar["windows"],
               "metrics": [{**m, "target": TARGET_CHANGES.get(m["id"], m.get("target"))} for m in
                           raw_catalog["metrics"]]}
        raw["metrics"] = [{k: v for k, v in m.items() if v is not None} for m in raw["metrics"]]
        self.catalog = parse_catalog(raw)
        self.events = year.events
        self.ledger = Ledger(self.catalog)
        for event in self.events:
            self.ledger.fold(parse_event(event))
        self.reference = Reference(self.events, raw)


@pytest.fixture(scope="module")
def calendar_year(year, raw_catalog):
    return CalendarYear(year, raw_catalog)


CALENDAR_AS_OF = {
    "end-tuesday-month-end": END,
    "saturday-28-feb": date(2026, 2, 28),  # February complete (28 days); baselines hold 29 Feb 2024
    "sunday-1-mar": date(2026, 3, 1),  # a Sunday and a month's first day
    "monday-2-mar": date(2026, 3, 2),
    "monday-after-spring-dst": date(2026, 3, 9),  # the week of 2-8 March holds the 23-hour day
    "monday-after-fall-dst": date(2025, 11, 3),
    "year-end": date(2025, 12, 31),
    "new-year": date(2026, 1, 1),
    "sunday-mid-month": date(2026, 5, 17),
}


@pytest.mark.parametrize("as_of", list(CALENDAR_AS_OF.values()), ids=list(CALENDAR_AS_OF))
def test_ledger_matches_reference_with_calendar_windows_and_target_changes(calendar_year, as_of):
    ledger_scores, reference_scores, problems = calendar_year.compare(as_of)
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:40])
    week = [m["week"]["score"] for m in reference_scores["metrics"].values()]
    assert sum(score is not None for score in week) >= 20, "comparison is vacuous: too few week scores"
    month = [m["month"]["score"] for m in reference_scores["metrics"].values()]
    assert sum(score is not None for score in month) >= 20


def test_the_calendar_comparison_sees_each_target_change(calendar_year):
    """Not vacuous: the reference scores pothole's week with 0.8 as of Sunday 22 February and
    0.85 as of Sunday 1 March, and both sides agree on those days."""
    shown = []
    for as_of in (date(2026, 2, 22), date(2026, 3, 1)):
        _, reference_scores, problems = calendar_year.compare(as_of)
        assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:40])
        week = reference_scores["metrics"]["pothole-on-time"]["week"]
        shown.append((week["end"], week["target"], week["score"] is not None))
    assert shown == [("2026-02-22", 0.8, True), ("2026-03-01", 0.85, True)]


# ------------------------------------------------------------ 29 February, by hand


def tally(event_id, metric, day, count):
    return {"event_id": event_id, "type": "tally", "metric": metric, "date": day, "count": count}


def incident(event_id, at, count=1, metric="homicides"):
    return {"event_id": event_id, "type": "incident", "metric": metric, "occurred_at": at, "count": count}


LEAP_EVENTS = [
    # library-users (trend_higher_better, tallies). First day with data: 2026-02-25.
    tally("lib-2026-02-25", "library-users", "2026-02-25", 1000),
    tally("lib-2026-02-28", "library-users", "2026-02-28", 200),
    tally("lib-2026-03-01", "library-users", "2026-03-01", 30),
    tally("lib-2027-02-25", "library-users", "2027-02-25", 1),
    tally("lib-2027-02-28", "library-users", "2027-02-28", 10),
    tally("lib-2027-03-01-a", "library-users", "2027-03-01", 999),  # replaced below
    tally("lib-2027-03-02", "library-users", "2027-03-02", 1000),
    tally("lib-2028-02-25", "library-users", "2028-02-25", 7),
    tally("lib-2028-02-29", "library-users", "2028-02-29", 70),
    tally("lib-2028-03-02", "library-users", "2028-03-02", 140),
    tally("lib-2027-03-01-b", "library-users", "2027-03-01", 100),  # the later tally wins
    tally("lib-2029-02-28", "library-users", "2029-02-28", 59),
    # homicides (trend_lower_better, incidents). First day with data: 2026-02-27.
    incident("hom-1", "2026-02-27T12:00:00-05:00"),
    incident("hom-2", "2027-02-28T23:59:00-05:00", count=2),
    incident("hom-3", "2027-03-01T00:30:00-05:00", count=4),
    incident("hom-4", "2028-02-29T23:30:00-05:00"),  # 04:30 UTC on 1 March: still a 29 Feb homicide
    incident("hom-5", "2028-03-01T02:00:00+00:00", count=2),  # 21:00 on 29 Feb in Boston
    incident("hom-5", "2028-03-01T02:00:00+00:00", count=2),  # a duplicate: ignored
]


def metric_windows(scores, metric):
    return {w: scores["metrics"][metric][w] for w in WINDOWS}


def close_to(entry, score, numerator, denominator):
    return (same(entry["score"], score, ABS_TOL) and same(entry["numerator"], numerator, ABS_TOL)
            and same(entry["denominator"], denominator, ABS_TOL))


# (as_of, metric, window) → (score, numerator, denominator) worked by hand from docs/scoring.md §3.
LEAP_EXPECTED = {
    # Week 2028-02-25…03-02 holds 29 Feb; moved back it becomes 28 Feb, so 2027-02-28
    # counts twice. 2027: 1 + 10 + 10 + 100 + 1000 = 1121; 2026: 1000 + 200 + 200 + 30 =
    # 1430; 2025 does not count (2025-02-25 is before the first day, 2026-02-25).
    # Historical mean 2551 / 14; current mean (7 + 70 + 140) / 7 = 31.
    (date(2028, 3, 2), "library-users", "week"): (31 / (2551 / 14), 31, 2551 / 14),
    # Day: 140 against the week's historical mean.
    (date(2028, 3, 2), "library-users", "day"): (140 / (2551 / 14), 140, 2551 / 14),
    # Week 2028-02-24…03-01: moved to 2026 its earliest date is 2026-02-24, before the
    # first day, so only 2027 counts: 1 + 10 + 10 + 100 = 121 over 7 days.
    (date(2028, 3, 1), "library-users", "week"): ((77 / 7) / (121 / 7), 77 / 7, 121 / 7),
    (date(2028, 3, 1), "library-users", "day"): (0.0, 0, 121 / 7),
    # Current year not leap, prior year leap: week 2029-02-23…03-01 moved to 2028 skips
    # 29 Feb (70 users): 2028 gives 7, 2027 gives 1 + 10 + 100 = 111; 2026's moved window
    # starts 2026-02-23, before the first day. (59 / 7) / (118 / 14) = 1.
    (date(2029, 3, 1), "library-users", "week"): (1.0, 59 / 7, 118 / 14),
    # homicides, week 2028-02-24…03-01: current 3 on 29 Feb → 3 / 7; 2027 gives
    # 2 + 2 (28 Feb twice) + 4 = 8 → 8 / 7; 2026's moved window starts before 2026-02-27.
    (date(2028, 3, 1), "homicides", "week"): (8 / 3, 8 / 7, 3 / 7),
    (date(2028, 3, 1), "homicides", "day"): (None, None, None),  # no homicide that day
    # Week 2028-02-23…29: 2027 gives 2 + 2 = 4 → 4 / 7 against 3 / 7; day: 3 homicides.
    (date(2028, 2, 29), "homicides", "week"): (4 / 3, 4 / 7, 3 / 7),
    (date(2028, 2, 29), "homicides", "day"): ((4 / 7) / 3, 4 / 7, 3),
}


def test_reference_follows_the_29_february_rules(raw_catalog):
    """The reference itself, against numbers worked out by hand."""
    reference = Reference(LEAP_EVENTS, raw_catalog)
    for (as_of, metric, window), expected in LEAP_EXPECTED.items():
        entry = reference.scores(as_of)["metrics"][metric][window]
        assert close_to(entry, *expected), (as_of, metric, window, entry, expected)


@pytest.mark.parametrize("as_of", sorted({key[0] for key in LEAP_EXPECTED}), ids=str)
def test_ledger_matches_reference_around_29_february(catalog, raw_catalog, as_of):
    ledger_scores, reference_scores = both(LEAP_EVENTS, catalog, raw_catalog, as_of)
    problems = mismatches(ledger_scores, reference_scores)
    assert not problems, "\n".join(problems)
    for (day, metric, window), expected in LEAP_EXPECTED.items():
        if day == as_of:
            assert close_to(ledger_scores["metrics"][metric][window], *expected), (metric, window)


# ------------------------------------------------------- SLA due times, by hand


def case(event_id, metric, opened, closed, **extra):
    return {"event_id": event_id, "type": "case", "metric": metric, "case_id": event_id,
            "opened_at": opened, "closed_at": closed, **extra}


SLA_CASES = [
    # docs/scoring.md §5 worked example: opened on a holiday at 00:25, 10 business days →
    # due Friday 16 January 2015 08:30. Exactly at due is on time; a second later is not.
    (case("sl-1", "streetlight-on-time", "2015-01-01T00:25:23-05:00", "2015-01-16T08:30:00-05:00"), True),
    (case("sl-2", "streetlight-on-time", "2015-01-01T00:25:23-05:00", "2015-01-16T08:30:01-05:00"), False),
    # 24 hours is elapsed time: opened the day before spring-forward at noon EST, due
    # 2026-03-08 17:00 UTC (13:00 EDT); a 12:30 EDT close is on time.
    (case("sig-1", "signal-repair-on-time", "2026-03-07T12:00:00-05:00", "2026-03-08T12:30:00-04:00"), True),
    (case("sig-2", "signal-repair-on-time", "2026-03-07T12:00:00-05:00", "2026-03-08T13:00:01-04:00"), False),
    # 30 calendar days: same local clock time, across DST: due 2026-03-22 10:00 EDT.
    (case("perm-1", "permit-reviews-on-time", "2026-02-20T10:00:00-05:00", "2026-03-22T09:59:00-04:00"), True),
    (case("perm-2", "permit-reviews-on-time", "2026-02-20T10:00:00-05:00", "2026-03-22T10:30:00-04:00"), False),
    # Parks: lighting 7 business days (due Wed 10 June 09:00), others 5 (due Mon 8 June).
    (case("park-1", "parks-maintenance-on-time", "2026-06-01T09:00:00-04:00", "2026-06-09T09:00:00-04:00",
          attributes={"subtype": "lighting"}), True),
    (case("park-2", "parks-maintenance-on-time", "2026-06-01T09:00:00-04:00", "2026-06-09T09:00:00-04:00",
          attributes={"subtype": "benches"}), False),
    # Opened before opening time on a business day: the clock starts at 08:30 that day.
    (case("pot-1", "pothole-on-time", "2026-06-02T07:00:00-04:00", "2026-06-03T08:30:00-04:00"), True),
    (case("pot-2", "pothole-on-time", "2026-06-02T07:00:00-04:00", "2026-06-03T08:31:00-04:00"), False),
    # Juneteenth (Friday 19 June 2026) is a holiday: 1 business day from Thursday 16:00
    # is Monday 16:00.
    (case("trash-1", "missed-trash-on-time", "2026-06-18T16:00:00-04:00", "2026-06-22T15:59:00-04:00"), True),
    # Patriots' Day (Monday 20 April 2026, a Massachusetts holiday): 2 business days from
    # Friday 10:00 is Wednesday 10:00.
    (case("code-1", "code-enforcement-on-time", "2026-04-17T10:00:00-04:00", "2026-04-22T09:00:00-04:00"), True),
    # The event's own due_at wins over the catalog's SLA.
    (case("sign-1", "sign-installation-on-time", "2026-05-01T10:00:00-04:00", "2026-05-05T10:00:00-04:00",
          due_at="2026-05-04T10:00:00-04:00"), False),
]


def test_sla_due_times(catalog, raw_catalog):
    events = [event for event, _ in SLA_CASES]
    # A reopened case no longer counts; a later correction replaces the earlier close.
    events.append(case("tree-1", "tree-maintenance-on-time", "2026-05-01T10:00:00-04:00", "2026-05-02T10:00:00-04:00"))
    events.append({**case("tree-1", "tree-maintenance-on-time", "2026-05-01T10:00:00-04:00", None),
                   "event_id": "tree-1-reopened"})
    reference = Reference(events, raw_catalog)
    ledger = Ledger(catalog)
    for event in events:
        ledger.fold(parse_event(event))
    closing_days = sorted({date.fromisoformat(e["closed_at"][:10]) for e in events if e["closed_at"]}
                          | {date(2026, 5, 2)})
    for as_of in closing_days:
        reference_scores = reference.scores(as_of)
        problems = mismatches(ledger.scoreboard(as_of).as_dict(catalog), reference_scores)
        assert not problems, "\n".join(problems)
    # The reference's own verdicts, case by case, against the worked expectations.
    for event, on_time in SLA_CASES:
        scores = Reference([event], raw_catalog).scores(date.fromisoformat(event["closed_at"][:10]))
        day = scores["metrics"][event["metric"]]["day"]
        assert (day["numerator"], day["denominator"]) == (1 if on_time else 0, 1), event["event_id"]
    assert reference.scores(date(2026, 5, 2))["metrics"]["tree-maintenance-on-time"]["day"]["score"] is None
