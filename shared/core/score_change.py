"""The scores topic's message: one change of a published score (docs/contract.md, "Scores").

The scorer sends it on `cityscore.scores` when a rescore changes a score; the notifier
reads it back with `ScoreChange.from_payload`, which refuses anything that is not one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

CITY = "cityscore"  # the metric name under which the overall CityScore is kept and published


class BadScoreChange(ValueError):
    """A message on the scores topic that is not a score change."""


@dataclass(frozen=True)
class ScoreChange:
    """One change of a published score: the message the scorer sends on `cityscore.scores`."""

    metric: str
    window: str
    as_of: date
    score: float | None
    numerator: float | None
    denominator: float | None
    previous_score: float | None
    changed_at: datetime | None = None
    # The change's place in the order rescores committed: its outbox row's id, set when it is
    # published (see `PublishedScores.pending_outbox`). Consumers order changes by it, not by
    # `changed_at`, which is only the clock of whichever scorer computed the change.
    # None in messages from before the sequence existed.
    seq: int | None = None

    def payload(self) -> dict:
        body = {"metric": self.metric, "window": self.window, "as_of": self.as_of.isoformat(),
                "score": self.score, "numerator": self.numerator, "denominator": self.denominator,
                "previous_score": self.previous_score}
        if self.changed_at is not None:
            body["changed_at"] = self.changed_at.isoformat()
        if self.seq is not None:
            body["seq"] = self.seq
        return body

    @classmethod
    def from_payload(cls, payload: dict) -> "ScoreChange":
        """Read a message of the scores topic back, checked (for its consumers)."""
        try:
            changed_at = datetime.fromisoformat(payload["changed_at"])
            if changed_at.tzinfo is None:
                raise BadScoreChange("changed_at has no UTC offset")
            seq = payload.get("seq")
            if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 1):
                raise BadScoreChange(f"seq: {seq!r} is not a positive integer")
            return cls(str(payload["metric"]), str(payload["window"]), date.fromisoformat(payload["as_of"]),
                       _number(payload.get("score")), _number(payload.get("numerator")),
                       _number(payload.get("denominator")), _number(payload.get("previous_score")), changed_at,
                       seq)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, BadScoreChange):
                raise
            raise BadScoreChange(f"not a score change: {exc}") from None


def _number(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadScoreChange(f"{value!r} is not a number")
    return float(value)
