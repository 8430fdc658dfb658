"""Slack messages as Block Kit, built by pure functions, and a check of Block Kit's limits.

Marks never rely on colour alone: 🔴 below 1 ▼, ⚪ at 1 =, 🟢 above 1 ▲, — no score. A metric's
figures and target are worded by shared.core.wording, as on the public page and in the terminal.
Every score says the days its window covers, as the catalog defines the window (trailing days or
a calendar period), and a target beside a score is the one in force on the window's last day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Iterable, Mapping, Sequence

from shared.core import wording
from shared.core.catalog import Catalog, Feed, Metric
from shared.core.scoring import INSUFFICIENT_DATA, Scoreboard, WindowScore, needing_follow_up, standing
from shared.core.staleness import FeedStatus, no_data_words, stale_marks
from shared.core.windows import Window, spans

# Block Kit limits (docs.slack.dev/reference/block-kit): per message and per element.
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTION_ELEMENTS = 25
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_TABLE_ROWS = 100
MAX_TABLE_CELLS = 20
MAX_TABLES = 1
MAX_MESSAGE_TEXT = 4000  # Slack truncates the top-level text beyond 40,000; keep notifications short

ACKNOWLEDGE = "cityscore_acknowledge"
TAKE_OWNERSHIP = "cityscore_take_ownership"
ADD_NOTE = "cityscore_add_note"
NOTE_MODAL = "cityscore_note_modal"
SHOW_CASES = "cityscore_show_cases"
RECORD_ACTION = "cityscore_record_action"  # opens record_blocks.action_modal


# -- numbers and marks ---------------------------------------------------------------


def shown(score: float | None) -> str:
    return wording.score_text(score)


_DOTS = {"below": "🔴", "near": "🟡", "at": "⚪", "above": "🟢"}


def mark(score: float | None, state: str | None = None, near_target: float | None = None) -> str:
    """A score with a mark that reads without colour (the dot repeats the mark for a glance).

    `state` (WindowScore.state) tells a window with data it cannot score ("insufficient data")
    from one with no score; `near_target`, the catalog's band, marks the scores in it (a board's
    cells; an alert's own score is below target, and says so)."""
    place = standing(score, near_target)
    if place == "none":
        return f"— {wording.no_score_words(state)}"
    return f"{_DOTS[place]} {score:.2f} {wording.MARKS[place]}"


def change(score: float | None, before: float | None) -> str:
    if score is None or before is None:
        return "no change to show"
    delta = score - before
    if round(delta, 2) == 0:
        return "unchanged since yesterday"
    return f"{'+' if delta > 0 else '−'}{abs(delta):.2f} since yesterday"


