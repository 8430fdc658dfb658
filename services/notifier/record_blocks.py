"""Slack's side of the record: the modals in which a manager records a follow-up action or closes
one with its outcome, the reminder its owner gets when it is due, and the thread replies.

Block ids are the fields' names (owner, due, text, outcome), so a refusal from the rules
(shared/core/record.py), which names its field, is shown under that field in the modal.
"""

from __future__ import annotations

from datetime import date, tzinfo
from typing import Mapping

from shared.core.catalog import Metric
from shared.core.record import MAX_TEXT, Action, Problem, is_slack_user

from .blocks import _clip, button, context, escape, long_date, section

ACTION_MODAL = "cityscore_action_modal"
CLOSE_ACTION = "cityscore_close_action"  # the reminder's button
CLOSE_MODAL = "cityscore_close_action_modal"


def who(person: str, slack_user: bool | None = None) -> str:
    """A person as Slack shows them: a Slack user as a mention, a name as written (escaped). Whether
    they are a Slack user is shared/core/record.py's one rule (`is_slack_user`): as given when known
    (an action's owner_is_user), else by the letters of a Slack user id (who clicked, an alert's owner)."""
    return f"<@{person}>" if is_slack_user(person, slack_user) else escape(person)


def owner_of(action: Action) -> str:
    return who(action.owner, action.owner_is_user)


def _input(block_id: str, label: str, element: dict, *, hint: str | None = None, optional: bool = False) -> dict:
    block = {"type": "input", "block_id": block_id, "label": {"type": "plain_text", "text": _clip(label, 2000)},
             "element": element}
    if hint:
        block["hint"] = {"type": "plain_text", "text": _clip(hint, 2000)}
    if optional:
        block["optional"] = True
    return block


def action_modal(alert_id: int, metric: Metric, user: str, due: date) -> dict:
    """The form from an alert: who does what by when (the owner is whoever clicked, unless changed)."""
    return {"type": "modal", "callback_id": ACTION_MODAL, "private_metadata": str(alert_id),
            "title": {"type": "plain_text", "text": "Record an action"},
            "submit": {"type": "plain_text", "text": "Record"},
            "blocks": [
                section(f"A follow-up action on *{escape(metric.name)}*: it is reminded to its owner on the "
                        "day it is due, and stays open on the department's page until closed with its outcome."),
                _input("text", "What will be done?", {"type": "plain_text_input", "action_id": "text",
                                                      "multiline": True, "max_length": MAX_TEXT}),
                _input("owner", "Owner", {"type": "users_select", "action_id": "user", "initial_user": user}),
                _input("due", "Due", {"type": "datepicker", "action_id": "date", "initial_date": due.isoformat()}),
            ]}


def close_modal(action: Action, metric_name: str) -> dict:
    return {"type": "modal", "callback_id": CLOSE_MODAL, "private_metadata": str(action.id),
            "title": {"type": "plain_text", "text": "Close the action"},
            "submit": {"type": "plain_text", "text": "Close"},
            "blocks": [
                section(f"*{escape(metric_name)}*: {escape(action.text)}\nOwner {owner_of(action)}, "
                        f"due {long_date(action.due)}"),
                _input("outcome", "What came of it?", {"type": "plain_text_input", "action_id": "text",
                                                       "multiline": True, "max_length": MAX_TEXT}),
            ]}


def modal_errors(problems: list[Problem], fields: Mapping[str, str]) -> dict:
    """Slack's answer to a refused form: each reason under its field (`fields` maps the rules'
    field names to the modal's block ids; a field without a block goes under the first)."""
    errors: dict[str, str] = {}
    first = next(iter(fields.values()))
    for problem in problems:
        block = fields.get(problem.field, first)
        errors[block] = f"{errors[block]} · {problem.reason}" if block in errors else problem.reason
    return {"response_action": "errors", "errors": errors}


def recorded_reply(action: Action, user: str) -> dict:
    text = (f"{who(user)} recorded an action for {owner_of(action)}, due {long_date(action.due)}: "
            f"{escape(action.text)}")
    return {"text": _clip(text, 3000), "blocks": [section(text), context(f"Action {action.id} · close it with its "
                                                                         f"outcome: `cityscore action close "
                                                                         f"{action.id} --outcome …`")]}


def reminder_message(action: Action, metric_name: str, today: date, zone: tzinfo) -> dict:
    """The owner's reminder; `today` and the day it was recorded are the city's (`zone`, the catalog's)."""
    when = "today" if action.due == today else f"on {long_date(action.due)}, {(today - action.due).days} " \
                                               f"day{'s' if (today - action.due).days != 1 else ''} ago"
    lead = (f"Reminder for {owner_of(action)}: your action on *{escape(metric_name)}* is due {when}.\n"
            f">{escape(action.text)}")
    # The fallback is mrkdwn too (Slack's notification and screen readers): escaped as the blocks.
    return {"text": _clip(f"Reminder: your action on {escape(metric_name)} is due {when}: {escape(action.text)}",
                          3000),
            "blocks": [section(lead),
                       context(f"Action {action.id}, recorded by {who(action.created_by)} on "
                               f"{action.created_at.astimezone(zone):%Y-%m-%d}"),
                       {"type": "actions", "block_id": f"action-{action.id}",
                        "elements": [button("Close with an outcome", CLOSE_ACTION, str(action.id),
                                            style="primary")]}]}


def closed_message(action: Action, metric_name: str) -> dict:
    text = (f"{who(action.closed_by or '')} closed the action on {escape(metric_name)} "
            f"({escape(action.text)}): {escape(action.outcome or '')}")
    return {"text": _clip(text, 3000), "blocks": [section(text)]}


def submitted(view: dict) -> dict[str, object]:
    """A submitted modal's values by block id: words, a user id, a date (None if not a date),
    or for checkboxes the ticked values."""
    found: dict[str, object] = {}
    for block_id, elements in ((view.get("state") or {}).get("values") or {}).items():
        for element in (elements or {}).values():
            if not isinstance(element, dict):
                continue
            kind = element.get("type")
            if kind == "users_select":
                found[block_id] = element.get("selected_user")
            elif kind == "datepicker":
                try:
                    found[block_id] = date.fromisoformat(str(element.get("selected_date")))
                except ValueError:
                    found[block_id] = None
            elif kind == "checkboxes":
                found[block_id] = {str(o.get("value")) for o in element.get("selected_options") or []}
            else:
                found[block_id] = element.get("value")
    return found
