"""The `cityscore` command: offline tools, and (in later steps) each service's entry point."""

from __future__ import annotations

import sys
import time
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Iterable, Sequence

import click
import orjson

from shared.core.catalog import Catalog, Feed, Metric
from shared.platform.cli_options import catalog_option, load_catalog_option as _load_catalog
from shared.platform.cli_options import parse_date as _parse_date

if TYPE_CHECKING:
    from shared.core.folding import Ledger


@click.group()
@click.version_option(package_name="cityscore")
def main() -> None:
    """CityScore: how well the city is doing, metric by metric, day by day."""


# -- contract and catalog ----------------------------------------------------


@main.group()
def contract() -> None:
    """The event contract."""


@contract.command("schema")
def contract_schema() -> None:
    """Print the event contract as a JSON Schema document."""
    from shared.core.contract import event_json_schema

    click.echo(orjson.dumps(event_json_schema(), option=orjson.OPT_INDENT_2).decode())


@main.group()
def catalog() -> None:
    """Metric catalogs."""


@catalog.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def catalog_check(file: str) -> None:
    """Validate a catalog file and summarise it."""
    loaded = _load_catalog(file)
    kinds: dict[str, int] = {}
    for metric in loaded.metrics:
        kinds[metric.kind.value] = kinds.get(metric.kind.value, 0) + 1
    click.echo(
        f"{file}: OK. {loaded.city} ({loaded.timezone}): {len(loaded.metrics)} metrics, "
        f"{len(loaded.departments)} departments"
    )
    click.echo("  windows:")
    for name, window in loaded.windows.items():
        click.echo(f"    {name}: {window.describe()}")
    for kind, count in sorted(kinds.items()):
        click.echo(f"  {kind}: {count}")
    if loaded.feeds:
        click.echo("  feeds: " + ", ".join(f"{name} ({feed.title})" for name, feed in loaded.feeds.items()))


# -- offline scoring ---------------------------------------------------------


@main.command()
@click.option("--events", "events_path", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="JSONL file of events ('-' for standard input).")
@click.option("--as-of", "as_of", required=True, callback=_parse_date, help="Score as of this local date (YYYY-MM-DD).")
@catalog_option
@click.option("--format", "fmt", type=click.Choice(["json", "table", "csv"]), default="json", show_default=True,
              help="csv: Boston's open-data columns (its Full Metric List), one row per metric.")
@click.option("--skip-invalid", is_flag=True, help="Count and report invalid lines instead of failing.")
@click.option("--percentile/--no-percentile", default=True, show_default=True,
              help="Rank each metric's day score within its past year (docs/scoring.md §4b).")
@click.option("--alert-window", "alert_windows", multiple=True, default=("week",), show_default=True,
              help="The window whose projected score the JSON shows (the notifier's NOTIFIER_ALERT_WINDOWS); "
                   "repeat it for several.")
def score(events_path: str, as_of: date, catalog_path: str | None, fmt: str, skip_invalid: bool,
          percentile: bool, alert_windows: tuple[str, ...]) -> None:
    """Score a JSONL file of events offline, as of a date."""
    from services.cli.offline import board_document, score_file

    loaded = _load_catalog(catalog_path)
    for window in alert_windows:
        _known_window(loaded, window, "--alert-window")
    started = time.perf_counter()
    with click.open_file(events_path, "rb") as stream:
        board, report, ledger = score_file(stream, loaded, as_of, percentile=percentile)
    elapsed = time.perf_counter() - started
    for bad in report.reasons:
        click.echo(f"{events_path}:{bad.line}: {bad.reason}", err=True)
    if report.invalid > len(report.reasons):
        click.echo(f"... and {report.invalid - len(report.reasons)} more invalid lines", err=True)
    summary = (
        f"{report.lines} lines: {report.folded} events folded, {report.duplicates} duplicates ignored, "
        f"{report.invalid} invalid, in {elapsed:.1f}s"
    )
    if report.invalid and not skip_invalid:
        click.echo(f"{summary}. Not scored: fix the lines above or pass --skip-invalid.", err=True)
        sys.exit(1)
    click.echo(summary, err=True)
    if fmt == "json":
        click.echo(orjson.dumps(board_document(board, ledger, alert_windows), option=orjson.OPT_INDENT_2).decode())
    elif fmt == "csv":
        from shared.core.open_data import full_metric_list
        from shared.platform.clock import system_clock

        # score_calculated_ts: the scores were computed just now, by this run; its board is the
        # latest there is, whatever its as-of date.
        click.echo(full_metric_list([board], loaded, system_clock.now(), latest=board.as_of), nl=False)
    else:
        from services.cli.terminal_board import render_table

        render_table(board, loaded)


