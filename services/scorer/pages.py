"""The public scoreboard: the city's board of scores and a page for each metric.

Server-rendered and script-free, so it works behind a strict Content-Security-Policy,
on a phone and with a screen reader. The numbers come from the same board and history
as the JSON API (`board_for`, `ScoreReader.history`); this module only presents them.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Iterator, Sequence

from flask import Blueprint, Response, abort, current_app, has_app_context, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from shared.core import wording
from shared.core.cases import LATE, OVERDUE, CaseLine, Group, breakdown, case_line_dict, cases_behind
from shared.core.catalog import Catalog, Feed, Metric
from shared.core.record import Note
from shared.store.record import notes_for
from shared.store.score_reader import ReadTimedOut
from shared.core.scoring import Scoreboard, WindowScore, standing
from shared.core.staleness import expected_words, stale_marks
from shared.core.windows import spans

pages = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
                  static_url_path="/assets")

# The pages load nothing but their own stylesheet: no script, no inline style, no frames.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")
REFRESH_SECONDS = 60
HISTORY_WINDOW = "week"
HISTORY_DAYS = 90
# The metric page lists this many of the oldest overdue and of the latest late cases: enough to act
# on, and a bounded page (the full lists are the read API's, paged).
CASES_SHOWN = 10
# The windows whose projected score the pages show when the app does not give the notifier's
# (NOTIFIER_ALERT_WINDOWS, "week" by default).
DEFAULT_ALERT_WINDOWS = ("week",)


# -- presenting one score ------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A score as the board shows it: rounded to 2 decimals, with its standing against target.

    The standing follows the rounded figure, so a cell that reads 1.00 is never red.
    """

    score: float | None
    text: str
    standing: str  # below, near (a catalog's band), at, above or none
    mark: str
    label: str
    # No score, but the window had data: shown as "insufficient data", apart from "no score".
    insufficient: bool = False

    @property
    def data_score(self) -> str:
        return "" if self.score is None else repr(self.score)


# The band of the catalog a review packet is built and rendered for (services/scorer/report.py), which
# runs outside Flask: set by `near_target_of`, so the packet marks a score as its department's page does.
_BAND: ContextVar[float | None] = ContextVar("near_target_band", default=None)


@contextmanager
def near_target_of(catalog: Catalog) -> Iterator[None]:
    """Within it, `cell` outside a request marks scores with `catalog`'s near-target band."""
    token = _BAND.set(catalog.near_target)
    try:
        yield
    finally:
        _BAND.reset(token)


def _near_target() -> float | None:
    """The catalog's near-target band: the served app's when a page is being served, else the one of
    `near_target_of` (the review packet's); a bare `cell` has none."""
    if has_app_context() and "cityscore" in current_app.extensions:
        return current_app.extensions["cityscore"]["catalog"].near_target
    return _BAND.get()


def cell(score: float | None, state: str | None = None) -> Cell:
    """`state`: the window's (WindowScore.state), which tells insufficient data from no score.
    A catalog with a near-target band shows the scores in it as "near" (docs/scoring.md §1)."""
    shown = standing(score, _near_target())
    label = wording.STANDING_WORDS[shown] if shown != "none" else wording.no_score_words(state)
    return Cell(None if shown == "none" else score, wording.score_text(score, none=""), shown,
                wording.MARKS[shown], label, shown == "none" and label == wording.INSUFFICIENT)


def window_cell(result: WindowScore) -> Cell:
    return cell(result.score, result.state)


def figure(value: float | None) -> str:
    """A numerator or denominator for the audit columns: whole numbers plain, others to 2 or 4 places."""
    if value is None:
        return ""
    if value == int(value):
        return f"{value:,.0f}"
    text = f"{value:,.4f}" if abs(value) < 10 else f"{value:,.2f}"
    return text.rstrip("0").rstrip(".")


