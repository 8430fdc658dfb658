"""Helpers for the notifier's integration tests: a database schema of their own, scores, changes."""

from __future__ import annotations

import math
import uuid
from datetime import date, datetime, timedelta, timezone

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from shared.core.catalog import Catalog, Kind
from shared.store.engine import make_engine, migrate
from shared.store.tables.scorer import DayTotal, MeasurementValue, MetricFirstDay


class Schema:
    """A PostgreSQL schema for one test: its own tables, so tests that reset the shared ones never clash."""

    def __init__(self, database_url: str) -> None:
        self.name = f"ntest_{uuid.uuid4().hex[:12]}"
        self.admin = sa.create_engine(database_url)
        with self.admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{self.name}"'))
        self.url = make_url(database_url).update_query_dict(
            {"options": f"-csearch_path={self.name}"}).render_as_string(hide_password=False)
        self.engine = make_engine(self.url)
        migrate(self.engine)

    def drop(self) -> None:
        self.engine.dispose()
        with self.admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
        self.admin.dispose()


def seed_scores(engine, catalog: Catalog, end: date, days: int = 130, years_of_history: int = 2) -> None:
    """Plausible daily totals for every metric: some above target, some below, some moving."""
    totals, values, first = [], [], []
    for index, metric in enumerate(catalog.metrics):
        aim = metric.latest_target  # a number, whether the catalog gives one target or a history
        span = days + (366 * years_of_history if metric.kind.is_trend else 0)
        start = end - timedelta(days=span - 1)
        first.append({"metric": metric.id, "first_day": start})
        for offset in range(span):
            day = start + timedelta(days=offset)
            wave = math.sin((offset + index * 7) / 9.0)
            quality = 1.0 + 0.25 * wave - (0.15 if index % 3 == 0 else -0.05)
            if metric.kind in (Kind.RATIO, Kind.MEAN_DAILY_RATIO):
                target = aim or 1
                denominator = 40 + index
                if metric.feed.value == "rating":
                    numerator = min(5.0, target * quality) * denominator
                else:
                    numerator = min(1.0, target * quality) * denominator
                totals.append({"metric": metric.id, "day": day, "numerator": numerator, "denominator": denominator,
                               "count": 0.0})
            elif metric.kind is Kind.TARGET_OVER_MEDIAN:
                totals.append({"metric": metric.id, "day": day, "numerator": 0.0, "denominator": 0.0, "count": 0.0})
                values += [{"metric": metric.id, "day": day, "value": (aim or 6) / quality * f}
                           for f in (0.9, 1.0, 1.1)]
            else:
                count = max(0.0, 10 * (2 - quality)) if metric.kind is Kind.TREND_LOWER_BETTER else 10 * quality
                totals.append({"metric": metric.id, "day": day, "numerator": 0.0, "denominator": 0.0,
                               "count": round(count)})
    with engine.begin() as conn:
        conn.execute(DayTotal.__table__.insert(), totals)
        if values:
            conn.execute(MeasurementValue.__table__.insert(), values)
        conn.execute(MetricFirstDay.__table__.insert(), first)


class Changes:
    """Score changes shaped like the scorer's messages on cityscore.scores, with increasing changed_at."""

    def __init__(self, as_of: date = date(2026, 7, 23)) -> None:
        self.as_of = as_of
        self.moment = datetime(2026, 7, 24, 8, 0, tzinfo=timezone.utc)
        self.previous: dict[tuple[str, str], float | None] = {}

    def __call__(self, metric: str, score: float | None, window: str = "week") -> dict:
        self.moment += timedelta(seconds=1)
        previous = self.previous.get((metric, window))
        self.previous[(metric, window)] = score
        numerator = None if score is None else round(score * 48, 3)
        return {"metric": metric, "window": window, "as_of": self.as_of.isoformat(), "score": score,
                "numerator": numerator, "denominator": None if score is None else 60.0,
                "previous_score": previous, "changed_at": self.moment.isoformat(timespec="milliseconds")}


def encode(change: dict) -> tuple[bytes, bytes]:
    return change["metric"].encode(), orjson.dumps(change)