def _known_window(catalog: Catalog, window: str, option: str) -> None:
    if window not in catalog.windows:
        raise click.BadParameter(f"{window!r} is not one of the catalog's windows ({', '.join(catalog.windows)})",
                                 param_hint=f"'{option}'")


def _case_metric(catalog: Catalog, metric_id: str, verb: str) -> Metric:
    """The case-fed metric `--metric` names, or a refusal naming the option (`verb`: what the command does)."""
    metric = catalog.by_id.get(metric_id)
    if metric is None:
        raise click.BadParameter(f"no metric {metric_id!r} in the catalog", param_hint="'--metric'")
    if metric.feed is not Feed.CASES:
        raise click.BadParameter(f"{metric_id!r} is fed {metric.feed.value}, not cases: it has no cases to {verb}",
                                 param_hint="'--metric'")
    return metric


def _folded(events_path: str, catalog: Catalog, skip_invalid: bool, not_done: str) -> Ledger:
    """A Ledger of the file's events. Invalid lines are named; unless `skip_invalid`, they stop the
    command (exit 1) with `not_done` ('Not listed') saying what was not done."""
    from services.cli.offline import fold_lines
    from shared.core.folding import Ledger

    ledger = Ledger(catalog)
    with click.open_file(events_path, "rb") as stream:
        report = fold_lines(stream, ledger)
    for bad in report.reasons:
        click.echo(f"{events_path}:{bad.line}: {bad.reason}", err=True)
    if report.invalid and not skip_invalid:
        click.echo(f"{report.invalid} invalid lines. {not_done}: fix the lines above or pass --skip-invalid.", err=True)
        sys.exit(1)
    return ledger


def _echo_csv(columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    click.echo(out.getvalue(), nl=False)


def _echo_table(cells: list[list[str]]) -> None:
    """Rows of text (the first one the heading) in aligned columns."""
    widths = [max(len(row[at]) for row in cells) for at in range(len(cells[0]))]
    for row in cells:
        click.echo("  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip())


@main.command()
@click.option("--events", "events_path", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="JSONL file of events ('-' for standard input).")
@click.option("--metric", "metric_id", required=True, help="A case-fed metric's id, e.g. pothole-on-time.")
@click.option("--as-of", "as_of", required=True, callback=_parse_date, help="As of this local date (YYYY-MM-DD).")
@click.option("--status", required=True, type=click.Choice(["late", "on_time", "open", "overdue"]),
              help="late / on_time: closed in the window; open / overdue: open at the end of the as-of day "
                   "(open: not due yet).")
@click.option("--window", default="week", show_default=True,
              help="The window whose closed cases are listed (late, on_time).")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "table"]), default="json", show_default=True)
