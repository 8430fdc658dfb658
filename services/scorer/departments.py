"""Department and cabinet scorecards: a department head's own page, and its JSON twin.

`/departments/ID` shows the department's metrics with the board's cells (scores, window dates,
the overdue backlog), the alerts open on them and who owns them (the notifier's table, read
through shared/store/open_alerts.py), its open follow-up actions and its metrics' public notes
(shared/store/record.py). `/cabinets/ID` shows the same for each department of a cabinet (the catalog's
`cabinets`). `GET /v1/departments/ID` and `/v1/cabinets/ID` are the same figures as JSON: the
page and the JSON are built from one `scorecard`, and the board's own JSON for each metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Sequence

from flask import Blueprint, Response, abort, current_app, render_template, url_for

from shared.core.cases import with_case_fields
from shared.core.catalog import Cabinet, Catalog, Department, Feed, Metric
from shared.core.scoring import Scoreboard
from shared.core.windows import spans
from shared.platform.web import json_response
from shared.core.record import Action, Note
from shared.store.open_alerts import OpenAlert, open_alerts
from shared.store.record import actions_for, notes_for

from .pages import (BacklogShown, alert_windows, backlog_shown, board_window_dates, cell, local_time, pages,
                    requested_as_of, stale_words, window_cell)

department_api = Blueprint("department_api", __name__)


def _parts() -> dict:
    return current_app.extensions["cityscore"]


# -- one scorecard -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DepartmentCard:
    """What a department's page and JSON show, as of one day."""

    department: Department
    cabinet: Cabinet | None
    metrics: list[Metric]
    alerts: list[OpenAlert]
    # The city's local day now: an open action due before it is overdue (Action.overdue, as the packet
    # and `cityscore action list` say), whatever day the board is as of.
    today: date
    # The department's open follow-up actions, by due day, and the public notes on its metrics about
    # the days of the board's windows (a note is internal unless marked public: this page is public).
    actions: list[Action] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    case_fields: dict[str, dict] = field(default_factory=dict)


def department_card(catalog: Catalog, store, board: Scoreboard, department: Department,
                    fields: dict[str, dict], today: date) -> DepartmentCard:
    metrics = catalog.metrics_of(department.id)
    ids = [metric.id for metric in metrics]
    actions = actions_for(store.engine, department.id, open_only=True, catalog=catalog)
    earliest = min(span[0] for span in spans(catalog.windows, board.as_of).values())
    notes = notes_for(store.engine, ids, earliest, board.as_of, public_only=True) if ids else []
    return DepartmentCard(department, catalog.cabinet_of(department.id), metrics, open_alerts(store.engine, ids),
                          today, actions, notes, {metric_id: fields[metric_id] for metric_id in ids if metric_id in fields})


def scorecards(departments: Sequence[Department], as_of: date | None) -> tuple[Scoreboard, list[DepartmentCard]]:
    """The board as of `as_of` (None: the current one, as the board page) and each department's card."""
    parts = _parts()
    catalog: Catalog = parts["catalog"]
    board, _ = parts["board_for"](as_of)
    fields: dict[str, dict] = {}
    if any(metric.feed is Feed.CASES for department in departments for metric in catalog.metrics_of(department.id)):
        fields = parts["store"].case_fields(board, alert_windows(catalog), parts["read_timeout_s"])
    today = parts["clock"].now().astimezone(catalog.zone).date()
    return board, [department_card(catalog, parts["store"], board, department, fields, today)
                   for department in departments]


def _show_owners() -> bool:
    """Whether the pages may name who owns alerts and actions (SCORER_SHOW_OWNERS: staff only)."""
    return _parts()["settings"].scorer_show_owners


def _alert_dict(alert: OpenAlert, owners: bool) -> dict:
    body = alert.as_dict()
    if not owners:  # whether, not who
        body = {key: value for key, value in body.items() if key not in ("acknowledged_by", "owner")}
        body.update(acknowledged=alert.status == "acknowledged", owned=alert.owner is not None)
    return body


def _action_dict(action: Action, owners: bool, today: date) -> dict:
    return {"id": action.id, "metric": action.metric, **({"owner": action.owner} if owners else {}),
            "text": action.text, "due": action.due.isoformat(), "overdue": action.overdue(today),
            "created_at": action.created_at.isoformat()}


def _note_dict(note: Note) -> dict:
    return {"id": note.id, "metric": note.metric, "day": note.day.isoformat(), "text": note.text}


def card_dict(card: DepartmentCard, board_json: dict, owners: bool) -> dict:
    """A card as JSON: each metric as the board's JSON gives it (scores, dates, targets, open, projected);
    who owns the alerts and actions only with `owners`."""
    cabinet = {"id": card.cabinet.id, "name": card.cabinet.name} if card.cabinet else None
    body = {
        "department": {"id": card.department.id, "name": card.department.name, "cabinet": cabinet},
        "metrics": {metric.id: board_json["metrics"][metric.id] for metric in card.metrics},
        "alerts": [_alert_dict(alert, owners) for alert in card.alerts],
    }
    body["actions"] = [_action_dict(action, owners, card.today) for action in card.actions]
    body["notes"] = [_note_dict(note) for note in card.notes]
    return body


