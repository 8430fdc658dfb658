"""The overall CityScore over the last 90 days, as a PNG for the daily board's thread."""

from __future__ import annotations

import io
from datetime import date, timedelta

from shared.store.score_reader import ScoreReader


def city_history(store: ScoreReader, window: str, days: int, end: date,
                 timeout_s: float | None = None) -> list[tuple[date, float | None]]:
    """The overall CityScore in `window` as of each of the `days` days ending on `end`: the
    boards of `ScoreReader.scoreboards` (the day totals loaded once, each date scored from them),
    bounded by `timeout_s` as the read API's reads are."""
    start = end - timedelta(days=days - 1)
    return [(board.as_of, board.cityscore.get(window)) for board in store.scoreboards(start, end, timeout_s)]


def chart_png(series: list[tuple[date, float | None]], title: str) -> bytes:
    """A line of the score with the target line at 1 and the days below it shaded."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: safe off the main thread
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    days = [day for day, _ in series]
    values = [float("nan") if value is None else value for _, value in series]
    axes.plot(days, values, color="#1f4e79", linewidth=2, label="CityScore")
    axes.axhline(1.0, color="#555555", linewidth=1, linestyle="--", label="target (1.0)")
    axes.fill_between(days, values, 1.0, where=[v < 1 for v in values], color="#d62728", alpha=0.25,
                      interpolate=True, label="below 1")
    known = [v for v in values if v == v]
    if known:
        low, high = min(known + [1.0]), max(known + [1.0])
        pad = max(0.05, (high - low) * 0.15)
        axes.set_ylim(low - pad, high + pad)
    axes.set_title(title, fontsize=11)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", fontsize=8, frameon=False)
    figure.autofmt_xdate()
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