def escape(text: str) -> str:
    """People's words as Slack shows them, never as markup (Slack's mrkdwn escaping).

    `<…>` is how Slack writes mentions (`<!channel>`, `<@U…>`) and links
    (`<https://…|label>`), and `&` starts an entity: escaped, a note can neither ping
    everyone nor post a link as the bot. Only these three: *bold* or `code` in a note
    is harmless and may stay.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def section(text: str, **extra) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, MAX_SECTION_TEXT)}, **extra}


def header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": _clip(text, MAX_HEADER_TEXT), "emoji": True}}


def context(*texts: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(t, MAX_FIELD_TEXT)}
                                            for t in texts[:MAX_CONTEXT_ELEMENTS]]}


def button(text: str, action_id: str, value: str = "", *, url: str | None = None, style: str | None = None) -> dict:
    element = {"type": "button", "text": {"type": "plain_text", "text": _clip(text, MAX_BUTTON_TEXT)},
               "action_id": action_id}
    if value:
        element["value"] = value[:MAX_BUTTON_VALUE]
    if url:
        element["url"] = url
    if style:
        element["style"] = style
    return element


def _cell(text: str) -> dict:
    return {"type": "raw_text", "text": text}


def long_date(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


# -- the days a window covers -------------------------------------------------------------

Span = tuple[date, date]


def span_if_known(catalog: Catalog, window: str, as_of: date | None) -> Span | None:
    """The first and last day `window` covers as of `as_of`, as the catalog defines it; None when
    there is no as-of date or the catalog no longer has the window (an old alert still open)."""
    found = catalog.windows.get(window)
    return None if found is None or as_of is None else found.span(as_of)


def for_window(window: str, span: Span | None) -> str:
    """'for the week of 17–23 July', or 'this week' when the days are not known."""
    return f"for the {wording.window_in_words(window, *span)}" if span is not None else f"this {window}"


def in_window(window: str, span: Span | None) -> str:
    """'in the week of 17–23 July', or 'this week' when the days are not known."""
    return f"in the {wording.window_in_words(window, *span)}" if span is not None else f"this {window}"


# -- the daily scoreboard -----------------------------------------------------------------


def follow_up_order(board: Scoreboard, catalog: Catalog, window: str) -> list[Metric]:
    """Metrics below 1 in `window` first (lowest first), then the rest in catalog order."""
    below = needing_follow_up(board, catalog, window)
    named = {metric.id for metric in below}
    return below + [metric for metric in catalog.metrics if metric.id not in named]


def board_message(board: Scoreboard, previous: Scoreboard | None, catalog: Catalog, public_url: str,
                  follow_up_window: str = "week", chart: bool = True) -> dict:
    """The daily scoreboard for the mayor's office: text fallback and blocks."""
    windows = list(catalog.windows)
    ordered = follow_up_order(board, catalog, follow_up_window)
    below = needing_follow_up(board, catalog, follow_up_window)
    days = {window: wording.span_in_words(*span) for window, span in spans(catalog.windows, board.as_of).items()}
    follow_up_days = in_window(follow_up_window, span_if_known(catalog, follow_up_window, board.as_of))
    title = f"{catalog.city} CityScore — {long_date(board.as_of)}"
    overall = "  ·  ".join(f"{w.title()} {shown(board.cityscore.get(w))} ({days[w]})" for w in windows)
    text = (f"{title}: {overall}. {len(below)} metric{'s' if len(below) != 1 else ''} below 1 "
            f"{follow_up_days} need follow-up.")
    fields = []
    for window in windows[:MAX_FIELDS]:
        score = board.cityscore.get(window)
        before = previous.cityscore.get(window) if previous is not None else None
        fields.append({"type": "mrkdwn",
                       "text": f"*{window.title()}* · {days[window]}\n{mark(score)}\n_{change(score, before)}_"})
    blocks: list[dict] = [header(title), {"type": "section", "fields": fields}]
    if below:
        names = ", ".join(f"*{m.name.title()}* {shown(board.metrics[m.id][follow_up_window].score)}" for m in below)
        blocks.append(section(f":warning: *Needs follow-up* (below 1 {follow_up_days}): {names}"))
    else:
        blocks.append(section(f":white_check_mark: Every metric with a score is at or above 1 {follow_up_days}."))
    rows = [[_cell("Metric")] + [_cell(w.title()) for w in windows]]
    shown_metrics = ordered[: MAX_TABLE_ROWS - 1]
    # A stale feed is said beside its metric (docs/scoring.md §4c): its score may look fine.
    stale = stale_marks(catalog.metrics, board.last_data, board.as_of)
    for metric in shown_metrics:
        results = board.metrics[metric.id]
        name = metric.name.title() + (f" · {stale[metric.id]}" if metric.id in stale else "")
        rows.append([_cell(name)] + [_cell(mark(results[w].score, results[w].state, catalog.near_target))
                                     for w in windows])
    blocks.append({"type": "table", "column_settings": [{"is_wrapped": True}] + [{"align": "right"}] * len(windows),
                   "rows": [row[:MAX_TABLE_CELLS] for row in rows]})
    hidden = len(ordered) - len(shown_metrics)
    words = wording.STANDING_WORDS
    near = f"🟡 {wording.near_band_words(catalog.near_target)} · " if catalog.near_target is not None else ""
    notes = [f"🔴 {words['below']}, {wording.FOLLOW_UP} · {near}⚪ {words['at']} · 🟢 {words['above']} · "
             f"— {words['none']}",
             f"Scores as of {board.as_of.isoformat()}, the last full day: "
             + ", ".join(f"{window} {words}" for window, words in days.items()) + "."]
    if any(board.metrics[m.id][w].state == INSUFFICIENT_DATA for m in shown_metrics for w in windows):
        notes.append(f"— {wording.INSUFFICIENT}: data came in, but not enough to score.")
    if hidden:
        notes.append(f"{hidden} more metrics on the public board.")
    if chart:
        notes.append("The overall CityScore over 90 days is in the thread.")
    blocks.append(context(*notes))
    blocks.append({"type": "actions", "elements": [button("Open the public scoreboard", "cityscore_open_board",
                                                          url=public_url)]})
    return {"text": _clip(text, MAX_MESSAGE_TEXT), "blocks": blocks}


