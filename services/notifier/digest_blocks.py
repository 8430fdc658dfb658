"""The weekly department digest as Block Kit: a pure function of the week's figures.

For one department, on Monday: each metric's week score with its mark and how it moved since
the week before; what is at risk (the scores below target, the overdue backlog with the week's
projected score if every overdue case were closed late now, the alerts open, the follow-up
actions due); and a link to the department's scorecard page. Marks as everywhere in Slack
(blocks.mark), the near-target band included where the catalog sets one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Mapping, Sequence

from shared.core import wording
from shared.core.catalog import Catalog, Department, Metric
from shared.core.record import Action
from shared.core.scoring import Scoreboard, standing
from shared.store.open_alerts import OpenAlert

from .blocks import MAX_MESSAGE_TEXT, MAX_SECTION_TEXT, _clip, button, context, escape, header, mark, section, shown
from .record_blocks import owner_of, who

DIGEST_WINDOW = "week"
# A link button: Slack opens the page and tells the notifier, which answers any action it does not act on.
OPEN_PAGE = "cityscore_open_department"


@dataclass(frozen=True)
class DigestWeek:
    """What the digest of one department says, gathered by the use case (department_digest.py)."""

    department: Department
    metrics: Sequence[Metric]
    board: Scoreboard  # as of the last day of the week (Sunday for a Monday digest)
    before: Scoreboard  # as of a week earlier
    case_fields: Mapping[str, dict]  # ScoreReader.case_fields: each case-fed metric's open and projected
    alerts: Sequence[OpenAlert]
    actions: Sequence[Action]  # open, due by the end of the coming week (or overdue)
    # The city's day the digest is posted (the day after the board's): an open action due before it
    # is overdue, by Action.overdue as on the department page and in the packet.
    today: date


# An owner as Slack shows them (record_blocks.who: one rule for who is a Slack user).
who_is = who


def moved(score: float | None, before: float | None) -> str:
    """How a week score moved since the week before, as shown (two decimals)."""
    if score is None:
        return "no score"
    if before is None:
        return "no score the week before"
    delta = round(score, 2) - round(before, 2)
    if round(delta, 2) == 0:
        return "unchanged since the week before"
    return f"{'+' if delta > 0 else '−'}{abs(delta):.2f} since the week before ({shown(before)})"


def _at_risk_lines(week: DigestWeek, catalog: Catalog) -> list[str]:
    lines = []
    for metric in week.metrics:
        result = week.board.metrics[metric.id][DIGEST_WINDOW]
        name = f"*{escape(metric.name.title())}*"
        if standing(result.score) == "below":
            lines.append(f"• {name} is below target this week at {mark(result.score, None, catalog.near_target)}")
        fields = week.case_fields.get(metric.id)
        if fields and fields["open"]["overdue"]:
            overdue = fields["open"]["overdue"]
            projected = fields.get("projected", {}).get(DIGEST_WINDOW)
            ahead = (f"; the week would score {mark(projected['score'], None, catalog.near_target)} if they closed "
                     "late now" if projected and projected["score"] is not None else "")
            lines.append(f"• {name}: {overdue:,} case{'s' if overdue != 1 else ''} overdue{ahead}")
    for alert in week.alerts:
        metric = catalog.by_id.get(alert.metric)
        who = f"owned by {who_is(alert.owner)}" if alert.owner else "no owner yet"
        lines.append(f"• Alert open since {wording.day_in_words(alert.fired_at.astimezone(catalog.zone).date(), False)}: "
                     f"{escape(metric.name.title() if metric else alert.metric)} ({alert.kind}"
                     f"{f', {alert.score_window}' if alert.score_window else ''}), {who}")
    for action in week.actions:
        when = "overdue since" if action.overdue(week.today) else "due"
        lines.append(f"• Action {when} {wording.day_in_words(action.due, year=False)}: {escape(action.text)} "
                     f"({owner_of(action)})")
    return lines


def digest_message(week: DigestWeek, catalog: Catalog, page_url: str) -> dict:
    """The digest: text fallback and blocks."""
    span = catalog.windows[DIGEST_WINDOW].span(week.board.as_of)
    days = wording.span_in_words(*span, year=True)
    title = f"{week.department.name}: week of {days}"
    scored = [m for m in week.metrics if week.board.metrics[m.id][DIGEST_WINDOW].score is not None]
    below = [m for m in scored if standing(week.board.metrics[m.id][DIGEST_WINDOW].score) == "below"]
    text = (f"{escape(title)}. {len(below)} of {len(week.metrics)} metric{'s' if len(week.metrics) != 1 else ''} "
            f"below target this week.")
    lines = []
    for metric in week.metrics:
        result = week.board.metrics[metric.id][DIGEST_WINDOW]
        before = week.before.metrics[metric.id][DIGEST_WINDOW].score
        lines.append(f"*{escape(metric.name.title())}* {mark(result.score, result.state, catalog.near_target)} "
                     f"· _{moved(result.score, before)}_")
    blocks = [header(_clip(title, 150)),
              section(_clip("*This week's scores*\n" + "\n".join(lines), MAX_SECTION_TEXT))]
    risks = _at_risk_lines(week, catalog)
    blocks.append(section(_clip("*At risk*\n" + ("\n".join(risks) if risks else
                                                 "Nothing: every score at or above target, nothing overdue, "
                                                 "no alert open, no action due."), MAX_SECTION_TEXT)))
    near = f" · 🟡 {wording.near_band_words(catalog.near_target)}" if catalog.near_target is not None else ""
    blocks.append(context(f"Scores of the {wording.window_in_words(DIGEST_WINDOW, *span)}, as of "
                          f"{wording.day_in_words(week.board.as_of)}. 🔴 below target{near} · ⚪ on target · "
                          f"🟢 above target."))
    blocks.append({"type": "actions", "elements": [button("Open the department's scorecard", OPEN_PAGE,
                                                          url=page_url)]})
    return {"text": _clip(text, MAX_MESSAGE_TEXT), "blocks": blocks}
