"""The store's reads cover every day a calendar window needs (SQLite).

A board or a history computed from the database loads the days of its windows and, for trend
metrics, the same windows of past years; with calendar windows those are whole past months
(a February of 28 or 29 days). The numbers must be the offline Ledger's at the edges.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from shared.core.catalog import load_catalog
from shared.core.contract import parse_event
from shared.core.folding import Ledger
from shared.store.engine import make_engine, migrate
from shared.store.score_reader import ScoreReader
from shared.store.score_writer import ScoreWriter
from tests.helpers.boards import board_differences

CALENDAR = load_catalog("boston-calendar.yaml")
FIRST, LAST = date(2022, 1, 1), date(2025, 4, 30)


def events() -> list[dict]:
    """Daily library users (a tally-fed trend) and 311 calls answered, each day's numbers its own."""
    made = []
    day = FIRST
    while day <= LAST:
        n = (day - FIRST).days
        made.append({"event_id": f"lib-{day}", "type": "tally", "metric": "library-users", "date": day.isoformat(),
                     "count": 1000 + (n * 37) % 501})
        made.append({"event_id": f"calls-{day}", "type": "tally", "metric": "311-call-center",
                     "date": day.isoformat(), "numerator": 500 + n % 90, "denominator": 600})
        day += timedelta(days=1)
    return made


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('reads')}/scores.db")
    migrate(engine)
    parsed = [parse_event(e) for e in events()]
    with engine.begin() as conn:
        ScoreWriter(engine, CALENDAR).fold(conn, parsed)
    ledger = Ledger(CALENDAR)
    for event in parsed:
        ledger.fold(event)
    yield ScoreReader(engine, CALENDAR), ledger
    engine.dispose()


@pytest.mark.parametrize("as_of", [
    date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1),  # a leap February, before and once complete
    date(2025, 2, 28), date(2025, 3, 1), date(2025, 3, 2),   # an ordinary one: past years hold 29 February
    date(2025, 1, 1), date(2024, 12, 31),                    # a year end
    date(2025, 3, 31), date(2025, 4, 30),
])
def test_a_board_from_the_database_is_the_ledger_s(folded, as_of):
    reader, ledger = folded
    expected = ledger.scoreboard(as_of).as_dict(CALENDAR)
    assert board_differences(expected, reader.scoreboard(as_of).as_dict(CALENDAR)) == []
    library = expected["metrics"]["library-users"]
    assert all(library[w]["score"] is not None for w in CALENDAR.windows)  # trend baselines were found


@pytest.mark.parametrize("window", ["day", "week", "month", "quarter"])
def test_a_history_from_the_database_is_the_ledger_s_day_by_day(folded, window):
    reader, ledger = folded
    end = date(2025, 3, 3)
    series = reader.history("library-users", window, 65, end)  # from 29 December 2024
    for as_of, result in series:
        assert tuple(result) == pytest.approx(tuple(ledger.scoreboard(as_of).metrics["library-users"][window]),
                                              rel=1e-12), as_of


@pytest.mark.parametrize("window", ["day", "week", "month", "quarter"])
def test_the_slack_chart_s_city_history_is_the_board_s_cityscore_day_by_day(folded, window):
    from services.notifier.chart import city_history

    reader, _ = folded
    series = city_history(reader, window, 40, date(2025, 3, 2))
    assert [as_of for as_of, _ in series][0] == date(2025, 1, 22)
    for as_of, value in series:
        assert value == pytest.approx(reader.scoreboard(as_of).cityscore[window], rel=1e-12), as_of


def test_the_slack_chart_s_read_is_bounded_as_the_read_api_s(folded):
    from services.notifier.chart import city_history
    from shared.store.score_reader import ReadTimedOut

    reader, _ = folded
    with pytest.raises(ReadTimedOut):  # a bound no load of 40 days of totals can meet
        city_history(reader, "week", 40, date(2025, 3, 2), timeout_s=1e-9)


def test_boards_for_a_range_of_dates_are_the_ledger_s(folded):
    reader, ledger = folded
    boards = reader.scoreboards(date(2025, 2, 20), date(2025, 3, 3))  # the open-data history export's read
    assert [board.as_of for board in boards][0] == date(2025, 2, 20) and len(boards) == 12
    for board in boards:
        assert board_differences(ledger.scoreboard(board.as_of).as_dict(CALENDAR), board.as_dict(CALENDAR)) == []