@catalog_option
@click.option("--skip-invalid", is_flag=True, help="Count and report invalid lines instead of failing.")
def cases(events_path: str, metric_id: str, as_of: date, status: str, window: str, fmt: str,
          catalog_path: str | None, skip_invalid: bool) -> None:
    """List the cases behind a metric's score, newest first: ids, times, status and hours late."""
    from shared.core.cases import case_cells, case_columns, case_list_document, cases_behind

    loaded = _load_catalog(catalog_path)
    metric = _case_metric(loaded, metric_id, "list")
    _known_window(loaded, window, "--window")
    ledger = _folded(events_path, loaded, skip_invalid, "Not listed")
    # The read API's document too (GET /v1/metrics/ID/cases), so the two cannot drift.
    shown = case_list_document(loaded, metric_id, as_of, status, window,
                               cases_behind(ledger.cases.values(), loaded, metric_id, as_of, status, window))
    if fmt == "json":
        click.echo(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
        return
    rows = shown["cases"]
    columns = case_columns(metric)
    flat = case_cells(metric, rows)
    if fmt == "csv":
        _echo_csv(columns, flat)
        return
    _echo_table([list(columns)] + [[str(value) for value in row] for row in flat])
    if not rows:
        click.echo(f"(no {status.replace('_', ' ')} cases)")


@main.command()
@click.option("--events", "events_path", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="JSONL file of events ('-' for standard input).")
@click.option("--metric", "metric_id", required=True, help="A case-fed metric's id, e.g. pothole-on-time.")
@click.option("--by", "by", required=True, help="One of the metric's breakdowns in the catalog, e.g. neighborhood.")
@click.option("--as-of", "as_of", required=True, callback=_parse_date, help="As of this local date (YYYY-MM-DD).")
@click.option("--window", default="week", show_default=True, help="The window whose closed cases are counted.")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "table"]), default="json", show_default=True)
@catalog_option
@click.option("--skip-invalid", is_flag=True, help="Count and report invalid lines instead of failing.")
def breakdown(events_path: str, metric_id: str, by: str, as_of: date, window: str, fmt: str,
              catalog_path: str | None, skip_invalid: bool) -> None:
    """Who waits longer: a metric's on-time share in a window by a case attribute, worst first."""
    from shared.core.cases import BREAKDOWN_COLUMNS, breakdown_document, breakdown_refusal
    from shared.core.cases import breakdown as groups_of

    loaded = _load_catalog(catalog_path)
    metric = _case_metric(loaded, metric_id, "break down")
    reason = breakdown_refusal(metric, by)
    if reason is not None:
        raise click.BadParameter(reason, param_hint="'--by'")
    _known_window(loaded, window, "--window")
    ledger = _folded(events_path, loaded, skip_invalid, "Not counted")
    # The read API's document too (GET /v1/metrics/ID/breakdown), so the two cannot drift.
    shown = breakdown_document(loaded, metric_id, by, as_of, window,
                               groups_of(ledger.cases.values(), loaded, metric_id, by, as_of, window))
    rows = shown["groups"]
    if fmt == "json":
        click.echo(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
        return
    if fmt == "csv":
        _echo_csv(BREAKDOWN_COLUMNS, [[row[column] for column in BREAKDOWN_COLUMNS] for row in rows])
        return
    _echo_table([[by, "on time", "closed", "share"]] + [
        [row["group"], str(row["numerator"]), str(row["denominator"]), f"{row['share']:.0%}"] for row in rows])
    if not rows:
        click.echo(f"(no cases closed in the {window})")


# -- importers ---------------------------------------------------------------


@main.group("import")
def import_group() -> None:
    """Turn a city's exports into events."""


_IMPORT_OPTIONS = [
    click.option("--out", "out_path", type=click.Path(dir_okay=False, allow_dash=True),
                 help="JSONL file of case events to write ('-' for standard output)."),
    click.option("--ingest-url", default=None,
                 help="Send the events to this ingest API instead (e.g. http://host:8000)."),
    click.option("--api-key", "api_keys", multiple=True, envvar="CITYSCORE_API_KEYS",
                 help="Department API key for --ingest-url; repeat it for each department the export covers "
                      "(or $CITYSCORE_API_KEYS, space-separated)."),
    click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 1000)),
]


def _import_options(command):
    for option in reversed(_IMPORT_OPTIONS):
        command = option(command)
    return command


@import_group.command("csv")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--feed", "feed_name", required=True,
              help="The catalog's feed for this export (or a source whose layouts the header picks among).")
@_import_options
@catalog_option
def import_csv(file: str, feed_name: str, out_path: str | None, ingest_url: str | None, api_keys: tuple[str, ...],
               batch_size: int, catalog_path: str | None) -> None:
    """Turn a city's 311 CSV export into case events through a feed of the catalog (docs/feeds.md)."""
    from shared.feeds.csv_feed import CsvFeedReader, UnknownFeed, resolve_feeds

    _check_import_target(out_path, ingest_url, api_keys)
    loaded = _load_catalog(catalog_path)
    try:
        feeds = resolve_feeds(loaded, feed_name)
    except UnknownFeed as exc:
        raise click.BadParameter(str(exc), param_hint="'--feed'") from None
    _import(file, lambda text: CsvFeedReader(text, loaded, feeds), out_path, ingest_url, api_keys, batch_size)


@import_group.command("boston311")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@_import_options
@catalog_option
def import_boston311(file: str, out_path: str | None, ingest_url: str | None, api_keys: tuple[str, ...],
                     batch_size: int, catalog_path: str | None) -> None:
    """Turn a Boston 311 CSV export (2015-2018 or 2019+ layout) into case events.

    The same as `import csv FILE --feed boston311` (Boston's catalog's two layouts).
    """
    from shared.feeds.boston311 import Boston311Reader

    _check_import_target(out_path, ingest_url, api_keys)
    loaded = _load_catalog(catalog_path)
    _import(file, lambda text: Boston311Reader(text, loaded), out_path, ingest_url, api_keys, batch_size)


def _feeds_option(catalog: Catalog, feed_name: str):
    from shared.feeds.csv_feed import UnknownFeed, resolve_feeds

    try:
        return resolve_feeds(catalog, feed_name)
    except UnknownFeed as exc:
        raise click.BadParameter(str(exc), param_hint="'--feed'") from None


