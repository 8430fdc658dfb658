"""The read API's cases behind a score, backlog, projected scores and breakdowns equal the offline
command's (`cityscore score`, `cityscore cases`, `cityscore breakdown`) on the same events, on
PostgreSQL and on SQLite (docs/contract.md, "Cases").

The events: a generated month of cases, with some reopened (sent again open), withdrawn, and cases that
close after the earlier as-of dates. The API reads the cases the scorer kept when it folded them;
the command folds the JSONL file itself.
"""

from __future__ import annotations

import csv
import io
import json
import random
import zlib
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from services.cli.commands import main
from services.scorer.app import create_app
from services.scorer.settings import ScorerSettings
from shared.core.cases import STATUSES
from shared.core.catalog import load_catalog
from shared.dev.generator import generate
from shared.store.engine import make_engine, migrate
from shared.store.published_scores import PublishedScores
from shared.store.score_reader import ScoreReader
from tests.fakes.clock import ManualClock
from tests.helpers.ingest import fresh_database
from tests.helpers.score_parts import fold_in_batches

END = date(2026, 6, 30)
# Noon in the city on 1 July: the current as-of day is 30 June, the board the scorer published.
NOW = datetime(2026, 7, 1, 16, 0, tzinfo=timezone.utc)
LISTED = "pothole-on-time"  # its neighbourhood is public: the lists show it
PRIVATE = "graffiti-on-time"  # public_case_lists: false
CATALOG_TEXT = (f"extends: boston.yaml\nmetric_overrides:\n  {LISTED}: {{public_attributes: [neighborhood]}}\n"
                f"  {PRIVATE}: {{public_case_lists: false}}\n")
NEIGHBORHOODS = ("Roxbury", "Dorchester", "Back Bay", "Mattapan", None)
AS_OFS = (END - timedelta(days=12), END - timedelta(days=4), END)


def events() -> list[dict]:
    rng = random.Random(1616)
    catalog = load_catalog()
    # Only the cases: what the lists, the backlog and the case-fed metrics' scores are made of.
    made = [event for event in generate(catalog, 30, 1616, END) if event["type"] == "case"]
    for event in made:  # a neighbourhood per case, every version alike; some cases give none
        where = NEIGHBORHOODS[zlib.crc32(event["case_id"].encode()) % len(NEIGHBORHOODS)]
        if where is not None:
            event["attributes"] = {**(event.get("attributes") or {}), "neighborhood": where}
    closed = [e for e in made if e["type"] == "case" and e.get("closed_at")]
    reopened = [{**case, "event_id": case["event_id"] + "-reopened", "closed_at": None}
                for case in rng.sample(closed, 40)]
    withdrawn = [{"event_id": f"w-{case['event_id']}", "type": "withdrawal", "metric": case["metric"],
                  "withdraws": case["event_id"]} for case in rng.sample(closed, 25)]
    return made + reopened + withdrawn


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("case-api")
    (folder / "catalog.yaml").write_text(CATALOG_TEXT)
    made = events()
    (folder / "events.jsonl").write_text("\n".join(json.dumps(event) for event in made) + "\n")
    return folder, made


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def engine(request, files, tmp_path_factory):
    folder, made = files
    catalog = load_catalog(folder / "catalog.yaml")
    if request.param == "sqlite":
        made_engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('case-api-db') / 'scores.db'}")
        migrate(made_engine)
    else:
        made_engine = fresh_database(request.getfixturevalue("database_url"))
    # in batches, as the scorer folds them
    fold_in_batches(made_engine, catalog, made, 700)
    with made_engine.begin() as conn:
        PublishedScores(ScoreReader(made_engine, catalog)).rescore(conn, END)
    yield made_engine
    made_engine.dispose()


def client_for(engine, folder, **settings):
    app = create_app(ScorerSettings(SCORER_READ_TIMEOUT=120, **settings), engine=engine,
                     catalog=load_catalog(folder / "catalog.yaml"), clock=ManualClock(NOW))
    return app.test_client()


@pytest.fixture(scope="module")
def client(engine, files):
    return client_for(engine, files[0])


@pytest.fixture(scope="module")
def offline(files):
    """`cityscore ARGS --events FILE --catalog C` on the same events: its standard output."""
    folder, _ = files
    runner = CliRunner()
    memo: dict[tuple, str] = {}

    def run(*args) -> str:
        if args not in memo:
            result = runner.invoke(main, [*map(str, args), "--events", str(folder / "events.jsonl"),
                                          "--catalog", str(folder / "catalog.yaml")])
            assert result.exit_code == 0, result.output
            memo[args] = result.stdout
        return memo[args]

    return run


