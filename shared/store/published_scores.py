"""The scorer's published scores and their outbox: rescore, then relay the changes to Kafka.

A rescore stores the new scores and queues each change in the same transaction as the
fold that caused it, so a crash never loses a change or publishes one rolled back; the
relay reads the queue oldest first and deletes what Kafka acknowledged.
"""

from __future__ import annotations

from datetime import date
from typing import Iterable

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from shared.core.score_change import CITY, ScoreChange
from shared.core.scoring import WindowScore, overall, window_target
from shared.core.windows import spans
from shared.store.bulk_sql import chunks
from shared.store.engine import utcnow
from shared.store.tables.scorer import CurrentScore, ScoreOutbox
from shared.store.score_reader import ScoreReader


class PublishedScores:
    """current_scores and score_outbox: what the scorer last published, and what it has yet to."""

    def __init__(self, reader: ScoreReader):
        self.reader = reader
        self.catalog = reader.catalog

    def rescore(self, conn: Connection, as_of: date, metric_ids: Iterable[str] | None = None) -> list[ScoreChange]:
        """Recompute the scores as of `as_of` (of these metrics, or all), store and queue the changes.

        Runs in the caller's transaction; the changes go to the outbox in the same
        transaction, so a crash never loses one or publishes one that was rolled back.
        """
        self.reader.sql.lock_rescore(conn)
        stored = self.reader.current(conn)
        all_ids = [m.id for m in self.catalog.metrics]
        if metric_ids is None or any(row.as_of != as_of for row in stored.values()) or len(stored) < len(all_ids):
            metric_ids = all_ids  # a new day (or a first run): every score moves
        wanted = set(metric_ids)
        metric_ids = [m for m in all_ids if m in wanted]
        if not metric_ids:
            return []
        # Read afresh in the fold's transaction, not from the day totals the reader keeps: this
        # transaction's own folds are in what it reads, and it may yet roll back.
        fresh = self.reader.score_metrics(conn, metric_ids, as_of, fresh=True)
        changes: list[ScoreChange] = []
        now = utcnow()
        table = CurrentScore.__table__

        days = spans(self.catalog.windows, as_of)

        def store(metric: str, window: str, result: WindowScore) -> None:
            previous = stored.get((metric, window))
            start, end = days[window]
            target = window_target(self.catalog.by_id[metric], days[window]) if metric != CITY else None
            # The published figures (a window's state is not published: docs/scoring.md §4a), and
            # what they were computed over and against.
            if previous is not None and previous.as_of == as_of and (previous.score, previous.numerator,
                                                                     previous.denominator) == result[:3] \
                    and (previous.window_start, previous.window_end, previous.target) == (start, end, target):
                return
            changes.append(ScoreChange(metric, window, as_of, result.score, result.numerator, result.denominator,
                                       previous.score if previous is not None else None, now))
            values = {"as_of": as_of, "score": result.score, "numerator": result.numerator,
                      "denominator": result.denominator, "window_start": start, "window_end": end,
                      "target": target, "updated_at": now}
            if previous is None:
                conn.execute(table.insert().values(metric=metric, window=window, **values))
            else:
                conn.execute(update(table).where(table.c.metric == metric, table.c.window == window).values(**values))

        for metric_id, scores in fresh.items():
            for window, result in scores.items():
                store(metric_id, window, result)
                stored[(metric_id, window)] = result  # its .score, for the overall CityScore below
        # Every metric now has a score as of `as_of` (all were rescored on a new day).
        windows = self.catalog.windows
        city = overall(({w: WindowScore(stored[(m, w)].score, None, None) for w in windows} for m in all_ids), windows)
        for window, value in city.items():
            store(CITY, window, WindowScore(value, None, None))
        if changes:
            conn.execute(ScoreOutbox.__table__.insert(), [
                {"key": change.metric, "payload": orjson.dumps(change.payload()).decode()}
                for change in changes])
        return changes

    def pending_outbox(self, conn: Connection, limit: int = 5000) -> list[tuple[int, str, bytes]]:
        """Queued score changes, oldest first, each payload with its row id as `seq`.

        The id is the change's sequence: it is assigned inside the rescore transaction, and
        rescores run one at a time (an advisory lock on PostgreSQL, the single writer on
        SQLite), so ids increase in the order rescores commit, whichever scorer ran them and
        whatever its clock said. Ids are never reused (a sequence on PostgreSQL,
        AUTOINCREMENT on SQLite), so one stays larger than every id published before it.
        """
        table = ScoreOutbox.__table__
        rows = conn.execute(select(table.c.id, table.c.key, table.c.payload).order_by(table.c.id).limit(limit))
        return [(row.id, row.key, _sequenced(row.payload, row.id)) for row in rows]

    def clear_outbox(self, conn: Connection, ids: list[int]) -> None:
        table = ScoreOutbox.__table__
        for chunk in chunks(ids):
            conn.execute(delete(table).where(table.c.id.in_(chunk)))


def _sequenced(payload: str, seq: int) -> bytes:
    body = orjson.loads(payload)
    body["seq"] = seq
    return orjson.dumps(body)
