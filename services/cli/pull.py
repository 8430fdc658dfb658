"""`cityscore pull open311 URL --feed NAME --ingest-url URL --api-key K …`: the live pull (docs/feeds.md).

The entry point: it wires the pull (services/puller) to ingest's client (services/ingest/client.py),
which only the entry points in services/cli may join.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import click

from shared.platform.cli_options import catalog_option
from shared.platform.cli_options import load_catalog_option as _load_catalog

log = logging.getLogger("cityscore.pull")


def _duration(ctx, param, value):
    from shared.core.open311 import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter(f"{value!r}: must be longer than zero")
    return seconds


@click.group("pull")
def pull_group() -> None:
    """Keep a city's 311 system flowing into CityScore."""


@pull_group.command("open311")
@click.argument("url", envvar="CITYSCORE_OPEN311_URL")
@click.option("--feed", "feed_name", required=True, envvar="CITYSCORE_PULL_FEED",
              help="The catalog's feed for this endpoint's requests [$CITYSCORE_PULL_FEED].")
@click.option("--ingest-url", required=True, envvar="CITYSCORE_INGEST_URL",
              help="The ingest API the events go to, e.g. http://ingest:8000 [$CITYSCORE_INGEST_URL].")
@click.option("--api-key", "api_keys", multiple=True, required=True, envvar="CITYSCORE_API_KEYS",
              help="A department's API key; one per department the feed covers [$CITYSCORE_API_KEYS, "
                   "space-separated].")
@click.option("--state", "state_path", default="open311-pull.json", show_default=True, envvar="CITYSCORE_PULL_STATE",
              type=click.Path(dir_okay=False), help="Where the cursor is kept between runs [$CITYSCORE_PULL_STATE].")
@click.option("--every", default="15m", show_default=True, envvar="CITYSCORE_PULL_EVERY", callback=_duration,
              help="Time between the starts of two cycles: 15m, 30s, 1h [$CITYSCORE_PULL_EVERY].")
@click.option("--lookback", default="90d", show_default=True, envvar="CITYSCORE_PULL_LOOKBACK", callback=_duration,
              help="How far back in requested_datetime each cycle reads, to see requests updated since "
                   "[$CITYSCORE_PULL_LOOKBACK].")
@click.option("--overlap", default="1d", show_default=True, envvar="CITYSCORE_PULL_OVERLAP", callback=_duration,
              help="How far before the cursor each cycle looks again for requests it has not sent as they are "
                   "(missed by a cycle, shown late, closes back-dated) [$CITYSCORE_PULL_OVERLAP].")
@click.option("--backoff", default="5s", show_default=True, callback=_duration,
              help="The first wait after a failure of the endpoint or ingest; doubled after each failure.")
@click.option("--backoff-max", default="15m", show_default=True, callback=_duration, help="The longest wait.")
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 1000),
              help="Requests per batch; the cursor is saved after ingest accepted each.")
@click.option("--cycles", default=0, show_default=True, type=click.IntRange(min=0),
              help="Stop after this many successful cycles (0: run until stopped).")
@click.option("--param", "params", multiple=True,
              help="An extra query parameter of every requests.json call, NAME=VALUE; repeatable.")
@click.option("--page-size", default=500, show_default=True, type=click.IntRange(min=1),
              help="page_size asked for when the endpoint pages; pages are read until an empty one.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=1),
              help="The most requests the endpoint answers when it does not page; an answer this long is "
                   "asked for again in halves.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Where /healthz and /readyz are served.")
@click.option("--http-port", default=0, show_default=True, type=int, help="Their port (0: not served).")
@catalog_option
def pull_open311(url: str, feed_name: str, ingest_url: str, api_keys: tuple[str, ...], state_path: str, every: float,
                 lookback: float, overlap: float, backoff: float, backoff_max: float, batch_size: int, cycles: int,
                 params: tuple[str, ...], page_size: int, limit: int, host: str, http_port: int, catalog_path: str | None) -> None:
    """Send a city's new and updated Open311 requests to ingest every --every, restart-safe."""
    from services.cli.commands import _feeds_option, _open311_params
    from services.ingest.client import DepartmentRouter
    from shared.feeds.open311 import Open311Client, requests_url
    from shared.platform.logs import configure_logging

    from services.puller.app import create_app
    from services.puller.pull import Open311Pull, StateError, StateFile

    configure_logging()
    catalog = _load_catalog(catalog_path)
    feeds = _feeds_option(catalog, feed_name)
    keys = [part for key in api_keys for part in key.split()]  # $CITYSCORE_API_KEYS: space-separated
    client = Open311Client(url, params=_open311_params(params), backoff_s=min(0.5, backoff), page_size=page_size,
                           limit=limit)
    state = StateFile(Path(state_path), requests_url(url), feed_name)
    try:
        pull = Open311Pull(client, catalog, feeds, lambda: DepartmentRouter(ingest_url, keys, batch_size=1000), state,
                           lookback_s=lookback, batch_size=batch_size, overlap_s=overlap)
    except StateError as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    server = None
    loop = threading.current_thread()
    if http_port:
        from werkzeug.serving import make_server

        server = make_server(host, http_port, create_app(pull, loop.is_alive), threaded=True)
        threading.Thread(target=server.serve_forever, name="pull-http", daemon=True).start()
    log.info("pulling", extra={"endpoint": requests_url(url), "feed": feed_name, "ingest": ingest_url,
                               "every_s": every, "lookback_s": lookback, "overlap_s": overlap, "state": state_path,
                               "cursor": pull._cursor_text()})
    try:
        status = pull.run(stop, every, backoff, backoff_max, cycles)
    finally:
        if server is not None:
            server.shutdown()
    log.info("stopped", extra={"cycles": pull.cycles, "cursor": pull._cursor_text()})
    sys.exit(status)
