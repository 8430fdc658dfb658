"""Commands of the scorer: run the consumer (with its read API), serve the API alone, rebuild."""

from __future__ import annotations

import gc
import logging
import sys
import threading

import click

from shared.platform.cli_options import catalog_option, load_catalog_option

from .settings import ScorerSettings

log = logging.getLogger("cityscore.scorer")


def _parts(catalog=None):
    """Settings, catalog (`catalog`, else the one the settings name) and engine, and the two parts
    of the store the scorer's pipeline writes through: the folds (ScoreWriter) and the published
    scores with their outbox (PublishedScores)."""
    from shared.platform.bootstrap import bootstrap
    from shared.store.published_scores import PublishedScores
    from shared.store.schema import SchemaNotCurrent
    from shared.store.score_reader import ScoreReader
    from shared.store.score_writer import ScoreWriter

    try:
        settings, catalog, engine = bootstrap(ScorerSettings, catalog=catalog)
    except SchemaNotCurrent as exc:
        raise click.ClickException(str(exc)) from None
    return settings, catalog, engine, ScoreWriter(engine, catalog), PublishedScores(ScoreReader(engine, catalog))


def serve_in_thread(app, host: str, port: int):
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)
    threading.Thread(target=server.serve_forever, name="scorer-http", daemon=True).start()
    return server


@click.group("scorer")
def scorer_group() -> None:
    """The scorer service (Kafka → SQL scores → read API and public board)."""


def _tune_for_throughput() -> None:
    """Run-time settings for the consumer's hot loop (each measured with bench/bench_scorer.py).

    - The GIL is handed over every millisecond instead of every five. The database worker
      thread mostly waits for PostgreSQL; each time an answer comes it needs the GIL back
      from the busy Kafka-and-validation thread (about 7% of the fold rate).
    - The cyclic garbage collector runs far less often. A batch holds tens of thousands of
      young objects (records, events, rows) that live until it is folded, and each
      collection walks the young objects still alive, so with Python's default threshold
      of 700 allocations the collector ran every few events and walked them again and
      again: about a quarter of the scorer's CPU. Nearly all of them are freed by
      reference counting anyway (they form no cycles). The threshold counts allocations
      net of what reference counting frees; at 500,000, steady folding never reaches it
      (no collection in a 300,000-event run), while at 50,000 it collected 12 times in 30
      batches, walking the batches in flight each time: 0.5-1.3 us more CPU per event.
      Garbage in cycles (an exception's traceback, say) is never freed by reference
      counting, so it still adds up to a collection. Objects made at start-up (modules,
      the catalog) are frozen out of the collector's walks altogether.
    """
    sys.setswitchinterval(0.001)
    gc.collect()
    gc.freeze()
    gc.set_threshold(500_000, 20, 20)


@scorer_group.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--http-port", default=8001, show_default=True, type=int,
              help="Serve the read API, the board and /metrics here too (0: not at all).")
def run(host: str, http_port: int) -> None:
    """Consume events and keep the scores; one of any number of scorers in the consumer group."""
    from shared.platform.logs import configure_logging
    from shared.platform.memory import return_large_buffers

    from .app import create_app
    from .consumer import EventsLost, Scorer

    configure_logging()
    _tune_for_throughput()
    return_large_buffers()  # a backlog's large buffers go back to the system (shared/platform/memory.py)
    settings, catalog, engine, writer, scores = _parts()
    scorer = Scorer(settings, writer, scores, catalog)
    scorer.install_signal_handlers()
    server = None
    if http_port:
        server = serve_in_thread(create_app(settings, engine=engine, catalog=catalog,
                                            consumer_metrics=scorer.metrics, liveness=scorer.alive), host, http_port)
        log.info("scorer read API listening", extra={"url": f"http://{host}:{http_port}/"})
    try:
        scorer.run()
    except EventsLost as exc:
        # Each partition's facts are logged already; this says what to do. Nothing past them was committed.
        log.error(f"the scorer stopped: {exc}")
        sys.exit(1)
    finally:
        scorer.close()
        if server is not None:
            server.shutdown()