# -- the history chart -------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Chart:
    """Geometry of the history chart, in the SVG's own units; the template draws it."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    paths: list[str]
    lone_points: list[tuple[float, float]]  # a score between two gaps: no line to draw, so a dot
    latest: tuple[float, float, str] | None
    target_y: float
    y_ticks: list[Tick]
    x_ticks: list[Tick]


_STEPS = (0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 20, 50)


def _scale(low: float, high: float) -> tuple[float, float, float]:
    """A nice axis from `low` to `high` with at most six intervals."""
    step = next((s for s in _STEPS if (high - low) / s <= 6), _STEPS[-1])
    return max(0.0, math.floor(low / step) * step), math.ceil(high / step) * step, step


def history_chart(series: Sequence[tuple[date, WindowScore]], width: int = 720, height: int = 260) -> Chart:
    """Lay out a line of scores by date, broken where the score is null, with the target line at 1."""
    left, right, top, bottom = 44, width - 16, 14, height - 30
    scores = [s.score for _, s in series if s.score is not None]
    low = min([1.0, *scores])
    high = max([1.0, *scores])
    pad = max(0.05, (high - low) * 0.08)
    y_min, y_max, step = _scale(low - pad, high + pad)

    def y(value: float) -> float:
        return round(bottom - (value - y_min) / (y_max - y_min) * (bottom - top), 1)

    count = max(len(series) - 1, 1)

    def x(index: int) -> float:
        return round(left + index / count * (right - left), 1)

    runs, run = [], []
    for index, (_, result) in enumerate(series):
        if result.score is None:
            if run:
                runs.append(run)
            run = []
            continue
        run.append((x(index), y(result.score)))
    if run:
        runs.append(run)
    latest = None
    if series and series[-1][1].score is not None:
        latest = (x(len(series) - 1), y(series[-1][1].score), cell(series[-1][1].score).text)

    y_ticks = [Tick(y(y_min + i * step), f"{y_min + i * step:.2f}") for i in range(round((y_max - y_min) / step) + 1)]
    x_ticks = [Tick(x(i), f"{day:%b} {day.day}") for i, (day, _) in enumerate(series) if day.day == 1]
    return Chart(width, height, left, right, top, bottom,
                 ["M" + " L".join(f"{px},{py}" for px, py in points) for points in runs if len(points) > 1],
                 [points[0] for points in runs if len(points) == 1], latest, y(1.0), y_ticks, x_ticks)


@dataclass(frozen=True)
class NoteMark:
    """A note's day on the history chart: a line at its x, titled with its words."""

    x: float
    day: date
    label: str


def note_marks(chart: Chart, series: Sequence[tuple[date, WindowScore]], notes: Sequence[Note]) -> list[NoteMark]:
    """Where each note's day falls on the chart (as history_chart places the days); notes on days
    outside the chart are left off it, and a day with several notes has one mark naming them all."""
    index = {day: i for i, (day, _) in enumerate(series)}
    count = max(len(series) - 1, 1)
    words: dict[date, list[str]] = {}
    for note in notes:
        if note.day in index:
            words.setdefault(note.day, []).append(note.text)
    return [NoteMark(round(chart.left + index[day] / count * (chart.right - chart.left), 1), day,
                     f"{long_date(day)}: " + " · ".join(texts)) for day, texts in sorted(words.items())]


def history_summary(series: Sequence[tuple[date, WindowScore]], window: str) -> str:
    """The chart in one paragraph, for screen readers and anyone who cannot see it."""
    if not series:
        return "No history."
    first, last = series[0][0], series[-1][0]
    scored = [(day, s.score) for day, s in series if s.score is not None]
    span = f"{window.capitalize()} score for each day from {long_date(first)} to {long_date(last)}."
    if not scored:
        return f"{span} No scores in this period."
    latest = cell(series[-1][1].score)
    lowest = min(scored, key=lambda item: item[1])
    highest = max(scored, key=lambda item: item[1])
    # Near target (a catalog's band) is still below target: not met.
    met = sum(1 for _, score in scored if standing(score) != "below")
    latest_words = (f"Latest {latest.text} ({latest.label})." if latest.score is not None
                    else "No score on the last day.")
    return (f"{span} {latest_words} Lowest {cell(lowest[1]).text} on {short_date(lowest[0])}, highest "
            f"{cell(highest[1]).text} on {short_date(highest[0])}. On or above target on {met} of "
            f"{len(scored)} days with a score.")


