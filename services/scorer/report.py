"""The monthly review packet: the briefing a department (or a cabinet, or the city) reads before its
Stat meeting, as a PDF or an HTML file.

For each metric: the calendar month's score and the catalog's windows as of the month's last day
(against the target in force, with their dates), the history chart, the late and overdue cases
and the breakdowns where the catalog has them, the month's follow-up alerts (fired, acknowledged,
owner, notes, resolved), and the targets in force. Every figure comes from `ScoreReader`, the read
API's and the pages' reader; the packet is rendered from the pages' own templates and stylesheet
(templates/pages/report.html imports the pages' macros), and WeasyPrint turns that HTML into the PDF.

A plain module: `cityscore report` (services/scorer/cli.py) and the notifier's monthly post call
`build_packet` and `render_pdf` / `render_html`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.engine import Engine

from shared.core import wording
from shared.core.cases import LATE, OVERDUE, CaseLine, Group, end_of_day
from shared.core.catalog import Catalog, Feed, Metric
from shared.core.scoring import WindowScore, as_of_at
from shared.core.windows import Window, month_end
from shared.core.record import Action, Note
from shared.store.alert_history import AlertRecord, alerts_between
from shared.store.record import actions_for, notes_for
from shared.store.score_reader import ScoreReader

from .pages import (HISTORY_DAYS, HISTORY_WINDOW, BacklogShown, attribute_heading, backlog_shown, cell, figure,
                    history_chart, history_summary, in_force_since, local_time, long_date, near_target_of,
                    note_marks, short_date, span_words, window_cell)

HERE = Path(__file__).resolve().parent
# The calendar month under review, scored beside the catalog's own windows (which may be trailing
# days: Boston's "month" is the last 30 days).
REVIEW_MONTH = "calendar month"
# The packet lists this many of the oldest overdue and of the latest late cases (the counts are whole).
CASES_LISTED = 5
# The projected score beside the backlog: the week's, as the pages show by default.
PROJECTED_WINDOWS = ("week",)


class PacketRefused(ValueError):
    """A packet asked for with an option it cannot use; the message names the option and why."""


def parse_month(text: str) -> tuple[date, date]:
    """'2026-05' -> (1 May 2026, 31 May 2026)."""
    found = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not found or not 1 <= int(found[2]) <= 12:
        raise PacketRefused(f"--month: {text!r} is not a month written YYYY-MM")
    year, month = int(found[1]), int(found[2])
    return date(year, month, 1), month_end(year, month)


def complete_month(text: str, catalog: Catalog, now: datetime) -> tuple[date, date]:
    """`parse_month`, refusing a month whose last day is after the last complete day at `now` (yesterday
    in the city's time, the day the scorer's scores are as of): its figures would be "as of" a day that
    has not happened."""
    first, last = parse_month(text)
    complete = as_of_at(now, catalog)
    if last > complete:
        raise PacketRefused(f"--month: {text.strip()} is not over: its last day, {last.day} {last:%B %Y}, is after "
                            f"the last complete day, {complete.day} {complete:%B %Y} (yesterday in "
                            f"{catalog.zone.key}); review a month that has ended")
    return first, last


@dataclass(frozen=True)
class Scope:
    """Whose packet: one department, a cabinet's departments, or the whole city."""

    kind: str  # department | cabinet | city
    id: str | None
    name: str
    departments: tuple[str, ...]


def scope_of(catalog: Catalog, department: str | None = None, cabinet: str | None = None) -> Scope:
    if department and cabinet:
        raise PacketRefused("--department and --cabinet: give one of them, not both")
    if department:
        found = catalog.departments_by_id.get(department)
        if found is None:
            raise PacketRefused(f"--department: no department {department!r} in the {catalog.city} catalog "
                                f"({', '.join(d.id for d in catalog.departments)})")
        return Scope("department", found.id, found.name, (found.id,))
    if cabinet:
        found = catalog.cabinets_by_id.get(cabinet)
        if found is None:
            named = ", ".join(c.id for c in catalog.cabinets) or "it has none"
            raise PacketRefused(f"--cabinet: no cabinet {cabinet!r} in the {catalog.city} catalog ({named})")
        return Scope("cabinet", found.id, found.name, tuple(found.departments))
    return Scope("city", None, f"City of {catalog.city}", tuple(d.id for d in catalog.departments))


