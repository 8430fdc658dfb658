"""The parts of the score store a test of the scorer's pipeline builds on one engine: the writer
and the published scores the pipeline takes (`Scorer`, `replay`), and a reader for the boards
the test compares."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Iterable, NamedTuple

from sqlalchemy.engine import Engine

from shared.core.catalog import Catalog
from shared.core.contract import parse_event
from shared.store.engine import make_engine, migrate
from shared.store.published_scores import PublishedScores
from shared.store.score_reader import ScoreReader
from shared.store.score_writer import ScoreWriter


class ScoreParts(NamedTuple):
    writer: ScoreWriter
    reader: ScoreReader
    scores: PublishedScores

    @property
    def engine(self) -> Engine:
        return self.writer.engine


def score_parts(engine: Engine, catalog: Catalog, writer: type[ScoreWriter] = ScoreWriter) -> ScoreParts:
    """`writer`: a ScoreWriter class of the test's own (one that refuses an event, say)."""
    reader = ScoreReader(engine, catalog)
    return ScoreParts(writer(engine, catalog), reader, PublishedScores(reader))


def sqlite_scores(path: Path, catalog: Catalog, events: Iterable[dict], publish_as_of: date | None = None) -> Engine:
    """A migrated SQLite database at `path` with these events (the contract's dicts) folded in one
    transaction and, given `publish_as_of`, the scores the scorer would publish as of that day."""
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    with engine.begin() as conn:
        ScoreWriter(engine, catalog).fold(conn, [parse_event(event) for event in events])
        if publish_as_of is not None:
            PublishedScores(ScoreReader(engine, catalog)).rescore(conn, publish_as_of)
    return engine


def fold_in_batches(engine: Engine, catalog: Catalog, events: Iterable[dict], batch: int = 5000) -> None:
    """These events (the contract's dicts) folded into a migrated database a transaction a batch,
    as the scorer folds a stream."""
    fold_batches(ScoreWriter(engine, catalog), [parse_event(event) for event in events], batch)


def fold_batches(writer: ScoreWriter, events: list, batch: int, redeliver_every: int = 0) -> None:
    """Parsed events folded by `writer` a transaction a batch; with `redeliver_every` N, every Nth
    batch is folded a second time (a redelivery after a crash), which must fold nothing."""
    for start in range(0, len(events), batch):
        part = events[start:start + batch]
        with writer.engine.begin() as conn:
            writer.fold(conn, part)
        if redeliver_every and (start // batch) % redeliver_every == 0:
            with writer.engine.begin() as conn:
                outcome = writer.fold(conn, part)
            assert outcome.folded == 0, f"a redelivered batch folded {outcome.folded} events again"


def engine_on_copy(database_file: Path, folder: Path) -> Engine:
    """An engine on a copy of a SQLite database file (one no engine has open), made in `folder`."""
    path = folder / database_file.name
    shutil.copyfile(database_file, path)
    return make_engine(f"sqlite:///{path}")