# -- dates and times in the city's words -------------------------------------------------------


def long_date(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


def short_date(day: date) -> str:
    return f"{day.day} {day:%B}"


def local_time(moment: datetime, catalog: Catalog) -> str:
    """A moment as the city reads it: '1 July 2026, 7:05 AM EDT'."""
    local = moment.astimezone(catalog.zone)
    hour = local.hour % 12 or 12
    return f"{local.day} {local:%B %Y}, {hour}:{local:%M} {'AM' if local.hour < 12 else 'PM'} {local:%Z}"


def span_words(span: tuple[date, date]) -> str:
    """A window's first and last day in words, with the year ('3–9 February 2025')."""
    return wording.span_in_words(*span, year=True)


@dataclass(frozen=True)
class WindowDates:
    """The days a window of the board covers: for machines (start, end) and in words ('3–9 February')."""

    start: date
    end: date
    words: str


def board_window_dates(catalog: Catalog, as_of: date) -> dict[str, WindowDates]:
    """Each window's days as of `as_of`, as the catalog defines the window (trailing or calendar)."""
    return {name: WindowDates(start, end, wording.span_in_words(start, end))
            for name, (start, end) in spans(catalog.windows, as_of).items()}


def in_force_since(metric: Metric, as_of: date) -> date | None:
    """The day the target in force on `as_of` took effect (the first one's before any took effect)."""
    targets = metric.targets
    if not targets:
        return None
    return max((change.from_ for change in targets if change.from_ <= as_of), default=targets[0].from_)


# -- the backlog and the cases behind a score (docs/scoring.md §5a) ----------------------------


@dataclass(frozen=True)
class Projection:
    """An alert window's score if every overdue case were closed late now."""

    window: str
    cell: Cell
    numerator: float | None
    denominator: float | None


@dataclass(frozen=True)
class BacklogShown:
    """A case-fed metric's backlog as the pages show it beside its score, with the same in words
    ("14 overdue · 9 due within a day · projected week 0.91 if closed now")."""

    overdue: int
    due_soon: int
    projections: list[Projection]
    words: str


def backlog_shown(fields: dict) -> BacklogShown:
    """The board's and metric page's view of `cases.case_fields`' entry for one metric ({"open": …,
    "projected": …}). A projection is said only when something is overdue: with nothing overdue it is
    the window's own score, already beside it."""
    overdue, due_soon = fields["open"]["overdue"], fields["open"]["due_soon"]
    projections = []
    for window, ahead in fields.get("projected", {}).items():
        # A null projection over cases is too few of them to score (the metric's min_denominator).
        state = "insufficient_data" if ahead["score"] is None and ahead["denominator"] else None
        projections.append(Projection(window, cell(ahead["score"], state), ahead["numerator"], ahead["denominator"]))
    parts = [f"{overdue:,} overdue" if overdue else "none overdue",
             f"{due_soon:,} due within a day" if due_soon else "none due within a day"]
    if overdue:
        for projection in projections:
            shown = projection.cell.text if projection.cell.score is not None else projection.cell.label
            parts.append(f"projected {projection.window} {shown} if closed now")
    return BacklogShown(overdue, due_soon, projections if overdue else [], " · ".join(parts))


def attribute_heading(name: str) -> str:
    """A case attribute's name as a column heading: 'neighborhood' -> 'Neighborhood'."""
    words = name.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:]


@dataclass(frozen=True)
class CasesShown:
    """What a case-fed metric's page shows of the cases behind its scores, for one window."""

    window: str
    span: tuple[date, date]
    public: bool  # the catalog's public_case_lists: False keeps the lists off the public pages
    oldest_overdue: list[CaseLine]
    overdue_total: int
    latest_late: list[CaseLine]
    late_total: int
    breakdowns: list[tuple[str, list[Group]]]