# -- what the packet shows ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreRow:
    window: str
    span: tuple[date, date]
    result: WindowScore
    words: str  # the figures in words (wording.figures)
    target: str | None  # the target it was scored with when not the one in force at the month's end


@dataclass(frozen=True)
class CasesSummary:
    window: str
    span: tuple[date, date]
    late_total: int
    latest_late: list[CaseLine]
    overdue_total: int
    oldest_overdue: list[CaseLine]
    breakdowns: list[tuple[str, list[Group]]]


@dataclass(frozen=True)
class AlertShown:
    id: int
    window: str
    status: str
    fired: str
    first_score: str
    acknowledged: str | None
    owner: str | None
    notes: list[tuple[str, str, str]]  # (when, who, text)
    resolved: str | None


@dataclass(frozen=True)
class Section:
    metric: Metric
    department: str
    target: str
    in_force_since: date | None
    targets: list[tuple[date, str]]
    scores: list[ScoreRow]
    series: list[tuple[date, WindowScore]]
    chart: object
    marks: list  # notes on the chart's days (pages.note_marks)
    summary: str
    backlog: BacklogShown | None
    cases: CasesSummary | None
    alerts: list[AlertShown]
    notes: list[Note]  # on the month's days, internal ones too: the packet is the department's
    open_actions: list[Action]  # open at the month's end (`open_at`), by due day
    closed_actions: list[Action]  # closed in the month, with their outcome


@dataclass(frozen=True)
class Packet:
    city: str
    scope: Scope
    first: date
    last: date
    made_at: str
    sections: list[Section]
    alerts: list[AlertRecord] = field(default_factory=list)  # the month's alerts as read, for the record
    made_on: date | None = None  # the city's day it was made

    def overdue(self, action: Action) -> bool:
        """An action open at the month's end was overdue then when it was due on or before the month's
        last day (due before the day after it: `Action.overdue`'s rule on that day), closed since or not."""
        return action.due <= self.last


def open_at(action: Action, moment: datetime) -> bool:
    """Whether `action` was open at `moment` (the month's end, the city's midnight): recorded before it
    and not closed before it. The packet reviews the month as it ended, not as things stand now."""
    return action.created_at < moment and (action.closed_at is None or action.closed_at >= moment)


def review_catalog(catalog: Catalog) -> Catalog:
    """The catalog with the calendar month added as a window, so that the reader scores the month under
    review and counts its cases with the same rules as every other window."""
    windows = {**catalog.windows, REVIEW_MONTH: Window(period="month")}
    return catalog.model_copy(update={"windows": windows})


def _alert_shown(alert: AlertRecord, catalog: Catalog) -> AlertShown:
    acknowledged = None
    if alert.acknowledged_at is not None:
        acknowledged = local_time(alert.acknowledged_at, catalog) + (f" by {alert.acknowledged_by}"
                                                                      if alert.acknowledged_by else "")
    resolved = None
    if alert.resolved_at is not None:
        resolved = local_time(alert.resolved_at, catalog) + (f" ({alert.resolved_reason})"
                                                              if alert.resolved_reason else "")
    return AlertShown(alert.id, alert.window, alert.status, local_time(alert.fired_at, catalog),
                      wording.score_text(alert.first_score), acknowledged, alert.owner,
                      [(local_time(note.created_at, catalog), note.user_id, note.text) for note in alert.notes],
                      resolved)


