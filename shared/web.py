"""What the HTTP services share: wiring from settings, JSON answers."""

from __future__ import annotations

import orjson
from flask import Response
from sqlalchemy.engine import Engine

from .catalog import Catalog, load_catalog
from .db import make_engine, migrate
from .settings import Settings, get_settings


def wire(settings: Settings | None, engine: Engine | None, catalog: Catalog | None) -> tuple[Settings, Catalog, Engine]:
    """Fill in what a caller did not pass: settings from the environment, the catalog, a migrated engine."""
    settings = settings or get_settings()
    catalog = catalog or load_catalog(settings.catalog)
    if engine is None:
        engine = make_engine(settings.database_url)
        migrate(engine)
    return settings, catalog, engine


def json_response(status: int, body, headers: dict[str, str] | None = None) -> Response:
    response = Response(orjson.dumps(body), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