def cases_shown(store, catalog: Catalog, metric: Metric, as_of: date, window: str,
                timeout_s: float | None) -> CasesShown:
    """The metric page's case lists and breakdowns: two bounded reads (the window's closed cases,
    the cases open at the end of the as-of day), then the core's rules (shared/core/cases.py), so the
    page says what `cityscore cases` and `cityscore breakdown` say. A metric whose case lists are
    not public reads no open cases, and lists none."""
    span = catalog.windows[window].span(as_of)
    if not metric.public_case_lists and not metric.breakdowns:
        return CasesShown(window, span, False, [], 0, [], 0, [])
    closed = store.cases_closed(metric.id, span[0], span[1], timeout_s)
    groups = [(by, breakdown(closed, catalog, metric.id, by, as_of, window)) for by in metric.breakdowns]
    if not metric.public_case_lists:
        return CasesShown(window, span, False, [], 0, [], 0, groups)
    # Only the oldest overdue cases are read (the backlog of a busy metric is thousands), with their count.
    overdue_count, overdue = store.case_page(metric.id, as_of, OVERDUE, window, CASES_SHOWN, 0, timeout_s,
                                             oldest_first=True)
    late = cases_behind(closed, catalog, metric.id, as_of, LATE, window)  # (closed cases are read for breakdowns)
    return CasesShown(window, span, True, overdue, overdue_count, late[:CASES_SHOWN], len(late),
                      groups)


def alert_windows(catalog: Catalog) -> tuple[str, ...]:
    """The windows whose projected score the pages show: the app's `projected_windows` (the
    notifier's NOTIFIER_ALERT_WINDOWS, as the read API's board) when it gives them, else the week;
    only those of this catalog."""
    named = _parts().get("projected_windows") or DEFAULT_ALERT_WINDOWS
    return tuple(window for window in named if window in catalog.windows)


def backlogs_shown(board: Scoreboard, metric_ids: Sequence[str] | None = None) -> dict[str, BacklogShown]:
    """Each case-fed metric's backlog beside its score: one grouped count by the database for the
    whole board (ScoreReader.case_fields), bounded by the pages' read timeout."""
    parts = _parts()
    catalog: Catalog = parts["catalog"]
    if not any(metric.feed is Feed.CASES for metric in catalog.metrics):
        return {}
    fields = parts["store"].case_fields(board, alert_windows(catalog), parts["read_timeout_s"])
    return {metric_id: backlog_shown(shown) for metric_id, shown in fields.items()
            if metric_ids is None or metric_id in metric_ids}


# -- the views ---------------------------------------------------------------------------------


def _parts() -> dict:
    return current_app.extensions["cityscore"]


class BadRequestPage(HTTPException):
    """A page asked for with a parameter it cannot show: a 400 page that says why."""

    code = 400


class BadDate(BadRequestPage):
    pass


def requested_window(catalog: Catalog) -> str:
    """The window whose cases the metric page lists (`window`), by default the first alert window."""
    raw = request.args.get("window")
    if raw is None or raw == "":
        return (alert_windows(catalog) or tuple(catalog.windows))[0]
    if raw not in catalog.windows:
        raise BadRequestPage(f"The window “{raw}” is not one of the {catalog.city} catalog's windows: "
                             f"{', '.join(catalog.windows)}.")
    return raw


def requested_as_of() -> tuple[date | None, date, date | None]:
    """The `as_of` asked for (None for the current board), the current as-of date and the first
    day with data (None: none yet). A date outside them is refused before anything is scored."""
    raw = request.args.get("as_of")
    first, current, _ = _parts()["as_of_range"]()
    if raw is None or raw == "":
        return None, current, first
    try:
        asked = date.fromisoformat(raw)
    except ValueError:
        raise BadDate(f"“{raw}” is not a date written YYYY-MM-DD.") from None
    if asked > current:
        raise BadDate(f"There are no scores after {long_date(current)}, the last complete day.")
    earliest = current if first is None else min(first, current)
    if asked < earliest:
        raise BadDate(f"There are no scores before {long_date(earliest)}, the first day with data.")
    return asked, current, first


@cache
def _asset_version(filename: str) -> str:
    return hashlib.sha256((Path(pages.static_folder) / filename).read_bytes()).hexdigest()[:10]