def build_packet(engine: Engine, catalog: Catalog, month: str, scope: Scope, made_at: datetime,
                 timeout_s: float | None = None) -> Packet:
    """Read everything the packet shows for `month` ('YYYY-MM', ended by `made_at`) and `scope`."""
    complete_month(month, catalog, made_at)
    with near_target_of(catalog):  # the backlog's projections and the chart's words mark scores as the pages
        return _build_packet(engine, catalog, month, scope, made_at, timeout_s)


def _build_packet(engine: Engine, catalog: Catalog, month: str, scope: Scope, made_at: datetime,
                  timeout_s: float | None) -> Packet:
    first, last = parse_month(month)
    reviewing = review_catalog(catalog)
    reader = ScoreReader(engine, reviewing)
    metrics = [m for m in catalog.metrics if m.department in scope.departments]
    board = reader.scoreboard(last, timeout_s)
    backlogs = (reader.case_fields(board, [w for w in PROJECTED_WINDOWS if w in catalog.windows], timeout_s)
                if any(m.feed is Feed.CASES for m in metrics) else {})
    # Open at some moment of the month: from the end of the day before its first to the end of its last.
    alerts = alerts_between(engine, [m.id for m in metrics], end_of_day(first - timedelta(days=1), catalog),
                            end_of_day(last, catalog))
    windows = [REVIEW_MONTH, *catalog.windows]
    ids = [m.id for m in metrics]
    # Notes and actions on the record (shared/store/record.py): the chart's days' notes, every action
    # open at the month's end (whatever became of it since) or closed in the month.
    chart_start = last - timedelta(days=HISTORY_DAYS - 1)
    notes = notes_for(engine, ids, chart_start, last) if ids else []
    month_start, month_end_at = end_of_day(first - timedelta(days=1), catalog), end_of_day(last, catalog)
    actions = actions_for(engine, metrics=ids) if ids else []
    sections = []
    for metric in metrics:
        department = catalog.departments_by_id.get(metric.department)
        scores = []
        for window in windows:
            span = reviewing.windows[window].span(last)
            result = board.metrics[metric.id][window]
            scores.append(ScoreRow(window, span, result, wording.figures(metric, result),
                                   wording.earlier_target(metric, span, last, year=True)))
        series = reader.history(metric.id, HISTORY_WINDOW, HISTORY_DAYS, last, timeout_s)
        chart = history_chart(series)
        mine = [note for note in notes if note.metric == metric.id]
        cases = None
        if metric.feed is Feed.CASES:
            # Counted by the database, with only the cases listed read.
            late_count, late = reader.case_page(metric.id, last, LATE, REVIEW_MONTH, CASES_LISTED, 0, timeout_s)
            overdue_count, overdue = reader.case_page(metric.id, last, OVERDUE, REVIEW_MONTH, CASES_LISTED, 0,
                                                      timeout_s, oldest_first=True)
            cases = CasesSummary(REVIEW_MONTH, (first, last), late_count, late, overdue_count,
                                 overdue,
                                 [(by, reader.breakdown(metric.id, by, last, REVIEW_MONTH, timeout_s))
                                  for by in metric.breakdowns])
        sections.append(Section(
            metric=metric,
            department=department.name if department else metric.department,
            target=wording.target_sentence(metric, on=last),
            in_force_since=in_force_since(metric, last),
            targets=wording.target_history(metric),
            scores=scores,
            series=series,
            chart=chart,
            marks=note_marks(chart, series, mine),
            summary=history_summary(series, HISTORY_WINDOW),
            backlog=backlog_shown(backlogs[metric.id]) if metric.id in backlogs else None,
            cases=cases,
            alerts=[_alert_shown(a, catalog) for a in alerts if a.metric == metric.id],
            notes=[note for note in mine if first <= note.day <= last],
            open_actions=[a for a in actions if a.metric == metric.id and open_at(a, month_end_at)],
            closed_actions=[a for a in actions if a.metric == metric.id and not a.is_open
                            and a.closed_at is not None and month_start <= a.closed_at < month_end_at],
        ))
    return Packet(catalog.city, scope, first, last, local_time(made_at, catalog), sections, alerts,
                  made_at.astimezone(catalog.zone).date())


