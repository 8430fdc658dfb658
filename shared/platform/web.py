"""What the HTTP services share: wiring from settings, JSON answers."""

from __future__ import annotations

import orjson
from flask import Response
from sqlalchemy.engine import Engine

from shared.core.catalog import Catalog, load_catalog
from shared.store.engine import make_engine
from shared.store.schema import check_schema, prepare_schema
from shared.platform.settings import S, Settings, get_settings


def wire(settings: S | None, engine: Engine | None, catalog: Catalog | None, *,
         kind: type[S] = Settings, reader: bool = False) -> tuple[S, Catalog, Engine]:
    """Fill in what a caller did not pass: settings of `kind` (the service's own) from the environment,
    the catalog, an engine on a schema at head (migrated first when MIGRATE_ON_START).

    `reader`: an app that only reads (the board and read API) connects with BOARD_DATABASE_URL
    when it is set, a role that may only SELECT: it never migrates, only checks the schema.
    """
    settings = settings or get_settings(kind)
    catalog = catalog or load_catalog(settings.catalog)
    if engine is None:
        if reader and settings.board_database_url:
            engine = make_engine(settings.board_database_url)
            check_schema(engine)
        else:
            engine = make_engine(settings.database_url)
            prepare_schema(engine, settings.migrate_on_start)
    return settings, catalog, engine


def json_response(status: int, body, headers: dict[str, str] | None = None) -> Response:
    response = Response(orjson.dumps(body), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
