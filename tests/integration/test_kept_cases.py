"""The scorer keeps the latest version of each case (table `cases`), so that the read API can list
the cases behind a score and count the backlog: the rows it keeps must be the offline command's
`Ledger.cases` for the same events, on PostgreSQL and on SQLite, and the reader's narrowing
queries must hand the pure core (shared/core/cases.py) every case it needs."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from shared.core.cases import LATE, ON_TIME, OPEN, OVERDUE, backlogs, breakdown, cases_behind
from shared.core.catalog import load_catalog
from shared.core.contract import parse_event
from shared.core.folding import Ledger
from shared.dev.generator import generate
from shared.store.engine import make_engine, migrate
from shared.store.score_reader import ScoreReader
from shared.store.score_writer import ScoreWriter
from tests.helpers.ingest import fresh_database
from tests.helpers.score_parts import fold_in_batches

CATALOG = load_catalog()
END = date(2026, 6, 30)


def events_with_changes() -> list[dict]:
    """Generated events, with cases reopened, withdrawn and sent again closed later."""
    rng = random.Random(16)
    events = list(generate(CATALOG, 30, 16, END))[-12000:]
    closed = [e for e in events if e["type"] == "case" and e.get("closed_at")]
    reopened = [{**case, "event_id": case["event_id"] + "-reopened", "closed_at": None}
                for case in rng.sample(closed, 30)]
    withdrawn = [{"event_id": f"w-{case['event_id']}", "type": "withdrawal", "metric": case["metric"],
                  "withdraws": case["event_id"]} for case in rng.sample(closed, 20)]
    return events + reopened + withdrawn


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        made = make_engine(f"sqlite:///{tmp_path / 'scores.db'}")
        migrate(made)
    else:
        made = fresh_database(request.getfixturevalue("database_url"))
    yield made
    made.dispose()


def test_the_kept_cases_are_the_ledgers_and_the_readers_queries_miss_none(engine):
    events = events_with_changes()
    fold_in_batches(engine, CATALOG, events, 700)
    ledger = Ledger(CATALOG)
    for event in events:
        ledger.fold(parse_event(event))
    reader = ScoreReader(engine, CATALOG)

    everything = {(case.department, case.case_id): case for case in ledger.cases.values()}
    kept = {(case.department, case.case_id): case
            for case in reader.cases_open_at(END + timedelta(days=400)) + [
                case for metric in CATALOG.metrics
                for case in reader.cases_closed(metric.id, date(2000, 1, 1), END + timedelta(days=400))]}
    assert len(everything) > 1000
    assert kept == everything  # every case kept, with the same times, attributes and groups

    # The lists and the backlog from the reader's rows equal the ledger's, for each status.
    for as_of in (END - timedelta(days=9), END):
        expected = backlogs(ledger.cases.values(), CATALOG, as_of)
        assert any(backlog.overdue for backlog in expected.values())
        assert backlogs(reader.cases_open_at(as_of), CATALOG, as_of) == expected
        assert reader.backlogs(as_of) == expected  # counted by the database, by the same rule
        for metric in CATALOG.metrics:
            if metric.feed.value != "cases":
                continue
            start, end = CATALOG.windows["week"].span(as_of)
            closed = reader.cases_closed(metric.id, start, end)
            still_open = reader.cases_open_at(as_of, [metric.id])
            for status, rows in ((LATE, closed), (ON_TIME, closed), (OPEN, still_open), (OVERDUE, still_open)):
                listed = cases_behind(ledger.cases.values(), CATALOG, metric.id, as_of, status)
                assert cases_behind(rows, CATALOG, metric.id, as_of, status) == listed, (metric.id, status)
                assert reader.case_lines(metric.id, as_of, status) == listed, (metric.id, status)
                # Pages read alone: each the list's slice, with the whole list's length.
                for limit, offset in ((7, 0), (7, 7), (50, 3), (1000, 0), (5, len(listed)), (5, max(0, len(listed) - 2))):
                    assert reader.case_page(metric.id, as_of, status, "week", limit, offset) == (
                        len(listed), listed[offset:offset + limit]), (metric.id, status, limit, offset)
                oldest_two = reader.case_page(metric.id, as_of, status, "week", 2, 0, oldest_first=True)
                assert oldest_two == (len(listed), listed[::-1][:2]), (metric.id, status)  # oldest first
            for by in metric.breakdowns:
                expected_groups = breakdown(ledger.cases.values(), CATALOG, metric.id, by, as_of)
                assert breakdown(closed, CATALOG, metric.id, by, as_of) == expected_groups
                assert reader.breakdown(metric.id, by, as_of) == expected_groups


def test_a_case_reopened_then_withdrawn_leaves_the_lists(engine):
    metric = next(m for m in CATALOG.metrics if m.feed.value == "cases")
    opened = "2026-06-01T09:00:00-04:00"
    case = {"event_id": "c1", "type": "case", "metric": metric.id, "case_id": "K-1", "opened_at": opened,
            "closed_at": "2026-06-02T09:00:00-04:00"}
    fold_in_batches(engine, CATALOG, [case])
    reader = ScoreReader(engine, CATALOG)
    assert [c.case_id for c in reader.cases_closed(metric.id, date(2026, 6, 2), date(2026, 6, 2))] == ["K-1"]

    fold_in_batches(engine, CATALOG, [{**case, "event_id": "c2", "closed_at": None}])  # reopened
    assert reader.cases_closed(metric.id, date(2026, 6, 2), date(2026, 6, 2)) == []
    assert [c.case_id for c in reader.cases_open_at(date(2026, 6, 3))] == ["K-1"]
    assert reader.cases_open_at(date(2026, 5, 31)) == []  # not opened yet then

    fold_in_batches(engine, CATALOG, [{"event_id": "w", "type": "withdrawal", "metric": metric.id, "withdraws": "c2"}])
    assert reader.cases_open_at(date(2026, 6, 3)) == []


def test_kept_cases_are_read_under_the_catalog_as_it_is_now(engine):
    """Attributes made private since a case was folded are not shown again (by the reader nor by a
    list's JSON), and breakdown values are read by name when the catalog adds or reorders breakdowns."""
    from shared.core.cases import case_line_dict
    from tests.helpers.catalogs import boston_with

    before = boston_with("pothole-on-time", public_attributes=["neighborhood", "zip"], breakdowns=["neighborhood"])
    now = boston_with("pothole-on-time", public_attributes=["neighborhood"], breakdowns=["zip", "neighborhood"])
    case = {"event_id": "c1", "type": "case", "metric": "pothole-on-time", "case_id": "K-1",
            "opened_at": "2026-06-01T09:00:00-04:00", "closed_at": "2026-06-03T09:00:00-04:00",
            "attributes": {"neighborhood": "Back Bay", "zip": "02116", "address": "1 Elm St"}}
    with engine.begin() as conn:
        ScoreWriter(engine, before).fold(conn, [parse_event(case)])

    kept = ScoreReader(engine, now).cases_closed("pothole-on-time", date(2026, 6, 3), date(2026, 6, 3))
    assert [(c.attributes, c.groups) for c in kept] == [((("neighborhood", "Back Bay"),), (None, "Back Bay"))]
    assert ScoreReader(engine, before).cases_closed("pothole-on-time", date(2026, 6, 3), date(2026, 6, 3))[0] \
        .attributes == (("neighborhood", "Back Bay"), ("zip", "02116"))
    by_zip, by_neighborhood = (breakdown(kept, now, "pothole-on-time", by, date(2026, 6, 3))
                               for by in ("zip", "neighborhood"))
    assert [g.name for g in by_zip] == ["(not given)"] and [g.name for g in by_neighborhood] == ["Back Bay"]

    # A list's JSON shows only what the catalog marks public now, whatever the case carries.
    line = cases_behind(ScoreReader(engine, before).cases_closed("pothole-on-time", date(2026, 6, 3),
                                                                 date(2026, 6, 3)),
                        now, "pothole-on-time", date(2026, 6, 3), LATE)[0]
    assert case_line_dict(line, now)["attributes"] == {"neighborhood": "Back Bay"}


def test_a_page_orders_case_ids_as_the_core_does_whatever_the_databases_collation(engine):
    """Cases closed at the same moment are ordered by case id, newest list first; the database's
    collation (en_US: 'a-2' before 'B-1', ignoring case) must not reorder a page against the core's
    code-point order ('B-1' before 'a-2')."""
    if engine.dialect.name == "postgresql":
        # These test databases are created with the C collation; a city's may well be en_US.
        from sqlalchemy import text
        with engine.begin() as conn:
            conn.execute(text('ALTER TABLE cases ALTER COLUMN case_id TYPE varchar(128) COLLATE "en-US-x-icu"'))
    metric = next(m for m in CATALOG.metrics if m.feed.value == "cases")
    ids = ["a-2", "B-1", "b-1", "A-10", "_x", "Z", "a-10"]
    fold_in_batches(engine, CATALOG, [
        {"event_id": f"e{number}", "type": "case", "metric": metric.id, "case_id": case_id,
         "opened_at": "2026-06-01T09:00:00-04:00", "closed_at": "2026-06-01T10:00:00-04:00"}
        for number, case_id in enumerate(ids)])
    reader = ScoreReader(engine, CATALOG)
    listed = reader.case_lines(metric.id, date(2026, 6, 1), ON_TIME)
    assert [line.case.case_id for line in listed] == sorted(ids, reverse=True)
    pages = [reader.case_page(metric.id, date(2026, 6, 1), ON_TIME, "week", 3, offset) for offset in (0, 3, 6)]
    assert [line for _, page in pages for line in page] == listed
    assert {total for total, _ in pages} == {len(ids)}
