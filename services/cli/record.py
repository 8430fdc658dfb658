"""`cityscore action …` and `cityscore note …`: follow-up actions and notes on the record, from a
terminal (a Stat meeting's carried-over actions, a note an analyst adds), in the database at
DATABASE_URL. The same rules as from Slack (shared/core/record.py); every refusal names its option.
An action on an alert is told in its thread, and a closed action's reminder edited, through the
notifier's outbox in the same transaction (services/notifier/actions.py): its sender delivers them.
"""

from __future__ import annotations

import getpass
from datetime import date, datetime, timezone

import click

from shared.platform.cli_options import parse_date

# The rules' fields as this command's options.
OPTIONS = {"text": "--text", "owner": "--owner", "due": "--due", "outcome": "--outcome", "day": "--date",
           "status": "ID"}


def _foundation():
    from shared.platform.bootstrap import bootstrap
    from shared.store.schema import SchemaNotCurrent

    try:
        foundation = bootstrap()
    except SchemaNotCurrent as exc:
        raise click.ClickException(str(exc)) from None
    return foundation.catalog, foundation.engine


def _refused(refused, owner_option: str = "--owner") -> click.ClickException:
    options = {**OPTIONS, "owner": owner_option}
    return click.ClickException("; ".join(f"{options.get(p.field, p.field)}: {p.reason}" for p in refused.problems))


def _metric(catalog, metric_id: str):
    metric = catalog.by_id.get(metric_id)
    if metric is None:
        raise click.BadParameter(f"{metric_id!r} is not a metric of the {catalog.city} catalog",
                                 param_hint="--metric")
    return metric


def _check_alert(engine, alert_id: int, metric_id: str) -> None:
    """The alert an action answers must be one of the notifier's, on the same metric."""
    from sqlalchemy import select

    from shared.store.tables.notifier import Alert

    with engine.connect() as conn:
        found = conn.execute(select(Alert.metric).where(Alert.id == alert_id)).scalar()
    if found is None:
        raise click.BadParameter(f"there is no alert {alert_id}", param_hint="--alert")
    if found != metric_id:
        raise click.BadParameter(f"alert {alert_id} is on {found}, not {metric_id}", param_hint="--alert")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in a container
        return "cli"


by_option = click.option("--by", default=None, help="Who records it (default: your login name).")


@click.group("action")
def action_group() -> None:
    """Follow-up actions: who does what about a metric, by when, and what came of it."""


@action_group.command("add")
@click.option("--metric", "metric_id", required=True, help="The metric's id.")
@click.option("--owner", default=None,
              help="Who does it: a name (reminded in the department's channel), or a Slack user written as a "
                   "mention, <@U0123ABCD> (reminded in private). A bare id such as WATER is a name.")
@click.option("--owner-slack", default=None, metavar="USER_ID",
              help="Who does it, as a Slack user id (U… or W…): reminded in private.")
@click.option("--due", callback=parse_date, required=True, help="The day it is due, YYYY-MM-DD (the city's).")
@click.option("--text", required=True, help="What will be done.")
@click.option("--alert", "alert_id", type=click.IntRange(min=1), default=None, help="The alert it answers.")
@by_option
def action_add(metric_id: str, owner: str | None, owner_slack: str | None, due: date, text: str,
               alert_id: int | None, by: str | None) -> None:
    """Record an open action; its owner is reminded on the due day (a Slack user in private, a name in
    the department's channel)."""
    from services.notifier.actions import queue_recorded
    from shared.core.record import Refused, new_action, owner_given
    from shared.store.record import Record

    if (owner is None) == (owner_slack is None):
        raise click.UsageError("--owner / --owner-slack: give one of them (a name or <@U…> mention, or a Slack "
                               "user id)")
    # Whether the owner is a Slack user is said, never guessed from the letters: --owner WATER is a name.
    owner, owner_is_user = (owner_slack.strip(), True) if owner_slack is not None else owner_given(owner)
    catalog, engine = _foundation()
    metric = _metric(catalog, metric_id)
    if alert_id is not None:
        _check_alert(engine, alert_id, metric.id)
    try:
        action = new_action(metric=metric.id, department=metric.department, owner=owner, text=text, due=due,
                            today=_now().astimezone(catalog.zone).date(), created_by=by or _who(),
                            created_at=_now(), alert_id=alert_id, owner_is_user=owner_is_user)
    except Refused as refused:
        raise _refused(refused, "--owner-slack" if owner_slack is not None else "--owner") from None
    with engine.begin() as conn:
        action, new = Record(conn).add_action(action)
        if new:  # told in the alert's thread, as from Slack: the notifier's sender delivers it
            queue_recorded(conn, action)
    owner_words = f"<@{action.owner}>" if action.owner_is_slack_user else action.owner
    click.echo(f"action {action.id} {'recorded' if new else 'was recorded already'}: {action.metric}, "
               f"owner {owner_words}, due {action.due.isoformat()}")


