"""The composition root every service starts from: settings -> catalog -> engine.

Each service (the ingest and scorer apps, their commands, the notifier) asks `bootstrap`
for its settings, the city's catalog and a database engine on a schema at head, instead
of wiring them itself. A test passes the parts it made and gets the rest filled in.
"""

from __future__ import annotations

from typing import Generic, NamedTuple

from sqlalchemy.engine import Engine

from shared.core.catalog import Catalog, load_catalog
from shared.platform.settings import S, Settings, get_settings
from shared.store.engine import make_engine
from shared.store.schema import check_schema, prepare_schema


class Foundation(NamedTuple, Generic[S]):
    """What every service stands on."""

    settings: S
    catalog: Catalog
    engine: Engine


def bootstrap(kind: type[S] = Settings, *, settings: S | None = None, catalog: Catalog | None = None,
              engine: Engine | None = None, reader: bool = False) -> Foundation[S]:
    """Fill in what the caller did not pass: settings of `kind` (the service's own class) from the
    environment, the catalog they name, an engine on a schema at head.

    The schema is migrated first when MIGRATE_ON_START; otherwise a schema not at head stops the
    service (SchemaNotCurrent, saying what to run). `reader`: a service that only reads (the
    board and read API) connects with BOARD_DATABASE_URL when it is set, a role that may only
    SELECT: it never migrates, only checks the schema. An engine passed in is used as it is.
    """
    settings = settings if settings is not None else get_settings(kind)
    catalog = catalog if catalog is not None else load_catalog(settings.catalog)
    if engine is None:
        if reader and settings.board_database_url:
            engine = make_engine(settings.board_database_url)
            check_schema(engine)
        else:
            engine = make_engine(settings.database_url)
            prepare_schema(engine, settings.migrate_on_start)
    return Foundation(settings, catalog, engine)


__all__ = ["Foundation", "bootstrap"]
