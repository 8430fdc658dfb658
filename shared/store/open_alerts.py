"""The alerts still open for some metrics, read from the notifier's table (shared/store/tables/notifier.py).

The scorer and the notifier share the database: the department and cabinet pages show what is
open and who owns it without any of the notifier's code. The notifier alone writes these rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.engine import Engine

from shared.store.tables.notifier import Alert

# The notifier's alert windows besides the catalog's (services/notifier/lifecycle.py): an early
# warning of window W is an alert of "at-risk:W"; a stale feed's data alert is "feed".
AT_RISK_PREFIX = "at-risk:"
FEED_WINDOW = "feed"


@dataclass(frozen=True)
class OpenAlert:
    """One open alert as a department's page shows it."""

    id: int
    metric: str
    window: str  # the notifier's: a catalog window, "at-risk:W" or "feed"
    status: str  # firing | acknowledged
    score: float | None
    fired_at: datetime
    acknowledged_by: str | None
    owner: str | None

    @property
    def kind(self) -> str:
        """'follow-up', 'at risk' (an early warning) or 'no data' (a stale feed)."""
        if self.window == FEED_WINDOW:
            return "no data"
        return "at risk" if self.window.startswith(AT_RISK_PREFIX) else "follow-up"

    @property
    def score_window(self) -> str | None:
        """The catalog window the alert is about (None for a stale feed's)."""
        if self.window == FEED_WINDOW:
            return None
        return self.window.removeprefix(AT_RISK_PREFIX)

    def as_dict(self) -> dict:
        return {"id": self.id, "metric": self.metric, "kind": self.kind, "window": self.score_window,
                "status": self.status, "score": self.score, "fired_at": self.fired_at.isoformat(),
                "acknowledged_by": self.acknowledged_by, "owner": self.owner}


def open_alerts(engine: Engine, metric_ids: Iterable[str]) -> list[OpenAlert]:
    """The open (not resolved) alerts of these metrics, oldest first."""
    metric_ids = list(metric_ids)
    if not metric_ids:
        return []
    alerts = Alert.__table__
    query = (select(alerts).where(alerts.c.metric.in_(metric_ids), alerts.c.status != "resolved")
             .order_by(alerts.c.fired_at, alerts.c.id))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [OpenAlert(row.id, row.metric, row.window, row.status, row.score, row.fired_at, row.acknowledged_by,
                      row.owner) for row in rows]