# -- the weekly recap ---------------------------------------------------------------------


@dataclass(frozen=True)
class RecapLine:
    metric: Metric
    score: float
    department: str
    owners: tuple[str, ...]


def recap_lines(board: Scoreboard, catalog: Catalog, owners: Mapping[str, Sequence[str]], window: str = "week",
                count: int = 5) -> tuple[list[RecapLine], list[RecapLine]]:
    """The `count` metrics exceeding most and the `count` most in need of follow-up."""
    departments = {d.id: d.name for d in catalog.departments}
    scored = [RecapLine(m, s, departments.get(m.department, m.department), tuple(owners.get(m.id, ())))
              for m in catalog.metrics if (s := board.metrics[m.id][window].score) is not None]
    exceeding = sorted((line for line in scored if standing(line.score) == "above"),
                       key=lambda line: -line.score)[:count]
    follow_up = sorted((line for line in scored if standing(line.score) == "below"),
                       key=lambda line: line.score)[:count]
    return exceeding, follow_up


def _recap_text(lines: list[RecapLine]) -> str:
    if not lines:
        return "_none this week_"
    out = []
    for rank, line in enumerate(lines, 1):
        who = " ".join(f"<@{owner}>" for owner in line.owners) or "no owner named"
        out.append(f"{rank}. *{line.metric.name.title()}* {mark(line.score)} — {line.department} ({who})")
    return "\n".join(out)


def recap_message(board: Scoreboard, catalog: Catalog, owners: Mapping[str, Sequence[str]], public_url: str) -> dict:
    exceeding, follow_up = recap_lines(board, catalog, owners)
    # The week the catalog defines as of the board's day: the trailing 7 days, or the last
    # complete calendar week (which a recap on a Monday reports in full).
    week = span_if_known(catalog, "week", board.as_of)
    title = f"{catalog.city} CityScore weekly recap — week of {wording.span_in_words(*week, year=True)}"
    text = (f"{title}: CityScore {for_window('week', week)} {shown(board.cityscore.get('week'))}; "
            f"{len(follow_up)} of the metrics most in need of follow-up listed.")
    blocks = [
        header(title),
        section(f"*CityScore {for_window('week', week)}:* {mark(board.cityscore.get('week'))}"),
        section("*Exceeding target most*\n" + _recap_text(exceeding)),
        section("*Most in need of follow-up*\n" + _recap_text(follow_up)),
        context("By weekly score: 1.0 is on target.", f"<{public_url}|The public scoreboard>"),
    ]
    return {"text": _clip(text, MAX_MESSAGE_TEXT), "blocks": blocks}


# -- follow-up alerts ---------------------------------------------------------------------


@dataclass(frozen=True)
class AlertView:
    """What an alert message shows; built from the alert row by the service."""

    alert_id: int
    metric: Metric
    window: str
    status: str  # firing | acknowledged | resolved
    score: float | None
    numerator: float | None
    denominator: float | None
    previous_score: float | None
    first_score: float | None
    department: str
    owners: tuple[str, ...]
    acknowledged_by: str | None = None
    owner: str | None = None
    as_of: date | None = None
    # The first and last day the window covers as of `as_of` (span_if_known), when known.
    span: Span | None = None

    @property
    def target_day(self) -> date | None:
        """The day whose target the score was computed with: the window's last."""
        return self.span[1] if self.span is not None else self.as_of