@action_group.command("list")
@click.option("--department", default=None, help="One department's actions (its id).")
@click.option("--open", "open_only", is_flag=True, help="Open actions only.")
def action_list(department: str | None, open_only: bool) -> None:
    """Actions by due day: id, status, due, metric, owner, what, and the outcome of closed ones."""
    from shared.store.record import actions_for

    catalog, engine = _foundation()
    if department is not None and department not in catalog.departments_by_id:
        raise click.BadParameter(f"{department!r} is not a department of the {catalog.city} catalog",
                                 param_hint="--department")
    actions = actions_for(engine, department, open_only, catalog=catalog)
    if not actions:
        click.echo("no open actions" if open_only else "no actions")
        return
    today = _now().astimezone(catalog.zone).date()
    for action in actions:
        status = "overdue" if action.overdue(today) else action.status
        line = f"{action.id:>5}  {status:<7}  {action.due.isoformat()}  {action.metric:<28}  {action.owner:<14}  " \
               f"{action.text}"
        if action.outcome:
            # The city's day it was closed, not UTC's (an evening's close is that evening's day).
            line += f"  → {action.outcome} ({action.closed_by}, {action.closed_at.astimezone(catalog.zone):%Y-%m-%d})"
        click.echo(line)


@action_group.command("close")
@click.argument("action_id", type=click.IntRange(min=1))
@click.option("--outcome", required=True, help="What came of it.")
@by_option
def action_close(action_id: int, outcome: str, by: str | None) -> None:
    """Close an open action with its outcome."""
    from services.notifier.actions import queue_closed
    from shared.core.record import Refused, close
    from shared.store.record import Record

    catalog, engine = _foundation()
    with engine.begin() as conn:
        record = Record(conn)
        action = record.action(action_id, lock=True)
        if action is None:
            raise click.BadParameter(f"there is no action {action_id}", param_hint="ID")
        try:
            closed = close(action, outcome, by or _who(), _now())
        except Refused as refused:
            raise _refused(refused) from None
        if not record.save_closed(closed):
            raise click.ClickException(f"ID: action {action_id} was closed meanwhile")
        metric = catalog.by_id.get(closed.metric)
        # Its reminder edited and its alert's thread told, as from Slack.
        queue_closed(conn, closed, metric.name if metric else closed.metric)
    click.echo(f"action {closed.id} closed: {closed.outcome}")


@click.group("note")
def note_group() -> None:
    """Notes on the record: what happened on a metric's day (internal unless --public)."""


@note_group.command("add")
@click.option("--metric", "metric_id", required=True, help="The metric's id.")
@click.option("--date", "day", callback=parse_date, required=True, help="The day it is about, YYYY-MM-DD.")
@click.option("--text", required=True, help="The note.")
@click.option("--public", is_flag=True, help="Show it on the public metric page too.")
@by_option
def note_add(metric_id: str, day: date, text: str, public: bool, by: str | None) -> None:
    """Keep a note on a metric's day."""
    from shared.core.record import Refused, new_note
    from shared.store.record import Record

    catalog, engine = _foundation()
    metric = _metric(catalog, metric_id)
    try:
        note = new_note(metric=metric.id, day=day, text=text, author=by or _who(), created_at=_now(), public=public)
    except Refused as refused:
        raise _refused(refused) from None
    with engine.begin() as conn:
        note, new = Record(conn).add_note(note)
    click.echo(f"note {note.id} {'kept' if new else 'was kept already'}: {note.metric} on {note.day.isoformat()} "
               f"({'public' if note.public else 'internal'})")


@note_group.command("list")
@click.option("--metric", "metric_id", required=True, help="The metric's id.")
@click.option("--from", "start", callback=parse_date, default=None, help="First day, YYYY-MM-DD.")
@click.option("--to", "end", callback=parse_date, default=None, help="Last day, YYYY-MM-DD.")
@click.option("--public", "public_only", is_flag=True, help="Public notes only.")
def note_list(metric_id: str, start: date | None, end: date | None, public_only: bool) -> None:
    """A metric's notes by day: day, public or internal, author, the note."""
    from shared.store.record import notes_for

    catalog, engine = _foundation()
    metric = _metric(catalog, metric_id)
    notes = notes_for(engine, [metric.id], start, end, public_only)
    if not notes:
        click.echo("no notes")
        return
    for note in notes:
        click.echo(f"{note.day.isoformat()}  {'public' if note.public else 'internal':<8}  {note.author:<14}  "
                   f"{note.text}")