def case_metrics(folder) -> list[str]:
    return [m.id for m in load_catalog(folder / "catalog.yaml").metrics if m.feed.value == "cases"]


def all_pages(client, url: str) -> tuple[dict, list[dict]]:
    """The first page's document and every page's cases, following `next` to the end."""
    first = page = client.get(url).json
    listed = []
    seen = 0
    while True:
        assert page["total"] == first["total"] and page["offset"] == seen
        listed += page["cases"]
        seen += len(page["cases"])
        if page["next"] is None:
            break
        assert len(page["cases"]) == page["limit"]
        response = client.get(page["next"])
        assert response.status_code == 200, response.json
        page = response.json
    assert seen == first["total"]
    return first, listed


def without_paging(document: dict) -> dict:
    return {key: value for key, value in document.items() if key not in ("total", "limit", "offset", "next")}


# -- the board: open and projected ------------------------------------------------------------------


def case_fields(board: dict) -> dict:
    return {metric_id: {key: shown.get(key) for key in ("open", "projected")}
            for metric_id, shown in board["metrics"].items()}


@pytest.mark.parametrize("as_of", AS_OFS)
def test_the_board_s_open_and_projected_are_cityscore_score_s(client, offline, as_of):
    # The current as-of day's board is the one the scorer published; the others are scored on request.
    asked = "" if as_of == END else f"?as_of={as_of}"
    body = client.get(f"/v1/scoreboard{asked}").json
    assert (body["updated_at"] is not None) is (as_of == END)
    expected = json.loads(offline("score", "--as-of", as_of, "--no-percentile"))
    assert case_fields(body) == case_fields(expected)
    shown = [fields for fields in case_fields(body).values() if fields["open"] is not None]
    assert len(shown) == 11 and all(set(fields["projected"]) == {"week"} for fields in shown)
    assert sum(fields["open"]["overdue"] for fields in shown) > 0


def test_the_projected_windows_are_notifier_alert_windows(engine, files, offline):
    client = client_for(engine, files[0], NOTIFIER_ALERT_WINDOWS="month, week")
    body = client.get(f"/v1/scoreboard?as_of={AS_OFS[1]}").json
    expected = json.loads(offline("score", "--as-of", AS_OFS[1], "--no-percentile",
                                  "--alert-window", "month", "--alert-window", "week"))
    assert case_fields(body) == case_fields(expected)
    assert set(body["metrics"][LISTED]["projected"]) == {"month", "week"}


def test_an_alert_window_the_catalog_lacks_stops_the_read_api_naming_the_variable(engine, files):
    with pytest.raises(ValueError, match="NOTIFIER_ALERT_WINDOWS: 'fortnight' is not one of the catalog's windows"):
        client_for(engine, files[0], NOTIFIER_ALERT_WINDOWS="week,fortnight")


# -- the case lists ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def case_lists(files, offline):
    """`cityscore cases`'s JSON for any list, from one fold of the events file: the command folds
    the file for each list (some 300 here, most of this module's time), then makes its document
    with case_list_document. One list per status is asked of the command itself, and must be
    the same, so what stands for it here is what it prints."""
    from services.cli.offline import fold_lines
    from shared.core.cases import case_list_document, cases_behind
    from shared.core.folding import Ledger

    folder, _ = files
    catalog = load_catalog(folder / "catalog.yaml")
    ledger = Ledger(catalog)
    with open(folder / "events.jsonl", "rb") as lines:
        assert not fold_lines(lines, ledger).invalid

    def listed(metric_id: str, as_of: date, status: str, window: str) -> dict:
        return json.loads(json.dumps(case_list_document(
            catalog, metric_id, as_of, status, window,
            cases_behind(ledger.cases.values(), catalog, metric_id, as_of, status, window))))

    for status, window in zip(STATUSES, ("month", "week", "week", "quarter")):
        assert listed(LISTED, AS_OFS[1], status, window) == json.loads(offline(
            "cases", "--metric", LISTED, "--as-of", AS_OFS[1], "--status", status, "--window", window))
    return listed


