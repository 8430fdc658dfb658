"""Open data in Boston's own columns (shared/core/open_data.py, `cityscore score --format csv`).

The CSV's header is Boston's "Full Metric List" header exactly, and each value is the
JSON's: the offline command's CSV and JSON of the same events say the same numbers.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import shared.catalogs
from services.cli.commands import main
from shared.core.catalog import load_catalog, parse_catalog
from shared.core.contract import parse_event
from shared.core.folding import Ledger
from shared.core.open_data import full_metric_list, plain_number
from shared.core.scoring import NULL, Scoreboard, WindowScore
from shared.dev.generator import generate
from tests.helpers.open_data import BOSTON_COLUMNS, BOSTON_LOGIC, assert_rows_equal_board, read_csv

BOSTON = load_catalog()
END = date(2026, 6, 30)
CALCULATED = datetime(2026, 7, 1, 4, 0, 12, tzinfo=timezone.utc)


def boston_data() -> dict:
    return yaml.safe_load((Path(shared.catalogs.__file__).parent / "boston.yaml").read_text(encoding="utf-8"))


def boston_with(**changes) -> dict:
    data = boston_data()
    data.update(changes)
    return data


CALENDAR = load_catalog("boston-calendar.yaml")  # Boston's calendar windows, as it publishes today


@pytest.fixture(scope="module")
def events() -> list[dict]:
    return list(generate(BOSTON, 35, 3, END))


def board_of(catalog, events, as_of: date) -> Scoreboard:
    ledger = Ledger(catalog)
    for event in events:
        ledger.fold(parse_event(event))
    return ledger.scoreboard(as_of)


def test_the_header_is_bostons_full_metric_list(events):
    header, rows = read_csv(full_metric_list([board_of(BOSTON, events[:50], END)], BOSTON, CALCULATED, latest=END))
    assert header == BOSTON_COLUMNS
    assert len(rows) == len(BOSTON.metrics)


@pytest.mark.parametrize("catalog", [BOSTON, CALENDAR], ids=["trailing", "calendar"])
def test_every_value_is_the_jsons(events, catalog):
    board = board_of(catalog, events, END)
    _, rows = read_csv(full_metric_list([board], catalog, CALCULATED, latest=END))
    # Through JSON text, as a reader of the API would have it.
    assert_rows_equal_board(rows, json.loads(json.dumps(board.as_dict(catalog))), catalog)
    assert {row["latest_score_flag"] for row in rows} == {"1"}
    assert {row["score_calculated_ts"] for row in rows} == {"2026-07-01T00:00:12-04:00"}  # Boston's own time


def test_metric_logic_is_written_as_boston_writes_it_for_every_kind(events):
    _, rows = read_csv(full_metric_list([board_of(BOSTON, events[:50], END)], BOSTON, CALCULATED, latest=END))
    logic = {metric.kind.value: row["metric_logic"] for metric, row in zip(BOSTON.metrics, rows)}
    assert logic == BOSTON_LOGIC  # all five kinds are in Boston's catalog
    by_name = {row["metric_name"]: row for row in rows}
    assert by_name["311 CALL CENTER PERFORMANCE"]["target"] == "0.95"
    assert by_name["EMS RESPONSE TIME"]["target"] == "6"
    assert by_name["HOMICIDES (TREND)"]["target"] == ""  # a trend has no target


def test_the_target_is_the_one_in_force_on_the_as_of_date():
    data = boston_data()
    data["metrics"][0]["target"] = [{"from": "2016-01-01", "target": 0.8}, {"from": "2026-07-01", "target": 0.85}]
    catalog = parse_catalog(data)
    first = catalog.metrics[0].name
    for as_of, target in ((date(2026, 6, 30), "0.8"), (date(2026, 7, 1), "0.85")):
        _, rows = read_csv(full_metric_list([board_of(catalog, [], as_of)], catalog, CALCULATED, latest=as_of))
        assert (rows[0]["metric_name"], rows[0]["target"]) == (first, target)


def test_numbers_are_written_plainly_and_read_back_the_same():
    assert plain_number(4579.0) == "4579"
    assert plain_number(4579 / 4996 / 0.95) == repr(4579 / 4996 / 0.95)
    assert plain_number(0.1 + 0.2) == "0.30000000000000004"
    assert plain_number(1e-05) == "0.00001"  # no exponent for a spreadsheet to misread
    assert plain_number(2.5e-07) == "0.00000025"
    assert plain_number(1e16) == "10000000000000000"
    for value in (1 / 3, 2 / 3 / 0.95, 12345.678, 1e-05, 5e-324, 1.7976931348623157e308):
        assert float(plain_number(value)) == value
    assert plain_number(None) == plain_number(float("nan")) == plain_number(float("inf")) == ""


def test_a_history_flags_only_the_latest_dates_rows_as_latest(events):
    ledger = Ledger(BOSTON)
    for event in events:
        ledger.fold(parse_event(event))
    days = [END - timedelta(days=2), END - timedelta(days=1), END]
    boards = [ledger.scoreboard(d) for d in days]
    header, rows = read_csv(full_metric_list(boards, BOSTON, CALCULATED, latest=END))
    assert header == BOSTON_COLUMNS
    assert len(rows) == 3 * len(BOSTON.metrics)
    flags = [row["latest_score_flag"] for row in rows]
    assert flags == ["0"] * 2 * len(BOSTON.metrics) + ["1"] * len(BOSTON.metrics)
    for index, day in enumerate(days):
        block = rows[index * len(BOSTON.metrics):(index + 1) * len(BOSTON.metrics)]
        assert_rows_equal_board(block, ledger.scoreboard(day).as_dict(BOSTON), BOSTON)


def test_a_history_that_ends_before_the_latest_date_flags_no_row(events):
    """The newest date of a past range is not the latest run: a portal loading this export beside
    the current one must not find two latest runs."""
    ledger = Ledger(BOSTON)
    for event in events:
        ledger.fold(parse_event(event))
    boards = [ledger.scoreboard(END - timedelta(days=back)) for back in (3, 2, 1)]
    _, rows = read_csv(full_metric_list(boards, BOSTON, CALCULATED, latest=END))
    assert len(rows) == 3 * len(BOSTON.metrics)
    assert {row["latest_score_flag"] for row in rows} == {"0"}
    # Nor is the latest date's board flagged only because it is the last in the file.
    _, rows = read_csv(full_metric_list(list(reversed(boards)), BOSTON, CALCULATED, latest=END - timedelta(days=2)))
    flags = [row["latest_score_flag"] for row in rows]
    assert flags == ["0"] * len(BOSTON.metrics) + ["1"] * len(BOSTON.metrics) + ["0"] * len(BOSTON.metrics)


def test_a_name_with_a_comma_or_a_quote_is_quoted():
    data = boston_data()
    data["metrics"][0]["name"] = 'CALLS, "ANSWERED"'
    catalog = parse_catalog(data)
    text = full_metric_list([board_of(catalog, [], END)], catalog, CALCULATED, latest=END)
    assert text.splitlines()[1].startswith('"CALLS, ""ANSWERED""",')
    assert read_csv(text)[1][0]["metric_name"] == 'CALLS, "ANSWERED"'


