"""Option parsing shared by the `cityscore` commands."""

from __future__ import annotations

import os
from datetime import date

import click

from shared.core.catalog import Catalog, CatalogError, load_catalog


def parse_date(ctx, param, value: str | None) -> date | None:
    """A click callback for YYYY-MM-DD options."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date written YYYY-MM-DD") from None


catalog_option = click.option(
    "--catalog",
    "catalog_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Catalog YAML file, or a shipped catalog's name such as boston-calendar.yaml "
         "(default: $CITYSCORE_CATALOG, else Boston's).",
)


def load_catalog_option(path: str | None) -> Catalog:
    """The catalog --catalog names, else $CITYSCORE_CATALOG's, else Boston's; an invalid one stops
    the command with every problem, each naming its field."""
    try:
        return load_catalog(path or os.environ.get("CITYSCORE_CATALOG") or None)
    except CatalogError as exc:
        lines = "\n".join(f"  - {p}" for p in exc.problems)
        raise click.ClickException(f"catalog {exc.source} is not valid:\n{lines}") from None