# The status an alert's message leads its context line with, by its status.
FOLLOW_UP_STATUS = {"firing": "Firing", "acknowledged": "Acknowledged", "resolved": "Resolved"}


def status_notes(view: AlertView, words: Mapping[str, str], mentions: str) -> list[str]:
    """An alert message's context line (a follow-up's, an at-risk alert's): its status in `words`,
    who acknowledged and owns it, its department and responders, and the day it is as of."""
    who = []
    if view.acknowledged_by:
        who.append(f"acknowledged by <@{view.acknowledged_by}>")
    if view.owner:
        who.append(f"owned by <@{view.owner}>")
    return [f"*{words[view.status]}*" + (f" — {', '.join(who)}" if who else ""),
            f"{view.department}" + (f" · {mentions}" if mentions else ""),
            f"as of {view.as_of.isoformat()}" if view.as_of else "latest score"]


def alert_actions(view: AlertView, cases: bool) -> dict:
    """An open alert's buttons (a follow-up's, an at-risk alert's): Acknowledge while firing, Take
    ownership while no one owns it, Add a note, Record an action, and Show cases when its metric is
    fed cases."""
    value = str(view.alert_id)
    elements = []
    if view.status == "firing":
        elements.append(button("Acknowledge", ACKNOWLEDGE, value, style="primary"))
    if not view.owner:
        elements.append(button("Take ownership", TAKE_OWNERSHIP, value))
    elements.append(button("Add a note", ADD_NOTE, value))
    elements.append(button("Record an action", RECORD_ACTION, value))
    if cases:
        elements.append(show_cases_button(view.alert_id))
    return {"type": "actions", "block_id": f"alert-{view.alert_id}", "elements": elements}


def alert_message(view: AlertView) -> dict:
    metric = view.metric
    result = WindowScore(view.score, view.numerator, view.denominator)
    trend = ""
    if view.previous_score is not None and view.score is not None:
        arrow = "▲" if view.score > view.previous_score else ("▼" if view.score < view.previous_score else "=")
        trend = f"{shown(view.previous_score)} → {shown(view.score)} {arrow}"
    period = for_window(view.window, view.span)
    if view.status == "resolved":
        lead = f"✅ *Resolved:* *{metric.name.title()}* is back at {mark(view.score)} {period}."
    else:
        lead = f"🔴 *{metric.name.title()}* scores {mark(view.score)} {period} and needs follow-up."
    mentions = " ".join(f"<@{owner}>" for owner in view.owners)
    named = (wording.window_in_words(view.window, *view.span) if view.span is not None else view.window)
    fields = [
        {"type": "mrkdwn", "text": f"*Score ({named})*\n{shown(view.score)}"},
        {"type": "mrkdwn", "text": f"*Figures ({view.window})*\n{wording.figures(metric, result)}"},
        {"type": "mrkdwn", "text": f"*Target*\n{wording.target_short(metric, on=view.target_day)}"},
        {"type": "mrkdwn", "text": f"*Trend*\n{trend or 'first evaluation'}"},
    ]
    notes = status_notes(view, FOLLOW_UP_STATUS, mentions)
    blocks: list[dict] = [section(lead + (f"\n{mentions}" if mentions and view.status == "firing" else "")),
                          {"type": "section", "fields": fields}, context(*notes)]
    if view.status != "resolved":
        blocks.append(alert_actions(view, metric.feed is Feed.CASES))
    text = (f"{'Resolved: ' if view.status == 'resolved' else ''}{metric.name.title()} "
            f"{wording.score_line(metric, view.window, result, span=view.span)}")
    if view.status == "firing" and mentions:
        text += f" {mentions}"
    return {"text": _clip(text, MAX_MESSAGE_TEXT), "blocks": blocks}