def test_windows_of_other_names_keep_bostons_columns():
    """Boston's names are the contract: a catalog's 'fortnight' has no column, its missing 'day' is empty."""
    catalog = parse_catalog(boston_with(windows={"week": 7, "month": 30, "quarter": 90, "fortnight": 14}))
    metric = catalog.metrics[0]
    scores = {"week": WindowScore(1.0, 9.0, 9.5), "month": NULL, "quarter": NULL, "fortnight": WindowScore(2.0, 1, 1)}
    board = Scoreboard(END, {}, {m.id: scores for m in catalog.metrics})
    header, rows = read_csv(full_metric_list([board], catalog, CALCULATED, latest=END))
    assert header == BOSTON_COLUMNS
    row = rows[catalog.metrics.index(metric)]
    assert [row[f"day_{part}"] for part in ("score", "numerator", "denominator")] == ["", "", ""]
    assert [row[f"week_{part}"] for part in ("score", "numerator", "denominator")] == ["1", "9", "9.5"]
    assert row["month_score"] == row["quarter_score"] == ""


def test_a_time_without_an_offset_is_refused(events):
    with pytest.raises(ValueError, match="calculated_at"):
        full_metric_list([board_of(BOSTON, [], END)], BOSTON, datetime(2026, 7, 1, 4), latest=END)


# -- `cityscore score --format csv` -------------------------------------------------


@pytest.mark.parametrize("catalog_name", ["boston.yaml", "boston-calendar.yaml"])
def test_score_command_csv_says_what_its_json_says(tmp_path, events, catalog_name):
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    catalog = load_catalog(catalog_name)
    for as_of in (END, END - timedelta(days=9)):
        args = ["score", "--events", str(path), "--as-of", as_of.isoformat(), "--catalog", catalog_name]
        as_json = CliRunner().invoke(main, args)
        before = datetime.now(timezone.utc)
        as_csv = CliRunner().invoke(main, [*args, "--format", "csv"])
        after = datetime.now(timezone.utc)
        assert as_json.exit_code == 0 and as_csv.exit_code == 0, (as_json.output, as_csv.output)
        header, rows = read_csv(as_csv.stdout)
        assert header == BOSTON_COLUMNS
        assert_rows_equal_board(rows, json.loads(as_json.stdout), catalog)
        assert {row["latest_score_flag"] for row in rows} == {"1"}
        (stamp,) = {row["score_calculated_ts"] for row in rows}
        # When this run computed the scores, in the city's time with its offset.
        assert before.replace(microsecond=0) <= datetime.fromisoformat(stamp) <= after
        assert datetime.fromisoformat(stamp).utcoffset() in (timedelta(hours=-4), timedelta(hours=-5))