# -- rendering ---------------------------------------------------------------------------------


@cache
def _environment() -> Environment:
    """The pages' templates outside Flask: report.html imports the pages' macros, which need no request."""
    environment = Environment(loader=FileSystemLoader(HERE / "templates"),
                              autoescape=select_autoescape(["html"]), trim_blocks=False)
    environment.globals.update(cell=cell, window_cell=window_cell, figure=figure, long_date=long_date,
                               short_date=short_date, span_words=span_words, percent=wording.percent,
                               lateness_words=wording.lateness_words, attribute_heading=attribute_heading)
    return environment


def _stylesheets() -> str:
    """The pages' stylesheet, then the packet's print rules; inlined, so the HTML file stands alone."""
    return "\n".join((HERE / "static" / name).read_text(encoding="utf-8") for name in ("board.css", "report.css"))


def chart_style(stylesheet: str) -> str:
    """The stylesheet's rules that paint SVG (fill, stroke), with its custom properties put in: the chart's
    own <style>, since WeasyPrint styles an SVG from nothing else (and reads no var() there)."""
    names = dict(re.findall(r"(--[\w-]+)\s*:\s*([^;]+);", stylesheet))
    rules = []
    for selector, body in re.findall(r"([^{}]+)\{([^{}]*)\}", re.sub(r"/\*.*?\*/", "", stylesheet, flags=re.S)):
        if re.search(r"(^|;)\s*(fill|stroke)\s*:", body):
            body = re.sub(r"var\((--[\w-]+)\)", lambda found: names.get(found[1], "currentColor").strip(), body)
            if "paint-order" in body:  # a white halo under a label: WeasyPrint would paint it over the text
                body = ";".join(part for part in body.split(";")
                                if part.split(":")[0].strip() not in ("paint-order", "stroke", "stroke-width",
                                                                      "stroke-linejoin"))
            rules.append(f"{selector.strip()} {{{body.strip()}}}")
    return "\n".join(rules)


def render_html(packet: Packet, catalog: Catalog) -> str:
    stylesheet = _stylesheets()
    with near_target_of(catalog):  # the catalog's band, as the department page marks its scores
        return _environment().get_template("pages/report.html").render(
            packet=packet, city=packet.city, stylesheet=stylesheet, chart_style=chart_style(stylesheet),
            case_time=lambda moment: wording.case_time(moment, catalog.zone))


def render_pdf(packet: Packet, catalog: Catalog) -> bytes:
    return print_pdf(render_html(packet, catalog))


def print_pdf(html: str) -> bytes:
    """The packet's HTML printed to PDF, fetching nothing: its stylesheet and chart are inline, so any
    URL it names (an image, a stylesheet, a font; over the network or a file:// on this machine) is
    refused, and no text in it can make the printer read a local file or call a server. Only data:
    URIs, which carry their content in themselves, are read."""
    from weasyprint import HTML  # loaded on use: Pango is needed only to print
    from weasyprint.urls import URLFetcher

    # The pages' stylesheet is for browsers: WeasyPrint warns of every rule it does not print (the SVG
    # rules, which the chart carries itself, and the small-screen layout), line by line.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    fetcher = URLFetcher(allowed_protocols=("data",), allow_redirects=False)
    # No base URL: a relative one resolves to nothing rather than to a file beside the code.
    return HTML(string=html, url_fetcher=fetcher).write_pdf()


def file_name(packet: Packet, suffix: str = "pdf") -> str:
    who = packet.scope.id or "city"
    return f"cityscore-review-{who}-{packet.first:%Y-%m}.{suffix}"