def show_cases_button(alert_id: int) -> dict:
    """The button that answers, to whoever clicks it only, with the cases behind an alert of a
    case-fed metric (services/notifier/case_replies.py): its latest late and oldest overdue cases."""
    return button("Show cases", SHOW_CASES, str(alert_id))


def data_alert_message(metric: Metric, feed: FeedStatus, as_of: date, *, resolved: bool, department: str,
                       owners: Sequence[str] = ()) -> dict:
    """A data alert (docs/scoring.md §4c): the metric's feed is quiet, or flows again (resolved).

    No buttons: there is no score to follow up, only a feed to mend, and it resolves by itself
    when data arrives."""
    name = metric.name.title()
    quiet = no_data_words(feed, as_of).replace("no data", f"No data for {name}", 1)  # "… since 3 February"
    mentions = " ".join(f"<@{owner}>" for owner in owners)
    if resolved:
        last = feed.last_data
        up_to = f" (data up to {last.day} {last:%B})" if last else ""
        text = f"Resolved: data for {name} arrives again{up_to}."
        lead = f"✅ *{text}*"
    else:
        text = f"{quiet}; expected {feed.expected}."
        lead = f"📭 *{text}* Its scores may look fine while nothing is counted."
        lead += f"\n{mentions}" if mentions else ""
    notes = [f"*{'Resolved' if resolved else 'Data alert'}*", department + (f" · {mentions}" if mentions else ""),
             f"as of {as_of.isoformat()}"]
    return {"text": _clip(text + (f" {mentions}" if mentions and not resolved else ""), MAX_MESSAGE_TEXT),
            "blocks": [section(_clip(lead, MAX_SECTION_TEXT)), context(*notes)]}


def reply_message(kind: str, view: AlertView, *, user: str | None = None, note: str | None = None) -> dict:
    """A thread reply on an alert: what happened, in one line."""
    name = view.metric.name.title()
    mentions = " ".join(f"<@{o}>" for o in view.owners)
    texts = {
        "recovering": f"📈 Back at {mark(view.score)}; it resolves if it holds.",
        "better": f"↗️ Up to {mark(view.score)}, still below 1.",
        "worse": f"📉 Down to {mark(view.score)} (from {shown(view.first_score)} when it fired).",
        "resolved": f"✅ Resolved: {name} is at {mark(view.score)} {for_window(view.window, view.span)}.",
        "acknowledged": f"👀 <@{user}> acknowledged this; reminders stop.",
        "owner": f"🙋 <@{user}> took ownership.",
        "note": f"📝 <@{user}>: {escape(note or '')}",
        "reminder": f"⏰ Still below 1 at {mark(view.score)} and not acknowledged. {mentions}".rstrip(),
    }
    text = _clip(texts[kind], MAX_SECTION_TEXT)
    return {"text": text, "blocks": [section(text)]}


def note_modal(alert_id: int, metric: Metric, day: date | None = None) -> dict:
    """The note goes to the alert's thread and on the record of the metric's `day` (the alert's
    as-of day unless changed), internal unless "public" is ticked (then the metric page shows it)."""
    blocks = [{"type": "input", "block_id": "note", "label": {"type": "plain_text",
               "text": _clip(f"What is being done about {metric.name.title()}?", 2000)},
               "element": {"type": "plain_text_input", "action_id": "text", "multiline": True,
                           "max_length": 2000}}]
    if day is not None:
        blocks.append({"type": "input", "block_id": "day", "label": {"type": "plain_text", "text": "About the day"},
                       "element": {"type": "datepicker", "action_id": "date", "initial_date": day.isoformat()}})
    blocks.append({"type": "input", "block_id": "public", "optional": True,
                   "label": {"type": "plain_text", "text": "On the public page"},
                   "element": {"type": "checkboxes", "action_id": "public", "options": [
                       {"text": {"type": "plain_text", "text": "Show this note on the public page"},
                        "value": "public"}]}})
    return {"type": "modal", "callback_id": NOTE_MODAL, "private_metadata": str(alert_id),
            "title": {"type": "plain_text", "text": "Add a note"},
            "submit": {"type": "plain_text", "text": "Add"},
            "blocks": blocks}


