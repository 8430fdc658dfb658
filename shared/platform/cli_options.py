"""Option parsing shared by the `cityscore` commands."""

from __future__ import annotations

from datetime import date

import click


def parse_date(ctx, param, value: str | None) -> date | None:
    """A click callback for YYYY-MM-DD options."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date written YYYY-MM-DD") from None
