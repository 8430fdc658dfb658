"""Commands of the notifier: `notifier run`, `notify board|recap`, `alerts list`."""

from __future__ import annotations

import time
from datetime import date, timedelta

import click


from shared.platform.cli_options import parse_date as _date


def _runtime():
    from shared.store.schema import SchemaNotCurrent

    from .main import build
    from .routing import RoutingError

    try:
        return build()
    except RoutingError as exc:
        raise click.ClickException(f"routing file: {exc}") from None
    except SchemaNotCurrent as exc:
        raise click.ClickException(str(exc)) from None


def _deliver(runtime, keys: list[str], timeout_s: float) -> dict[str, str]:
    """Send until these outbox messages are sent (or failed), or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        runtime.sender.deliver_due()
        states = runtime.notifier.delivery_states(keys)
        if all(state in ("sent", "failed", "cancelled") for state in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


@click.group("notifier")
def notifier_group() -> None:
    """The notifier service (score changes -> Slack)."""


@notifier_group.command("run")
def notifier_run() -> None:
    """Consume score changes, run the schedule, send Slack messages, serve Slack's requests."""
    from shared.platform.logs import configure_logging
    from shared.store.schema import SchemaNotCurrent

    from .main import run

    configure_logging()
    try:
        run()
    except SchemaNotCurrent as exc:
        raise click.ClickException(str(exc)) from None


@click.group("notify")
def notify_group() -> None:
    """Post the scoreboard or the recap by hand (once per date and channel, like the schedule)."""


@notify_group.command("board")
@click.option("--date", "as_of", callback=_date, default=None, help="Scores as of this date (default: yesterday).")
@click.option("--channel", default=None, help="Slack channel (default: $NOTIFIER_MAYOR_CHANNEL).")
@click.option("--no-chart", is_flag=True, help="Leave out the 90-day chart.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to keep trying to deliver.")
def notify_board(as_of: date | None, channel: str | None, no_chart: bool, timeout: float) -> None:
    """Queue the daily scoreboard and deliver it now."""
    from shared.platform.logs import configure_logging

    configure_logging()
    runtime = _runtime()
    as_of = as_of or runtime.notifier.local_today() - timedelta(days=1)
    key, queued = runtime.notifier.post_board(as_of, channel, chart=not no_chart)
    keys = [key] if no_chart else [key, f"{key}:chart"]
    states = _deliver(runtime, keys, timeout)
    click.echo(f"{key}: {'queued now' if queued else 'queued before'}; "
               + ", ".join(f"{k} {v}" for k, v in states.items()))
    if any(state != "sent" for state in states.values()):
        raise SystemExit(1)


@notify_group.command("recap")
@click.option("--date", "as_of", callback=_date, default=None, help="Last day of the week (default: yesterday).")
@click.option("--channel", default=None)
@click.option("--timeout", default=120.0, show_default=True)
def notify_recap(as_of: date | None, channel: str | None, timeout: float) -> None:
    """Queue the weekly recap and deliver it now."""
    from shared.platform.logs import configure_logging

    configure_logging()
    runtime = _runtime()
    as_of = as_of or runtime.notifier.local_today() - timedelta(days=1)
    key, queued = runtime.notifier.post_recap(as_of, channel)
    states = _deliver(runtime, [key], timeout)
    click.echo(f"{key}: {'queued now' if queued else 'queued before'}; {states.get(key)}")
    if states.get(key) != "sent":
        raise SystemExit(1)


@click.group("alerts")
def alerts_group() -> None:
    """Follow-up alerts."""


@alerts_group.command("list")
@click.option("--status", type=click.Choice(["open", "firing", "acknowledged", "resolved", "all"]), default="open",
              show_default=True)
def alerts_list(status: str) -> None:
    """List follow-up alerts."""
    runtime = _runtime()
    rows = runtime.notifier.alerts(None if status == "all" else status)
    if not rows:
        click.echo(f"no {status if status != 'all' else ''} alerts".replace("  ", " "))
        return
    click.echo(f"{'alert':<40} {'status':<13} {'score':>6}  {'fired (UTC)':<17} owner/acknowledged")
    for row in rows:
        key = f"{row.metric}:{row.window}:{row.seq}"
        score = "—" if row.reading.score is None else f"{row.reading.score:.2f}"
        who = " ".join(x for x in (row.owner and f"owner {row.owner}",
                                   row.acknowledged_by and f"ack {row.acknowledged_by}") if x)
        click.echo(f"{key:<40} {row.status.value:<13} {score:>6}  {row.fired_at:%Y-%m-%d %H:%M} {who}")
