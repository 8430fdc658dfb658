"""A scoreboard for a terminal: the overall CityScore on top, then one row per metric."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from shared.core.catalog import Catalog
from shared.core.scoring import Scoreboard, standing


def mark(score: float | None) -> str:
    """A score rounded for display, with a sign that does not rely on colour."""
    if score is None:
        return ""
    shown = f"{score:.2f}"
    if shown == "1.00":
        return "1.00 ="
    return f"{shown} {'▲' if score > 1 else '▼'}"


def _style(score: float | None) -> str:
    return {"below": "bold red", "above": "bold blue"}.get(standing(score), "")


def _cell(score: float | None) -> Text:
    return Text(mark(score), style=_style(score))


def render_table(board: Scoreboard, catalog: Catalog, console: Console | None = None) -> None:
    console = console or Console()
    windows = list(catalog.windows)
    table = Table(title=f"{catalog.city} CityScore as of {board.as_of.isoformat()}", title_style="bold")
    table.add_column("Metric")
    for window in windows:
        table.add_column(window.title(), justify="right")
    table.add_row(
        Text("CITYSCORE", style="bold"),
        *(_cell(board.cityscore[w]) for w in windows),
        end_section=True,
    )
    for metric in catalog.metrics:
        scores = board.metrics[metric.id]
        table.add_row(
            metric.name,
            *(_cell(scores[w].score) for w in windows),
        )
    console.print(table)
    console.print("▼ below target, needs follow-up   = on target   ▲ above target   blank: no data", style="dim")