def _open311_params(params: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in params:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise click.BadParameter(f"{item!r}: give NAME=VALUE, e.g. jurisdiction_id=city.gov", param_hint="'--param'")
        out[name.strip()] = value
    return out


_OPEN311_PARAM = click.option(
    "--param", "params", multiple=True,
    help="An extra query parameter of every requests.json call, NAME=VALUE (jurisdiction_id, api_key); repeatable.")


def _open311_reading(command):
    """--page-size and --limit: how an endpoint's pages and its cap are asked for (docs/feeds.md)."""
    command = click.option(
        "--limit", default=1000, show_default=True, type=click.IntRange(min=1),
        help="The most requests the endpoint answers when it does not page (GeoReport v2's default: "
             "1,000); an answer this long is asked for again in halves.")(command)
    return click.option(
        "--page-size", default=500, show_default=True, type=click.IntRange(min=1),
        help="page_size asked for when the endpoint pages; pages are read until an empty one.")(command)


@import_group.command("open311")
@click.argument("source")
@click.option("--feed", "feed_name", required=True, help="The catalog's feed for this city's Open311 requests.")
@click.option("--start", "start_day", callback=_parse_date, default=None,
              help="First local day of requested_datetime to read (default: 90 days before --end). URL only.")
@click.option("--end", "end_day", callback=_parse_date, default=None,
              help="Last local day to read, included (default: today). URL only.")
@_OPEN311_PARAM
@_open311_reading
@_import_options
@catalog_option
def import_open311(source: str, feed_name: str, start_day: date | None, end_day: date | None,
                   params: tuple[str, ...], page_size: int, limit: int, out_path: str | None, ingest_url: str | None,
                   api_keys: tuple[str, ...], batch_size: int, catalog_path: str | None) -> None:
    """Turn a city's Open311 GeoReport v2 requests into case events through a feed of the catalog.

    SOURCE is the endpoint (https://city.example/open311/v2, or its requests.json URL), read in
    windows of at most 90 days, open and closed requests, page by page when it pages; or a saved
    requests.json answer (docs/feeds.md, Open311).
    """
    from shared.core.feed_rows import FeedFormatError
    from shared.feeds.csv_feed import ingest_dicts, write_events, write_output
    from shared.feeds.open311 import Open311Client, Open311Error, Open311Reader

    _check_import_target(out_path, ingest_url, api_keys)
    loaded = _load_catalog(catalog_path)
    feeds = _feeds_option(loaded, feed_name)
    started = time.perf_counter()
    from_url = source.startswith(("http://", "https://"))
    try:
        if from_url:
            end_day = end_day or datetime.now(loaded.zone).date()
            start_day = start_day or end_day - timedelta(days=90)
            if start_day > end_day:
                raise click.BadParameter(f"{start_day} is after --end {end_day}", param_hint="'--start'")
            start = datetime.combine(start_day, datetime.min.time(), loaded.zone)
            end = datetime.combine(end_day + timedelta(days=1), datetime.min.time(), loaded.zone)
            client = Open311Client(source, params=_open311_params(params), page_size=page_size, limit=limit)
            reader = Open311Reader.from_endpoint(client, start, end, loaded, feeds)
            click.echo(f"{source}: {client.stats.line()}; {len(reader.rows)} distinct requests "
                       f"requested {start_day} to {end_day}", err=True)
        else:
            if start_day or end_day or params:
                raise click.UsageError("--start, --end and --param read an endpoint; a saved answer is read whole")
            reader = Open311Reader.from_file(source, loaded, feeds)
    except (Open311Error, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except FeedFormatError as exc:
        raise click.ClickException(f"{source}: {exc}") from None

    def write(out: str):
        write_output(out, lambda stream: write_events(reader, stream))
        return reader.summary

    _deliver(source, write, lambda router: (reader.summary, router.send(ingest_dicts(reader))),
             out_path, ingest_url, api_keys, batch_size, started)


def _check_import_target(out_path: str | None, ingest_url: str | None, api_keys: tuple[str, ...]) -> None:
    if (out_path is None) == (ingest_url is None):
        raise click.UsageError("give either --out FILE or --ingest-url URL")
    if ingest_url and not api_keys:
        raise click.UsageError("--ingest-url needs --api-key (or $CITYSCORE_API_KEYS)")


def _import(file: str, reader_for, out_path: str | None, ingest_url: str | None, api_keys: tuple[str, ...],
            batch_size: int) -> None:
    """Write the export's events to a file, or send them to ingest; print the summary on stderr."""
    from shared.feeds.csv_feed import import_file, send_file

    _deliver(file, lambda out: import_file(file, out, reader_for), lambda router: send_file(file, reader_for, router),
             out_path, ingest_url, api_keys, batch_size)


def _router(ingest_url: str, api_keys: tuple[str, ...], batch_size: int):
    from services.ingest.client import DepartmentRouter

    try:
        return DepartmentRouter(ingest_url, list(api_keys), batch_size=batch_size)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


def _deliver(label: str, write, send, out_path: str | None, ingest_url: str | None, api_keys: tuple[str, ...],
             batch_size: int, started: float | None = None) -> None:
    """Every importer's ending: `write(out_path)` the events to a file (returns the summary), or
    `send(router)` them to ingest with each department's key (returns the summary and the
    router's report); then the summary on stderr, and exit status 1 when ingest refused any."""
    from shared.core.feed_rows import FeedFormatError

    started = time.perf_counter() if started is None else started
    try:
        if ingest_url:
            summary, report = send(_router(ingest_url, api_keys, batch_size))
        else:
            summary, report = write(out_path), None
    except FeedFormatError as exc:
        raise click.ClickException(f"{label}: {exc}") from None
    elapsed = time.perf_counter() - started
    for line in summary.lines():
        click.echo(line, err=True)
    if report is None:
        click.echo(f"wrote {'standard output' if out_path == '-' else out_path} in {elapsed:.1f}s", err=True)
        return
    click.echo(f"sent to {ingest_url} in {elapsed:.1f}s ({report.requests} requests): "
               f"{report.accepted} accepted, {report.refused_count} refused", err=True)
    for refusal in report.refused[:50]:
        click.echo(f"  refused {refusal.event_id} (HTTP {refusal.status}): {'; '.join(refusal.reasons)}", err=True)
    if report.refused_count > 50:
        click.echo(f"  ... and {report.refused_count - 50} more", err=True)
    if report.refused_count:
        sys.exit(1)


# -- developer tools ---------------------------------------------------------


@main.group()
def dev() -> None:
    """Tools for developers: generated data, a local Kafka broker."""


@dev.command("generate")
@click.option("--days", type=click.IntRange(min=1), required=True, help="Local days of live events.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--end", callback=_parse_date, default=None, help="Last day (default: yesterday).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, allow_dash=True), required=True)
@catalog_option
def dev_generate(days: int, seed: int, end: date | None, out_path: str, catalog_path: str | None) -> None:
    """Write a realistic JSONL stream of events for every catalog metric."""
    from shared.dev.generator import generate

    loaded = _load_catalog(catalog_path)
    end = end or (datetime.now(loaded.zone).date() - timedelta(days=1))
    written = 0
    dumps = orjson.dumps
    with click.open_file(out_path, "wb") as out:
        batch = []
        for event in generate(loaded, days, seed, end):
            batch.append(dumps(event))
            if len(batch) >= 10000:
                out.write(b"\n".join(batch) + b"\n")
                written += len(batch)
                batch.clear()
        if batch:
            out.write(b"\n".join(batch) + b"\n")
            written += len(batch)
    click.echo(f"wrote {written} events for {days} days ending {end} (seed {seed}) to {out_path}", err=True)


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database at $DATABASE_URL to the newest schema."""
    from shared.store.engine import migrate
    from shared.platform.settings import get_settings

    url = get_settings().database_url
    migrate(url)
    click.echo(f"database schema is up to date ({url.split('@')[-1]})")


# Command groups that live beside the code they drive.
from services.ingest.cli import departments_group, ingest_group, keys_group  # noqa: E402
from services.demo import demo_command  # noqa: E402
from services.notifier.cli import alerts_group, notifier_group, notify_group  # noqa: E402
from services.cli.pull import pull_group  # noqa: E402
from services.cli.record import action_group, note_group  # noqa: E402
from services.scorer.cli import rebuild, report, scorer_group  # noqa: E402
from shared.dev.local_kafka import kafka_group  # noqa: E402

dev.add_command(kafka_group)
main.add_command(ingest_group)
main.add_command(departments_group)
main.add_command(keys_group)
main.add_command(scorer_group)
main.add_command(rebuild)
main.add_command(report)
main.add_command(notifier_group)
main.add_command(notify_group)
main.add_command(alerts_group)
main.add_command(demo_command)
main.add_command(pull_group)
main.add_command(action_group)
main.add_command(note_group)

if __name__ == "__main__":  # pragma: no cover
    main()
