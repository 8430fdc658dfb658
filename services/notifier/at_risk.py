"""The at-risk alert's Slack messages (docs/architecture.md, "At-risk alerts"), by pure functions.

An early warning: a case-fed metric's score is still at or above 1 in an alert window, but its
overdue cases would bring it below 1 if they were closed late now. The message says both
scores, how many cases are overdue, and lists the oldest of them as "Show cases" does (id, when
opened and due, how late, and only the attributes the catalog marks public), so the department
can close them before the score drops. It carries the follow-up's buttons, Show cases included; its lifecycle is the follow-up's
(services/notifier/lifecycle.py), and its thread replies say what moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from shared.core import wording
from shared.core.cases import CaseLine
from shared.core.scoring import WindowScore, standing

from .blocks import (
    MAX_MESSAGE_TEXT, MAX_SECTION_TEXT, AlertView, _clip, alert_actions, context, for_window, mark, reply_message,
    section, shown, status_notes,
)
from .case_replies import overdue_line

# The oldest overdue cases a message lists: enough to start on, short enough to read.
OLDEST_SHOWN = 5


@dataclass(frozen=True)
class AtRiskView:
    """What an at-risk message shows; built from the alert and its track by the service.

    `alert` is the alert as a follow-up's view sees it, with the window's score now (its
    `window` is the score's window, e.g. "week"); `projected` the window's score if every overdue
    case were closed late now; `oldest` the oldest overdue cases, oldest first (none once resolved).
    """

    alert: AlertView
    projected: WindowScore
    first_projected: float | None
    overdue: int
    zone: ZoneInfo  # the city's: case times are shown in local time
    oldest: tuple[CaseLine, ...] = ()

    @property
    def handed_over(self) -> bool:
        """Resolved because the score itself fell below 1: its follow-up takes over."""
        return self.alert.status == "resolved" and standing(self.alert.score) == "below"


def _cases(count: int) -> str:
    return f"{count:,} overdue case{'s' if count != 1 else ''}"


AT_RISK_STATUS = {"firing": "At risk", "acknowledged": "At risk, acknowledged", "resolved": "Resolved"}


def at_risk_message(view: AtRiskView) -> dict:
    """The at-risk alert, firing, acknowledged or resolved (its message edited in place)."""
    alert = view.alert
    metric = alert.metric
    name = metric.name.title()
    period = for_window(alert.window, alert.span)
    score = WindowScore(alert.score, alert.numerator, alert.denominator)
    mentions = " ".join(f"<@{owner}>" for owner in alert.owners)
    if alert.status != "resolved" and alert.score is None:
        lead = (f"⚠️ *{name}* is at risk {period}: no case has closed in it yet, and its {_cases(view.overdue)} "
                f"would bring it to {mark(view.projected.score)} if closed late now.")
        text = (f"At risk: {name} {alert.window} has no score yet (nothing closed), {shown(view.projected.score)} "
                f"if its {_cases(view.overdue)} close late")
    elif alert.status != "resolved":
        lead = (f"⚠️ *{name}* is at risk {period}: it scores {mark(alert.score)} now, but its {_cases(view.overdue)} "
                f"would bring it to {mark(view.projected.score)} if closed late now.")
        text = (f"At risk: {name} {alert.window} score {shown(alert.score)} now, {shown(view.projected.score)} "
                f"if its {_cases(view.overdue)} close late")
    elif view.handed_over:
        lead = (f"↪️ *{name}* fell to {mark(alert.score)} {period}: no longer an early warning, its follow-up "
                "takes over.")
        text = f"No longer at risk: {name} fell below 1 {period}; its follow-up takes over."
    else:
        lead = (f"✅ *No longer at risk:* *{name}* scores {mark(alert.score)} {period} and would still score "
                f"{mark(view.projected.score)} with its overdue cases closed late now.")
        text = f"No longer at risk: {name} {alert.window} score {shown(alert.score)}, {shown(view.projected.score)} projected"
    fields = [
        {"type": "mrkdwn", "text": f"*Score now ({alert.window})*\n{shown(alert.score)}: {wording.figures(metric, score)}"},
        {"type": "mrkdwn", "text": f"*If the overdue close late*\n{shown(view.projected.score)}: "
                                   f"{wording.figures(metric, view.projected)}"},
        {"type": "mrkdwn", "text": f"*Target*\n{wording.target_short(metric, on=alert.target_day)}"},
        {"type": "mrkdwn", "text": f"*Overdue*\n{_cases(view.overdue)}"
                                   + (f" (projected {shown(view.first_projected)} when it fired)"
                                      if view.first_projected is not None else "")},
    ]
    notes = status_notes(alert, AT_RISK_STATUS, mentions)
    blocks: list[dict] = [section(lead + (f"\n{mentions}" if mentions and alert.status == "firing" else "")),
                          {"type": "section", "fields": fields}]
    if view.oldest and alert.status != "resolved":
        at = f"the end of {alert.as_of.day} {alert.as_of:%B}" if alert.as_of else "the latest score"
        more = view.overdue - len(view.oldest)
        listed = "\n".join(overdue_line(line, metric, view.zone) for line in view.oldest)
        blocks.append(section(_clip(f"*Oldest overdue cases* (open past their due time at {at}, oldest first)\n"
                                    f"{listed}" + (f"\n…and {more:,} more" if more > 0 else ""), MAX_SECTION_TEXT)))
    blocks.append(context(*notes))
    if alert.status != "resolved":
        blocks.append(alert_actions(alert, cases=True))  # every at-risk metric is fed cases
    if alert.status == "firing" and mentions:
        text += f" {mentions}"
    return {"text": _clip(text, MAX_MESSAGE_TEXT), "blocks": blocks}


def at_risk_reply(kind: str, view: AtRiskView, *, user: str | None = None, note: str | None = None) -> dict:
    """A thread reply on an at-risk alert. Its moves are the projected score's; people's actions
    read as on a follow-up."""
    alert = view.alert
    projected = view.projected.score
    texts = {
        "worse": f"📉 Projected down to {mark(projected)} with {_cases(view.overdue)} "
                 f"(from {shown(view.first_projected)} when it fired).",
        "better": f"↗️ Projected up to {mark(projected)} with {_cases(view.overdue)}, still below 1.",
        "recovering": f"📈 Projected back at {mark(projected)}; it resolves if it holds.",
        "reminder": (f"⏰ Still at risk: {_cases(view.overdue)} would bring it to {mark(projected)}, and not "
                     f"acknowledged. {' '.join(f'<@{o}>' for o in alert.owners)}").rstrip(),
    }
    if kind == "resolved":
        period = for_window(alert.window, alert.span)
        if view.handed_over:
            texts[kind] = (f"↪️ {alert.metric.name.title()} fell to {mark(alert.score)} {period}: its follow-up "
                           "takes over.")
        else:
            texts[kind] = (f"✅ No longer at risk: {alert.metric.name.title()} would score {mark(projected)} {period} "
                           "with its overdue cases closed late now.")
    if kind not in texts:
        return reply_message(kind, alert, user=user, note=note)  # acknowledged, owner, note
    text = _clip(texts[kind], MAX_SECTION_TEXT)
    return {"text": text, "blocks": [section(text)]}