def asset(filename: str) -> str:
    """The URL of a static file, versioned by its content so a new release is never served stale."""
    return url_for("pages.static", filename=filename, v=_asset_version(filename))


@pages.context_processor
def _helpers() -> dict:
    return {"asset": asset, "long_date": long_date, "short_date": short_date, "cell": cell, "figure": figure,
            "window_cell": window_cell, "lateness_words": wording.lateness_words, "percent": wording.percent,
            "city": _parts()["catalog"].city, "show_slack_posts": _show_slack_posts()}


@pages.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    return response


@pages.errorhandler(BadRequestPage)
@pages.errorhandler(404)
def _error(exc: HTTPException):
    title = "Not found" if exc.code == 404 else "Bad request"
    return render_template("pages/error.html", title=title, message=exc.description), exc.code


@pages.errorhandler(ReadTimedOut)
def _busy(exc: ReadTimedOut):
    message = f"Computing these scores took longer than the {exc.timeout_s:g} seconds allowed. Please try again later."
    return (render_template("pages/error.html", title="Busy", message=message), 503,
            {"Retry-After": "5", "Cache-Control": "no-store"})


def stale_words(catalog: Catalog, board: Scoreboard) -> dict[str, str]:
    """Each stale metric's mark as the pages show it: "No data since 3 February" (docs/scoring.md §4c)."""
    return {metric_id: words[:1].upper() + words[1:]
            for metric_id, words in stale_marks(catalog.metrics, board.last_data, board.as_of).items()}


@pages.get("/")
def board() -> tuple[str, int, dict[str, str]]:
    """The board: the overall CityScore, then one row per metric, for the current or a chosen day."""
    parts = _parts()
    with parts["store"].one_connection(parts["read_timeout_s"]):  # the API's reads, on one connection
        return _board(parts)


def _board(parts: dict) -> tuple[str, int, dict[str, str]]:
    catalog: Catalog = parts["catalog"]
    asked, current, first = requested_as_of()
    scoreboard, updated = parts["board_for"](asked)
    if updated is not None:
        published = datetime.fromisoformat(updated)
        if published.tzinfo is None:  # the database keeps UTC; SQLite forgets the zone
            published = published.replace(tzinfo=timezone.utc)
        updated_words = f"Last updated {local_time(published, catalog)}"
        updated_iso = published.isoformat()
    else:
        now = parts["clock"].now()
        updated_words = f"Computed on request at {local_time(now, catalog)}"
        updated_iso = now.isoformat()
    rows = [(metric, {window: window_cell(scoreboard.metrics[metric.id][window]) for window in catalog.windows})
            for metric in catalog.metrics]
    as_of = scoreboard.as_of
    html = render_template(
        "pages/board.html",
        catalog=catalog,
        windows=list(catalog.windows),
        as_of=as_of,
        current=current,
        explicit=asked is not None and asked != current,
        city_cells={window: cell(scoreboard.cityscore.get(window)) for window in catalog.windows},
        dates=board_window_dates(catalog, as_of),
        rows=rows,
        stale=stale_words(catalog, scoreboard),
        backlogs=backlogs_shown(scoreboard),
        updated_words=updated_words,
        updated_iso=updated_iso,
        refresh=REFRESH_SECONDS if asked is None or asked == current else None,
        first=first,
        previous_day=as_of - timedelta(days=1) if first is not None and as_of > first else None,
        next_day=as_of + timedelta(days=1) if as_of < current else None,
    )
    return html, 200, {"Cache-Control": "public, max-age=30"}


def _show_slack_posts() -> bool:
    return _parts()["settings"].scorer_show_slack_posts


def recent_posts(store, catalog: Catalog, limit: int = 20) -> list[dict]:
    """The notifier's newest Slack posts, so a laptop without Slack still sees them."""
    from services.notifier.outbox import recent

    try:
        with store.engine.connect() as conn:
            posts = recent(conn, limit)
    except Exception:  # noqa: BLE001 - no notifier tables (an API-only database): nothing to show
        return []
    for post in posts:
        post["when"] = local_time(post["sent_at"] or post["created_at"], catalog)
    return posts


