"""`ScoreStore`: the write side, the read side and the published scores in one object.

Kept only for the scorer's pipeline (services/scorer/consumer.py and replay.py) until it
takes the parts it uses (`ScoreWriter`, `PublishedScores`) directly; remove it then.
Everything else uses the parts: shared/store/score_writer.py (folding), score_reader.py
(boards, histories), published_scores.py (rescore and outbox).
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from shared.core.catalog import Catalog
from shared.core.contract import Event
from shared.store.published_scores import PublishedScores
from shared.store.score_reader import ScoreReader
from shared.store.score_writer import FoldOutcome, Folding, ScoreWriter

__all__ = ["FoldOutcome", "Folding", "ScoreStore"]


class ScoreStore:
    """A composition of ScoreWriter, ScoreReader and PublishedScores (to be removed, see above)."""

    def __init__(self, engine: Engine, catalog: Catalog):
        self.engine = engine
        self.catalog = catalog
        self.writer = ScoreWriter(engine, catalog)
        self.reader = ScoreReader(engine, catalog)
        self.published = PublishedScores(self.reader)
        # The write side, as the pipeline calls it.
        self.claim = self.writer.claim
        self.fold_prepared = self.writer.fold_prepared
        self.reset = self.writer.reset
        # Published scores and their outbox.
        self.rescore = self.published.rescore
        self.pending_outbox = self.published.pending_outbox
        self.clear_outbox = self.published.clear_outbox
        # The read side.
        self.first_days = self.reader.first_days
        self.load_days = self.reader.load_days
        self.score_metrics = self.reader.score_metrics
        self.scoreboard = self.reader.scoreboard
        self.history = self.reader.history
        self.current = self.reader.current
        self.last_updated = self.reader.last_updated

    # Methods, not bound attributes: a test store overrides `prepare` to refuse one event.
    def prepare(self, event: Event) -> Folding:
        return self.writer.prepare(event)

    def fold(self, conn, events) -> FoldOutcome:
        prepare = self.prepare
        return self.writer.fold_prepared(conn, [prepare(event) for event in events])