def _board_json(board: Scoreboard, cards: list[DepartmentCard]) -> dict:
    body = board.as_dict(_parts()["catalog"])
    for card in cards:
        with_case_fields(body, card.case_fields)
    return body


# -- finding what was asked for -----------------------------------------------------------------


def _department(department_id: str) -> Department:
    catalog: Catalog = _parts()["catalog"]
    found = catalog.departments_by_id.get(department_id)
    if found is None:
        abort(404, f"There is no department “{department_id}” in the {catalog.city} catalog.")
    return found


def _cabinet(cabinet_id: str) -> Cabinet:
    catalog: Catalog = _parts()["catalog"]
    found = catalog.cabinets_by_id.get(cabinet_id)
    if found is None:
        abort(404, f"There is no cabinet “{cabinet_id}” in the {catalog.city} catalog.")
    return found


# -- the pages -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    metric: Metric
    cells: dict
    backlog: BacklogShown | None


def _rows(catalog: Catalog, board: Scoreboard, card: DepartmentCard) -> list[Row]:
    return [Row(metric, {window: window_cell(board.metrics[metric.id][window]) for window in catalog.windows},
                backlog_shown(card.case_fields[metric.id]) if metric.id in card.case_fields else None)
            for metric in card.metrics]


def _render(title: str, board: Scoreboard, cards: list[DepartmentCard], asked: date | None, current: date,
            cabinet: Cabinet | None = None, json_url: str = "") -> tuple[str, int, dict[str, str]]:
    catalog: Catalog = _parts()["catalog"]
    names = {metric.id: metric.name for metric in catalog.metrics}
    html = render_template(
        "pages/department.html",
        title=title,
        catalog=catalog,
        cabinet=cabinet,
        cards=[(card, _rows(catalog, board, card)) for card in cards],
        windows=list(catalog.windows),
        dates=board_window_dates(catalog, board.as_of),
        as_of=board.as_of,
        explicit=asked is not None and asked != current,
        stale=stale_words(catalog, board),
        metric_names=names,
        when=lambda moment: local_time(moment, catalog),
        score_cell=cell,
        json_url=json_url,
        show_owners=_show_owners(),
    )
    return html, 200, {"Cache-Control": "public, max-age=30"}


@pages.get("/departments/<department_id>")
def department_page(department_id: str) -> tuple[str, int, dict[str, str]]:
    """One department: its metrics' scores and backlog, its open alerts and their owners, its actions."""
    department = _department(department_id)
    asked, current, _ = requested_as_of()
    board, cards = scorecards([department], asked)
    json_url = url_for("department_api.department_json", department_id=department.id,
                       as_of=board.as_of.isoformat() if asked is not None else None)
    return _render(department.name, board, cards, asked, current, json_url=json_url)


@pages.get("/cabinets/<cabinet_id>")
def cabinet_page(cabinet_id: str) -> tuple[str, int, dict[str, str]]:
    """One cabinet: each of its departments' scorecard, in the catalog's order."""
    found = _cabinet(cabinet_id)
    catalog: Catalog = _parts()["catalog"]
    asked, current, _ = requested_as_of()
    board, cards = scorecards([catalog.departments_by_id[d] for d in found.departments], asked)
    json_url = url_for("department_api.cabinet_json", cabinet_id=found.id,
                       as_of=board.as_of.isoformat() if asked is not None else None)
    return _render(found.name, board, cards, asked, current, cabinet=found, json_url=json_url)


# -- the JSON twins ------------------------------------------------------------------------------


def _json(departments: list[Department], head: dict) -> Response:
    as_of, refusal = _parts()["parse_as_of"]()
    if refusal is not None:
        return refusal
    board, cards = scorecards(departments, as_of)
    board_json = _board_json(board, cards)
    body = {"as_of": board_json["as_of"], "windows": board_json["windows"], **head}
    if len(cards) == 1 and "cabinet" not in head:
        body.update(card_dict(cards[0], board_json, _show_owners()))
    else:
        body["departments"] = [card_dict(card, board_json, _show_owners()) for card in cards]
    return json_response(200, body, {"Cache-Control": "public, max-age=30"})


@department_api.get("/v1/departments/<department_id>")
def department_json(department_id: str) -> Response:
    """The department page's figures: the board's JSON for its metrics, its open alerts, its actions."""
    catalog: Catalog = _parts()["catalog"]
    if department_id not in catalog.departments_by_id:
        return json_response(404, {"error": f"no department {department_id!r} in the {catalog.city} catalog"})
    return _json([catalog.departments_by_id[department_id]], {})


@department_api.get("/v1/cabinets/<cabinet_id>")
def cabinet_json(cabinet_id: str) -> Response:
    """The cabinet page's figures: each of its departments as /v1/departments/ID gives it."""
    catalog: Catalog = _parts()["catalog"]
    found = catalog.cabinets_by_id.get(cabinet_id)
    if found is None:
        return json_response(404, {"error": f"no cabinet {cabinet_id!r} in the {catalog.city} catalog"})
    return _json([catalog.departments_by_id[d] for d in found.departments],
                 {"cabinet": {"id": found.id, "name": found.name}})
