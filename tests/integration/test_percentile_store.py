"""The percentile and the window states read from the database equal the offline ones (SQLite and
PostgreSQL): the read API's `?percentile=1` and published boards say what `cityscore score` says."""

from __future__ import annotations

from datetime import date

import pytest

from services.scorer.app import stored_board
from shared.core.catalog import load_catalog
from shared.core.contract import parse_event
from shared.core.folding import Ledger
from shared.core.percentile import percentiles
from shared.core.scoring import INSUFFICIENT_DATA
from shared.dev.generator import generate
from shared.store.published_scores import PublishedScores
from shared.store.score_reader import ScoreReader
from shared.store.score_writer import ScoreWriter
from tests.helpers.ingest import fresh_database
from tests.helpers.score_parts import fold_batches

CATALOG = load_catalog()
END = date(2026, 6, 30)
# School closed on END: attendance 0 of 0, data that cannot be scored (insufficient data).
CLOSED = {"event_id": "bps-closed", "type": "tally", "metric": "bps-attendance", "date": END.isoformat(),
          "numerator": 0, "denominator": 0}


@pytest.fixture(scope="module")
def generated():
    """120 days of events, the trend metrics' past years before them, and END's closed school."""
    return [parse_event(e) for e in generate(CATALOG, 120, 11, END)] + [parse_event(CLOSED)]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    url = f"sqlite:///{tmp_path}/scores.db" if request.param == "sqlite" else request.getfixturevalue("database_url")
    engine = fresh_database(url)
    yield engine
    engine.dispose()


def states(board) -> dict[tuple[str, str], str]:
    return {(metric, window): result.state for metric, windows in board.metrics.items()
            for window, result in windows.items()}


def test_the_database_gives_the_offline_percentiles_and_states(engine, generated):
    ledger = Ledger(CATALOG)
    for event in generated:
        ledger.fold(event)
    writer, reader = ScoreWriter(engine, CATALOG), ScoreReader(engine, CATALOG)
    fold_batches(writer, generated, 5000)
    for as_of in (END, date(2026, 5, 17), date(2026, 3, 9)):
        offline = percentiles(CATALOG, ledger.days, as_of, ledger.first_day)
        stored = reader.percentiles(as_of)
        assert stored.keys() == offline.keys()
        for metric_id, value in offline.items():
            assert (stored[metric_id] is None and value is None) or stored[metric_id] == pytest.approx(value), \
                (as_of, metric_id)
        assert sum(value is not None for value in offline.values()) >= 15, as_of
        assert states(reader.scoreboard(as_of)) == states(ledger.scoreboard(as_of)), as_of
    expected = states(ledger.scoreboard(END))
    assert expected[("bps-attendance", "day")] == INSUFFICIENT_DATA
    # a published board keeps scores only; the read API finds each null's state from the day totals
    with engine.begin() as conn:
        PublishedScores(reader).rescore(conn, END)
    board, _ = stored_board(reader, END)
    assert states(reader.with_states(board)) == expected