# -- slash command ------------------------------------------------------------------------


def metric_scores_message(metric: Metric, scores: Mapping[str, WindowScore], as_of: date,
                          windows: Mapping[str, Window] | None = None) -> dict:
    """One metric's scores, each with the days of its window when the catalog's `windows` are given,
    and the target it was scored with when that is not the one in force on `as_of` (stated below)."""
    days = spans(windows, as_of) if windows is not None else {}

    def line(window: str, result: WindowScore) -> str:
        span = days.get(window)
        earlier = wording.earlier_target(metric, span, as_of) if span is not None else None
        return (f"*{window.title()}*" + (f" · {wording.span_in_words(*span)}" if span is not None else "")
                + f" {mark(result.score, result.state)}  ({wording.figures(metric, result)}"
                + (f"; {earlier})" if earlier else ")"))

    lines = [line(window, result) for window, result in scores.items()]
    text = f"{metric.name.title()} as of {as_of.isoformat()}"
    return {"text": text, "blocks": [header(text), section("\n".join(lines)),
                                     context(f"Target: {wording.target_short(metric, on=as_of)}. {metric.description}")]}


# -- limits -------------------------------------------------------------------------------


def limit_problems(message: dict) -> list[str]:
    """Every way a message breaks Block Kit's limits (empty when it is fine)."""
    problems = []
    blocks = message.get("blocks", [])
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks (at most {MAX_BLOCKS})")
    if len(message.get("text", "")) > MAX_MESSAGE_TEXT:
        problems.append("text too long")
    tables = 0
    for index, block in enumerate(blocks):
        where = f"blocks[{index}] ({block.get('type')})"
        kind = block.get("type")
        if kind == "section":
            if "text" in block and len(block["text"]["text"]) > MAX_SECTION_TEXT:
                problems.append(f"{where}: text {len(block['text']['text'])} chars (at most {MAX_SECTION_TEXT})")
            fields = block.get("fields", [])
            if len(fields) > MAX_FIELDS:
                problems.append(f"{where}: {len(fields)} fields (at most {MAX_FIELDS})")
            problems += [f"{where}: a field over {MAX_FIELD_TEXT} chars" for f in fields if len(f["text"]) > MAX_FIELD_TEXT]
            if "text" not in block and not fields:
                problems.append(f"{where}: neither text nor fields")
        elif kind == "header" and len(block["text"]["text"]) > MAX_HEADER_TEXT:
            problems.append(f"{where}: header over {MAX_HEADER_TEXT} chars")
        elif kind == "context" and len(block["elements"]) > MAX_CONTEXT_ELEMENTS:
            problems.append(f"{where}: {len(block['elements'])} elements (at most {MAX_CONTEXT_ELEMENTS})")
        elif kind == "actions":
            if len(block["elements"]) > MAX_ACTION_ELEMENTS:
                problems.append(f"{where}: too many elements")
            for element in block["elements"]:
                if len(element["text"]["text"]) > MAX_BUTTON_TEXT:
                    problems.append(f"{where}: button text over {MAX_BUTTON_TEXT} chars")
        elif kind == "table":
            tables += 1
            rows = block["rows"]
            if len(rows) > MAX_TABLE_ROWS:
                problems.append(f"{where}: {len(rows)} rows (at most {MAX_TABLE_ROWS})")
            if any(len(row) > MAX_TABLE_CELLS for row in rows):
                problems.append(f"{where}: a row over {MAX_TABLE_CELLS} cells")
            if len({len(row) for row in rows}) > 1:
                problems.append(f"{where}: rows of different lengths")
    if tables > MAX_TABLES:
        problems.append(f"{tables} tables (at most {MAX_TABLES} per message)")
    return problems


def all_messages_fit(messages: Iterable[dict]) -> list[str]:
    return [problem for message in messages for problem in limit_problems(message)]
