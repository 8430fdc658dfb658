"""The parts of the score store a test of the scorer's pipeline builds on one engine: the writer
and the published scores the pipeline takes (`Scorer`, `replay`), and a reader for the boards
the test compares."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy.engine import Engine

from shared.core.catalog import Catalog
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