@pytest.mark.parametrize("as_of", AS_OFS)
def test_every_case_list_paged_through_is_cityscore_cases(client, files, case_lists, as_of):
    folder, _ = files
    compared = 0
    for metric_id in case_metrics(folder):
        if metric_id == PRIVATE:
            continue
        for status in STATUSES:
            for window in (("week", "month", "quarter") if status in ("late", "on_time") else ("week",)):
                expected = case_lists(metric_id, as_of, status, window)
                first, listed = all_pages(client, f"/v1/metrics/{metric_id}/cases?status={status}&window={window}"
                                                  f"&as_of={as_of}&limit=37")
                assert {**without_paging(first), "cases": listed} == expected, (metric_id, status, window)
                compared += len(listed)
    assert compared > 2000


def test_the_case_lists_show_the_public_attributes_and_cases_closed_after_the_as_of_day_as_open(client, offline):
    as_of = AS_OFS[0]
    overdue = client.get(f"/v1/metrics/{LISTED}/cases?status=overdue&as_of={as_of}&limit=1000").json
    assert overdue["cases"] and all(case["closed_at"] is None for case in overdue["cases"])
    assert any(case["attributes"].get("neighborhood") for case in overdue["cases"])
    # Some of them closed since: the current list has fewer, or other, overdue cases.
    now = {case["case_id"] for case in client.get(f"/v1/metrics/{LISTED}/cases?status=overdue&limit=1000")
           .json["cases"]}
    assert {case["case_id"] for case in overdue["cases"]} - now


@pytest.mark.parametrize("status", ["late", "overdue"])
def test_the_csv_pages_are_cityscore_cases_csv(client, offline, status):
    as_of = AS_OFS[1]
    expected = list(csv.reader(io.StringIO(offline("cases", "--metric", LISTED, "--as-of", as_of, "--status", status,
                                                   "--format", "csv"))))
    assert expected[0][-1] == "neighborhood" and len(expected) > 3
    rows, url = [], f"/v1/metrics/{LISTED}/cases.csv?status={status}&as_of={as_of}&limit=2"
    while url:
        response = client.get(url)
        assert response.status_code == 200 and response.mimetype == "text/csv"
        assert response.headers["X-Total-Count"] == str(len(expected) - 1)
        page = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
        assert page[0] == expected[0]
        rows += page[1:]
        link = response.headers.get("Link")
        url = link[1:link.index(">")] if link else None
    assert [expected[0], *rows] == expected
    assert f'filename="{LISTED}-{status}-{as_of}' in response.headers["Content-Disposition"]


def test_paging_edges(client):
    base = f"/v1/metrics/{LISTED}/cases?status=on_time&as_of={END}&window=week"
    first = client.get(base).json
    total = first["total"]
    assert 100 < total <= 1000
    assert (first["limit"], first["offset"], len(first["cases"])) == (100, 0, 100)  # the default page
    assert first["next"] == f"/v1/metrics/{LISTED}/cases?status=on_time&as_of={END}&window=week&limit=100&offset=100"
    last = client.get(f"{base}&offset={total - 1}&limit=1000").json
    assert len(last["cases"]) == 1 and last["next"] is None
    exact = client.get(f"{base}&limit={total}").json
    assert len(exact["cases"]) == total and exact["next"] is None
    for offset in (total, total + 50):
        beyond = client.get(f"{base}&offset={offset}").json
        assert (beyond["cases"], beyond["next"], beyond["total"]) == ([], None, total)
    # Without as_of, the next page pins the current as-of day: a list paged across midnight stays one.
    unpinned = client.get(f"/v1/metrics/{LISTED}/cases?status=on_time&window=month&limit=5").json
    assert urlsplit(unpinned["next"]).query == f"status=on_time&as_of={END}&window=month&limit=5&offset=5"
    # open and overdue do not depend on the window: the next page names none unless asked.
    overdue = client.get(f"/v1/metrics/{LISTED}/cases?status=open&as_of={END}&limit=1").json
    assert "window" not in overdue and "window=" not in (overdue["next"] or "window=")


# -- breakdowns ------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_of", AS_OFS)
def test_every_breakdown_is_cityscore_breakdown(client, files, offline, as_of):
    folder, _ = files
    shown = 0
    for metric_id in case_metrics(folder):  # the private lists' metric too: a breakdown shows counts
        for window in ("week", "month"):
            expected = json.loads(offline("breakdown", "--metric", metric_id, "--by", "neighborhood",
                                          "--as-of", as_of, "--window", window))
            response = client.get(f"/v1/metrics/{metric_id}/breakdown?by=neighborhood&window={window}&as_of={as_of}")
            assert response.status_code == 200
            assert response.json == expected, (metric_id, window)
            shown += len(expected["groups"])
    assert shown > 60  # five groups (four and "(not given)") for most metrics and windows