@pages.get("/slack-posts")
def slack_posts() -> tuple[str, int, dict[str, str]]:
    """The notifier's recent posts, for a laptop without Slack (the demo); not found unless enabled.

    They are internal (alert threads, staff notes, Slack user ids, channel names), so the
    public board never shows them, and this page exists only where SCORER_SHOW_SLACK_POSTS
    says so.
    """
    if not _show_slack_posts():
        abort(404)
    parts = _parts()
    html = render_template("pages/posts.html", posts=recent_posts(parts["store"], parts["catalog"]),
                           refresh=REFRESH_SECONDS)
    return html, 200, {"Cache-Control": "no-store"}


@pages.get("/metric/<metric_id>")
def metric(metric_id: str) -> tuple[str, int, dict[str, str]]:
    """One metric: what it measures, how it is scored, its scores with their parts, and its history."""
    parts = _parts()
    catalog: Catalog = parts["catalog"]
    found = catalog.by_id.get(metric_id)
    if found is None:
        abort(404, f"There is no metric “{metric_id}” in the {catalog.city} catalog.")
    asked, current, _ = requested_as_of()
    # Refused before anything is read or scored, as a bad date is.
    window = requested_window(catalog) if found.feed is Feed.CASES else None
    scoreboard, _ = parts["board_for"](asked)
    as_of = scoreboard.as_of
    series = parts["store"].history(metric_id, HISTORY_WINDOW, HISTORY_DAYS, as_of, parts["read_timeout_s"])
    # One metric's year of day scores: cheap enough for its page (docs/scoring.md §4b).
    ranked = parts["store"].percentiles(as_of, [metric_id], parts["read_timeout_s"])[metric_id]
    department = catalog.departments_by_id.get(found.department)
    days = spans(catalog.windows, as_of)
    scores = [(window, days[window], scoreboard.metrics[metric_id][window]) for window in catalog.windows]
    numerator_words, denominator_words = wording.audit_terms(found)
    # The public page shows the public notes only: a note is internal unless marked public.
    notes = notes_for(parts["store"].engine, [metric_id], series[0][0] if series else as_of, as_of,
                      public_only=True)
    chart = history_chart(series)
    backlog, listed = None, None
    if window is not None:
        backlog = backlogs_shown(scoreboard, [metric_id]).get(metric_id)
        listed = cases_shown(parts["store"], catalog, found, as_of, window, parts["read_timeout_s"])
    html = render_template(
        "pages/metric.html",
        metric=found,
        department=department.name if department else found.department,
        how_scored=wording.how_scored(found),
        target=wording.target_sentence(found, on=as_of),
        # The history of targets only when there is one: a single target is the Target above.
        targets=wording.target_history(found) if len(found.targets) > 1 else [],
        in_force_since=in_force_since(found, as_of),
        threshold=wording.threshold_words(found),
        sla=wording.sla_words(found),
        numerator_words=numerator_words,
        denominator_words=denominator_words,
        scores=scores,
        in_words={window: wording.figures(found, result) for window, _, result in scores},
        percentile=ranked,
        percentile_words=wording.percentile_words(ranked),
        stale=stale_words(catalog, scoreboard).get(metric_id),
        expected=expected_words(found),
        span_words=span_words,
        # A window scored with another target than the one stated above (it ended before a change)
        # says so beside its score; the JSON gives every window's "target".
        window_targets={window: wording.earlier_target(found, span, as_of, year=True) for window, span, _ in scores},
        as_of=as_of,
        board_as_of=as_of if asked is not None and asked != current else None,
        series=series,
        history_window=HISTORY_WINDOW,
        chart=chart,
        summary=history_summary(series, HISTORY_WINDOW),
        notes=notes,
        note_marks=note_marks(chart, series, notes),
        backlog=backlog,
        listed=listed,
        case_time=lambda moment: wording.case_time(moment, catalog.zone),
        case_dict=lambda line: case_line_dict(line, catalog),
        attribute_heading=attribute_heading,
        windows=list(catalog.windows),
    )
    return html, 200, {"Cache-Control": "public, max-age=30"}
