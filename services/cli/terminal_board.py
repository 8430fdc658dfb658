"""A scoreboard for a terminal: the overall CityScore on top, then one row per metric, the days
each window covers, then the metrics that need follow-up in the week window (the last 7 days, or
the last complete calendar week, as the catalog defines it) in words (shared.core.wording, as in
Slack and on the page)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from shared.core import wording
from shared.core.catalog import Catalog
from shared.core.scoring import Scoreboard, needing_follow_up, standing
from shared.core.windows import spans

# The window whose follow-ups are spelled out under the table, as in the notifier's daily board.
FOLLOW_UP_WINDOW = "week"


def mark(score: float | None, near_target: float | None = None) -> str:
    """A score rounded for display, with a sign that does not rely on colour (`near_target`: the
    catalog's band)."""
    place = standing(score, near_target)
    if place == "none":
        return ""
    return f"{wording.score_text(score)} {wording.MARKS[place]}"


def _style(score: float | None, near_target: float | None = None) -> str:
    return {"below": "bold red", "near": "bold yellow", "above": "bold blue"}.get(standing(score, near_target), "")


def _cell(score: float | None, near_target: float | None = None) -> Text:
    return Text(mark(score, near_target), style=_style(score, near_target))


def render_table(board: Scoreboard, catalog: Catalog, console: Console | None = None) -> None:
    console = console or Console()
    windows = list(catalog.windows)
    table = Table(title=f"{catalog.city} CityScore as of {board.as_of.isoformat()}", title_style="bold")
    table.add_column("Metric")
    for window in windows:
        table.add_column(window.title(), justify="right")
    table.add_row(
        Text("CITYSCORE", style="bold"),
        *(_cell(board.cityscore[w], catalog.near_target) for w in windows),
        end_section=True,
    )
    for metric in catalog.metrics:
        scores = board.metrics[metric.id]
        table.add_row(
            metric.name,
            *(_cell(scores[w].score, catalog.near_target) for w in windows),
        )
    console.print(table)
    console.print(wording.legend(catalog.near_target), style="dim")
    # The windows as the catalog defines them: trailing days, or the last complete calendar periods.
    days = spans(catalog.windows, board.as_of)
    console.print(Text("Days each window covers: "
                       + " · ".join(f"{window} {wording.span_in_words(*span)}" for window, span in days.items())))
    below = needing_follow_up(board, catalog, FOLLOW_UP_WINDOW)
    if below:
        week = days[FOLLOW_UP_WINDOW]
        console.print(f"\n{wording.FOLLOW_UP.capitalize()} (below 1 in the "
                      f"{wording.window_in_words(FOLLOW_UP_WINDOW, *week)}), lowest first:", style="bold")
        for metric in below:
            result = board.metrics[metric.id][FOLLOW_UP_WINDOW]
            # Plain text: a catalog's names and units are data, never rich markup.
            console.print(Text(f"  {metric.name}: {wording.score_line(metric, FOLLOW_UP_WINDOW, result, span=week)}"))
