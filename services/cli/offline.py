"""Offline scoring: fold a JSONL file of events and score it, with no servers at all.

This is the reference the services are checked against: the scorer's read API must
give the same scoreboard for the same events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import BinaryIO, Iterable

from shared.core.catalog import Catalog
from shared.core.contract import InvalidEvent, validate_event
from shared.core.folding import Ledger
from shared.core.percentile import with_percentiles
from shared.core.scoring import Scoreboard
from shared.core.staleness import last_days


@dataclass
class BadLine:
    line: int
    reason: str


@dataclass
class FoldReport:
    """What happened to each line of the input."""

    lines: int = 0
    folded: int = 0
    duplicates: int = 0
    blank: int = 0
    invalid: int = 0
    reasons: list[BadLine] = field(default_factory=list)  # the first MAX_REASONS_KEPT of them


# Keep the first few hundred reasons; a file of a million bad lines should not
# hold a million strings in memory.
MAX_REASONS_KEPT = 1000


def fold_lines(lines: Iterable[bytes], ledger: Ledger, report: FoldReport | None = None) -> FoldReport:
    """Validate and fold JSONL lines into `ledger`; bad lines are reported, never fatal."""
    report = report or FoldReport()
    catalog = ledger.catalog
    for number, raw in enumerate(lines, start=report.lines + 1):
        report.lines = number
        if not raw.strip():
            report.blank += 1
            continue
        try:
            event = validate_event(raw, catalog)
        except InvalidEvent as exc:
            report.invalid += 1
            if len(report.reasons) < MAX_REASONS_KEPT:
                report.reasons.append(BadLine(number, str(exc)))
            continue
        if ledger.fold(event):
            report.folded += 1
        else:
            report.duplicates += 1
    return report


def score_file(stream: BinaryIO, catalog: Catalog, as_of: date,
               percentile: bool = True) -> tuple[Scoreboard, FoldReport, Ledger]:
    """Fold every line of a JSONL stream and score it as of `as_of`, each metric with its percentile
    (the read API gives the same with `?percentile=1`) unless `percentile` is False."""
    ledger = Ledger(catalog)
    report = fold_lines(stream, ledger)
    return score_ledger(ledger, as_of, percentile), report, ledger


def score_ledger(ledger: Ledger, as_of: date, percentile: bool = True) -> Scoreboard:
    """The board of events already folded, as of `as_of` (a ledger folded once can be scored as of
    any date: later days are simply outside its windows)."""
    board = ledger.scoreboard(as_of)
    # Each metric's last day with data, as the read API reads it from day_totals (docs/scoring.md §4c).
    board = board._replace(last_data=last_days(ledger.days, as_of))
    if percentile:
        board = with_percentiles(board, ledger.catalog, ledger.days, ledger.first_day)
    return board


def board_document(board: Scoreboard, ledger: Ledger, alert_windows: Iterable[str] = ("week",)) -> dict:
    """`cityscore score --format json`'s document: the board, with each metric's case fields (its
    open and overdue cases, and the projected score of the alert windows)."""
    from shared.core.cases import case_fields, with_case_fields

    return with_case_fields(board.as_dict(ledger.catalog),
                            case_fields(board, ledger.catalog, ledger.cases.values(), alert_windows))