def test_the_breakdown_csv_is_cityscore_breakdown_csv(client, offline):
    expected = offline("breakdown", "--metric", LISTED, "--by", "neighborhood", "--as-of", END, "--window", "month",
                       "--format", "csv")
    response = client.get(f"/v1/metrics/{LISTED}/breakdown.csv?by=neighborhood&window=month")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.get_data(as_text=True) == expected


# -- refusals --------------------------------------------------------------------------------------


def test_case_lists_the_catalog_keeps_off_the_public_are_refused_naming_public_case_lists(client):
    for path in (f"/v1/metrics/{PRIVATE}/cases?status=late", f"/v1/metrics/{PRIVATE}/cases.csv?status=overdue"):
        response = client.get(path)
        assert response.status_code == 403
        assert response.json["errors"][0]["field"] == "public_case_lists"
        assert "public_case_lists: false" in response.json["errors"][0]["reason"]
    # Its counts stay public.
    assert client.get(f"/v1/metrics/{PRIVATE}/breakdown?by=neighborhood").status_code == 200
    assert client.get("/v1/scoreboard").json["metrics"][PRIVATE]["open"] is not None


@pytest.mark.parametrize(("query", "status", "field", "reason"), [
    ("/v1/metrics/potholes/cases?status=late", 404, "metric", "'potholes' is not a metric of the catalog"),
    ("/v1/metrics/311-call-center/cases?status=late", 404, "metric", "'311-call-center' is fed threshold, not cases"),
    (f"/v1/metrics/{LISTED}/cases", 400, "status", "required: one of late, on_time, open, overdue"),
    (f"/v1/metrics/{LISTED}/cases?status=closed", 400, "status", "'closed': must be one of late, on_time, open"),
    (f"/v1/metrics/{LISTED}/cases?status=late&window=fortnight", 400, "window",
     "'fortnight': must be one of day, week, month, quarter"),
    (f"/v1/metrics/{LISTED}/cases?status=late&as_of=30-06-2026", 400, "as_of", "'30-06-2026' is not YYYY-MM-DD"),
    (f"/v1/metrics/{LISTED}/cases?status=late&as_of=2030-01-01", 400, "as_of", "must be from"),
    (f"/v1/metrics/{LISTED}/cases?status=late&limit=0", 400, "limit", "'0': must be a whole number from 1 to 1000"),
    (f"/v1/metrics/{LISTED}/cases?status=late&limit=1001", 400, "limit", "from 1 to 1000"),
    (f"/v1/metrics/{LISTED}/cases?status=late&limit=ten", 400, "limit", "'ten': must be a whole number"),
    (f"/v1/metrics/{LISTED}/cases?status=late&offset=-1", 400, "offset", "'-1': must be a whole number from 0 to"),
    (f"/v1/metrics/{LISTED}/cases.csv?status=late&offset=1.5", 400, "offset",
     "must be a whole number from 0 to 2147483647"),
    # Past any list, and past what a database's OFFSET takes: refused, not a 500.
    (f"/v1/metrics/{LISTED}/cases?status=late&offset=99999999999999999999", 400, "offset",
     "'99999999999999999999': must be a whole number from 0 to 2147483647"),
    ("/v1/metrics/potholes/breakdown?by=neighborhood", 404, "metric", "is not a metric of the catalog"),
    ("/v1/metrics/311-call-center/breakdown?by=neighborhood", 404, "metric", "fed threshold, not cases"),
    (f"/v1/metrics/{LISTED}/breakdown", 400, "by", "required: one of pothole-on-time's breakdowns in the catalog "
                                                   "(neighborhood)"),
    (f"/v1/metrics/{LISTED}/breakdown?by=ward", 400, "by", "'ward' is not one of pothole-on-time's breakdowns"),
    (f"/v1/metrics/{LISTED}/breakdown.csv?by=neighborhood&window=year", 400, "window", "'year': must be one of"),
    (f"/v1/metrics/{LISTED}/breakdown?by=neighborhood&as_of=yesterday", 400, "as_of", "is not YYYY-MM-DD"),
])
def test_each_refusal_names_its_field_and_reason(client, query, status, field, reason):
    response = client.get(query)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    (problem,) = response.json["errors"]
    assert problem["field"] == field and reason in problem["reason"], problem