@scorer_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8001, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve only the read API and the board (gunicorn in production: services.scorer.wsgi:app)."""
    from werkzeug.serving import run_simple

    from shared.platform.logs import configure_logging

    from .app import create_app

    configure_logging()
    run_simple(host, port, create_app(), threaded=True)


@click.command("rebuild")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--allow-partial-history", is_flag=True,
              help="Rebuild even when the events topic no longer holds every event (retention or deleted "
                   "records moved its start): the scores then count only the events still in the topic.")
@catalog_option
def rebuild(yes: bool, allow_partial_history: bool, catalog_path: str | None) -> None:
    """Forget the folded state and re-read the events topic from the beginning.

    Stop every scorer first. The scores published before are kept to compare with:
    a replay of the same events ends with the same scores and publishes no change.
    Refuses, changing nothing, when the topic has lost events (unless --allow-partial-history).
    Scores with the catalog --catalog names, else CITYSCORE_CATALOG's: run the scorers with the same one.
    """
    from shared.platform.logs import configure_logging

    from .consumer import EventsLost
    from .replay import PartialHistory, replay

    configure_logging()
    # Read before anything is asked or touched: a catalog that does not load stops the rebuild here.
    catalog = load_catalog_option(catalog_path)
    if not yes:
        click.confirm("Stop all scorers first. Rebuild the scores from the whole events topic?", abort=True)
    settings, catalog, _, writer, scores = _parts(catalog)
    _tune_for_throughput()
    try:
        report = replay(settings, writer, scores, catalog, allow_partial_history=allow_partial_history)
    except (PartialHistory, EventsLost) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"replayed {report.messages} messages ({report.folded} folded, {report.duplicates} duplicates, "
               f"{report.dead_letters} dead letters) in {report.seconds:.1f}s; "
               f"{report.changes} scores differ from before the rebuild")


@click.command("report")
@click.option("--month", required=True, help="The month under review, YYYY-MM.")
@click.option("--department", default=None, help="One department's packet (its id in the catalog).")
@click.option("--cabinet", default=None, help="A cabinet's packet: the metrics of all its departments.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, writable=True),
              help="The file to write.")
@click.option("--format", "fmt", type=click.Choice(["pdf", "html"]), default="pdf", show_default=True)
@catalog_option
def report(month: str, department: str | None, cabinet: str | None, out_path: str, fmt: str,
           catalog_path: str | None) -> None:
    """The monthly review packet of a department, a cabinet or (neither given) the whole city, from the
    scores in the database at $DATABASE_URL: each metric's month against target, its chart, late and
    overdue cases, the month's follow-up alerts and the targets in force."""
    from datetime import datetime, timezone
    from pathlib import Path

    from shared.platform.bootstrap import bootstrap
    from shared.store.schema import SchemaNotCurrent

    from .report import PacketRefused, build_packet, complete_month, render_html, render_pdf, scope_of

    catalog = load_catalog_option(catalog_path)
    now = datetime.now(timezone.utc)
    try:  # every option is checked before the database is opened
        complete_month(month, catalog, now)  # a month under way or to come has no figures as of its end
        scope = scope_of(catalog, department, cabinet)
    except PacketRefused as exc:
        raise click.UsageError(str(exc)) from None
    try:
        settings, catalog, engine = bootstrap(ScorerSettings, catalog=catalog)
    except SchemaNotCurrent as exc:
        raise click.ClickException(str(exc)) from None
    packet = build_packet(engine, catalog, month, scope, now)
    data = render_pdf(packet, catalog) if fmt == "pdf" else render_html(packet, catalog).encode()
    Path(out_path).write_bytes(data)
    click.echo(f"{scope.name}, {packet.first:%B %Y}: {len(packet.sections)} metrics, "
               f"{len(packet.alerts)} alerts -> {out_path} ({len(data):,} bytes)")
