"""The cases behind a score on the public pages, in a real browser over PostgreSQL.

Generated Boston events (each case given a neighbourhood, as the 311 importer carries the
export's) are folded by the scorer into PostgreSQL; its app serves the pages on a real port and
headless Chromium reads them. Every figure the pages show (the overdue backlog, due soon, the
projected week score, the oldest overdue and latest late cases, the on-time share by
neighbourhood) must equal what the pure core (shared/core/cases.py) answers over the offline
Ledger's cases for the same events. A metric whose case lists are not public shows its counts and
no case. With CITYSCORE_UPDATE_SCREENSHOT=1 the metric page's screenshot is copied to
docs/screenshots/metric-cases.png (the README shows it).

Needs Debian's `chromium` and `chromium-driver` (tests/helpers/browser.py) and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import html
import urllib.error
import urllib.request
from datetime import date, datetime, timezone

import pytest

from services.scorer.app import create_app
from services.scorer.pages import CASES_SHOWN
from shared.core.cases import LATE, NOT_GIVEN, OVERDUE, backlogs, breakdown, case_fields, case_line_dict, cases_behind
from shared.core.catalog import load_catalog, parse_catalog
from shared.core.contract import parse_event
from shared.core.folding import Ledger
from shared.dev.generator import generate
from shared.store.published_scores import PublishedScores
from shared.store.score_reader import ScoreReader
from tests.fakes.clock import ManualClock
from tests.helpers.browser import api, console_problems, open_page, publish, screenshot
from tests.helpers.ingest import fresh_database
from tests.helpers.score_parts import fold_in_batches
from tests.helpers.serving import served

END = date(2026, 6, 30)
NOW = datetime(2026, 7, 1, 13, 30, tzinfo=timezone.utc)  # 9:30 AM in Boston: the pages are as of yesterday
SHOWN = "pothole-on-time"  # lists public, with the neighbourhood as a public attribute
PRIVATE = "streetlight-on-time"  # public_case_lists: false
# Boston's neighbourhoods as its 311 export names them; one case in 25 gives none.
NEIGHBOURHOODS = ("Allston / Brighton", "Back Bay", "Charlestown", "Dorchester", "Downtown / Financial District",
                  "East Boston", "Fenway / Kenmore / Audubon Circle / Longwood", "Greater Mattapan", "Hyde Park",
                  "Jamaica Plain", "Mission Hill", "Roslindale", "Roxbury", "South Boston / South Boston Waterfront",
                  "South End", "West Roxbury")


def catalog():
    """Boston's catalog with the pothole metric's neighbourhood public and the streetlight lists private."""
    data = load_catalog().model_dump(by_alias=True, exclude_none=True)
    for metric in data["metrics"]:
        if metric["id"] == SHOWN:
            metric["public_attributes"] = ["neighborhood"]
        if metric["id"] == PRIVATE:
            metric["public_case_lists"] = False
    return parse_catalog(data, "test catalog")


CATALOG = catalog()


def neighbourhood(case_id: str) -> str | None:
    """A neighbourhood for a case, the same for each of its events; a few carry more late cases, as a
    city's do, so the breakdown has a worst group to find."""
    digest = hashlib.sha256(case_id.encode()).digest()
    if digest[0] % 25 == 0:
        return None
    return NEIGHBOURHOODS[digest[1] % len(NEIGHBOURHOODS)]


def events() -> list[dict]:
    made = []
    for event in generate(CATALOG, 45, 16, END):
        if event["type"] == "case":
            place = neighbourhood(event["case_id"])
            if place is not None:
                event = {**event, "attributes": {**event.get("attributes", {}), "neighborhood": place}}
        made.append(event)
    # A stuck backlog, as a department has: a few pothole cases opened weeks ago and never closed,
    # so the oldest overdue cases are more than the page lists.
    for day in range(1, 9):
        case_id = f"101-stuck-{day}"
        made.append({"event_id": f"stuck-{day}", "type": "case", "metric": SHOWN, "case_id": case_id,
                     "opened_at": f"2026-06-{day:02d}T10:15:00-04:00", "closed_at": None,
                     "attributes": {"neighborhood": NEIGHBOURHOODS[day % 3]}})
    return made


@pytest.fixture(scope="module")
def folded(database_url):
    """The events folded into PostgreSQL by the scorer, the board published, and the offline Ledger of
    the same events (the pure core's answers)."""
    engine = fresh_database(database_url)
    made = events()
    fold_in_batches(engine, CATALOG, made)
    with engine.begin() as conn:
        PublishedScores(ScoreReader(engine, CATALOG)).rescore(conn, END)
    ledger = Ledger(CATALOG)
    for event in made:
        ledger.fold(parse_event(event))
    yield engine, ledger
    engine.dispose()


@pytest.fixture(scope="module")
def server(folded):
    engine, _ = folded
    app = create_app(engine=engine, catalog=CATALOG, clock=ManualClock(NOW))
    with served(app, "cases-http") as url:
        yield url


def expected_fields(folded) -> dict:
    """The core's "open" and "projected" for every case-fed metric, over the Ledger's cases."""
    engine, ledger = folded
    board = ScoreReader(engine, CATALOG).scoreboard(END)
    return case_fields(board, CATALOG, ledger.cases.values(), ("week",))


READ_BACKLOG = """
const node = document.querySelector(arguments[0]);
return node && {overdue: node.dataset.overdue, dueSoon: node.dataset.dueSoon,
                projected: node.dataset.projectedWeek, text: node.textContent.replace(/\\s+/g, ' ').trim()};
"""

READ_CASES = """
const table = document.querySelector(arguments[0]);
if (!table) return null;
return {
  total: table.dataset.total,
  caption: table.querySelector('caption').textContent.replace(/\\s+/g, ' ').trim(),
  headers: [...table.querySelectorAll('thead th')].map(th => [th.scope, th.textContent.trim()]),
  rows: [...table.querySelectorAll('tbody tr')].map(tr => ({
    id: tr.dataset.case, hoursLate: parseFloat(tr.dataset.hoursLate), heading: tr.querySelector('th').scope,
    times: [...tr.querySelectorAll('time')].map(t => t.getAttribute('datetime')),
    shown: [...tr.querySelectorAll('td')].map(td => td.textContent.trim()),
    attributes: Object.fromEntries([...tr.querySelectorAll('td[data-attribute]')]
                                     .map(td => [td.dataset.attribute, td.textContent.trim()])),
  })),
};
"""

READ_BREAKDOWN = """
const table = document.querySelector(`table.breakdown[data-by="${arguments[0]}"]`);
if (!table) return null;
const foot = table.querySelector('tfoot tr');
return {
  caption: table.querySelector('caption').textContent.replace(/\\s+/g, ' ').trim(),
  rows: [...table.querySelectorAll('tbody tr')].map(tr => [tr.dataset.group, parseInt(tr.dataset.onTime),
         parseInt(tr.dataset.closed), parseFloat(tr.dataset.share), tr.querySelector('td:last-child').textContent.trim()]),
  total: [parseInt(foot.dataset.onTime), parseInt(foot.dataset.closed)],
};
"""


def check_backlog(shown: dict, fields: dict) -> None:
    assert int(shown["overdue"]) == fields["open"]["overdue"]
    assert int(shown["dueSoon"]) == fields["open"]["due_soon"]
    assert f"{fields['open']['overdue']} overdue" in shown["text"]
    projected = fields["projected"]["week"]["score"]
    if fields["open"]["overdue"]:
        assert float(shown["projected"]) == projected
        assert f"projected week {projected:.2f} if closed now" in shown["text"]


def check_lines(table: dict, expected: list, total: int) -> None:
    """A case table read from the page lists these case lines (case_line_dict), in this order."""
    assert int(table["total"]) == total
    rows = [case_line_dict(line, CATALOG) for line in expected]
    assert [row["id"] for row in table["rows"]] == [row["case_id"] for row in rows]
    for seen, row in zip(table["rows"], rows):
        assert seen["hoursLate"] == row["hours_late"]
        times = [row["opened_at"], row["due_at"]] + ([row["closed_at"]] if row["closed_at"] else [])
        assert seen["times"] == times
        assert seen["attributes"] == row["attributes"]
        assert seen["heading"] == "row"


def test_metric_page_shows_the_cases_behind_the_score_as_the_core_lists_them(browser, server, folded, shots):
    _, ledger = folded
    cases = ledger.cases.values()
    open_page(browser, f"{server}/metric/{SHOWN}", 1280, height=1200)
    assert browser.find_element("css selector", "h1").text == CATALOG.by_id[SHOWN].name

    fields = expected_fields(folded)[SHOWN]
    assert fields["open"]["overdue"] > CASES_SHOWN and fields["open"]["due_soon"] > 0  # the data has a backlog
    check_backlog(browser.execute_script(READ_BACKLOG, ".backlog-note .backlog"), fields)

    overdue = cases_behind(cases, CATALOG, SHOWN, END, OVERDUE)
    table = browser.execute_script(READ_CASES, "#overdue-cases")
    check_lines(table, overdue[::-1][:CASES_SHOWN], len(overdue))  # the oldest first
    assert [h for _, h in table["headers"]] == ["Case", "Opened", "Due", "Late by", "Neighborhood"]
    assert all(scope == "col" for scope, _ in table["headers"])
    assert f"The {CASES_SHOWN} oldest of {len(overdue)} cases" in table["caption"]
    assert all(row["attributes"]["neighborhood"] in NEIGHBOURHOODS + ("",) for row in table["rows"])

    late = cases_behind(cases, CATALOG, SHOWN, END, LATE, "week")
    assert len(late) > CASES_SHOWN
    table = browser.execute_script(READ_CASES, "#late-cases")
    check_lines(table, late[:CASES_SHOWN], len(late))  # the latest first
    assert "closed late in the week 24–30 June 2026" in table["caption"]

    groups = breakdown(cases, CATALOG, SHOWN, "neighborhood", END, "week")
    shown = browser.execute_script(READ_BREAKDOWN, "neighborhood")
    assert [row[:4] for row in shown["rows"]] == [[g.name, g.on_time, g.closed, g.share] for g in groups]
    assert shown["rows"][0][3] < shown["rows"][-1][3]  # worst first
    assert NOT_GIVEN in [g.name for g in groups]
    week = ScoreReader(folded[0], CATALOG).scoreboard(END).metrics[SHOWN]["week"]
    assert shown["total"] == [week.numerator, week.denominator]  # the groups add up to the score's figures
    assert "worst first (the target is 80%)" in shown["caption"]
    for name, _, _, share, text in shown["rows"]:  # a group below the target says so, beside its colour
        assert (text.startswith("▼") and text.endswith("below target")) == (share < 0.8), (name, share, text)
        assert f"{share * 100:.1f}".removesuffix(".0") + "%" in text
    assert any(share < 0.8 for _, _, _, share, _ in shown["rows"])

    # Each table links its whole list (or the breakdown) in the read API, for the same day and window.
    links = browser.execute_script("return [...document.querySelectorAll('.cases a.full-list')].map(a => a.href)")
    assert len(links) == 3
    overdue_api, late_api, breakdown_api = (api(link, "") for link in links)
    assert overdue_api["total"] == len(overdue) and late_api["total"] == len(late)
    assert [g["group"] for g in breakdown_api["groups"]] == [g.name for g in groups]

    assert console_problems(browser) == []
    publish(screenshot(browser, shots / "metric-cases.png"), "metric-cases")


def test_metric_page_lists_the_cases_of_another_window(browser, server, folded):
    _, ledger = folded
    cases = ledger.cases.values()
    open_page(browser, f"{server}/metric/{SHOWN}?window=month", 1280)
    late = cases_behind(cases, CATALOG, SHOWN, END, LATE, "month")
    check_lines(browser.execute_script(READ_CASES, "#late-cases"), late[:CASES_SHOWN], len(late))
    groups = breakdown(cases, CATALOG, SHOWN, "neighborhood", END, "month")
    shown = browser.execute_script(READ_BREAKDOWN, "neighborhood")
    assert [row[:4] for row in shown["rows"]] == [[g.name, g.on_time, g.closed, g.share] for g in groups]
    current = browser.execute_script("return document.querySelector('.case-windows [aria-current=page]').textContent")
    assert current == "Month"
    # A backlog is a moment, not a span: the overdue cases are the same whatever the window.
    overdue = cases_behind(cases, CATALOG, SHOWN, END, OVERDUE)
    check_lines(browser.execute_script(READ_CASES, "#overdue-cases"), overdue[::-1][:CASES_SHOWN], len(overdue))

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server}/metric/{SHOWN}?window=fortnight", timeout=10)
    assert refused.value.code == 400
    assert "The window “fortnight” is not one of the Boston catalog's windows" in html.unescape(refused.value.read().decode())


def test_private_case_lists_stay_off_the_page_and_the_counts_stay(browser, server, folded):
    _, ledger = folded
    open_page(browser, f"{server}/metric/{PRIVATE}", 1280)
    fields = expected_fields(folded)[PRIVATE]
    assert fields["open"]["overdue"] > 0
    check_backlog(browser.execute_script(READ_BACKLOG, ".backlog-note .backlog"), fields)
    assert browser.execute_script(READ_CASES, "#overdue-cases") is None
    assert browser.execute_script(READ_CASES, "#late-cases") is None
    assert browser.execute_script("return document.querySelectorAll('tr[data-case]').length") == 0
    note = browser.find_element("css selector", ".private-lists").text
    assert note.startswith("Case lists are shared with the department only.")
    page = browser.find_element("css selector", "main").text
    some_case = cases_behind(ledger.cases.values(), CATALOG, PRIVATE, END, OVERDUE)[0].case.case_id
    assert some_case not in page
    groups = breakdown(ledger.cases.values(), CATALOG, PRIVATE, "neighborhood", END, "week")
    shown = browser.execute_script(READ_BREAKDOWN, "neighborhood")
    assert [row[:4] for row in shown["rows"]] == [[g.name, g.on_time, g.closed, g.share] for g in groups]


def test_board_shows_each_case_fed_metrics_backlog_beside_its_name(browser, server, folded):
    open_page(browser, server + "/", 1280)
    fields = expected_fields(folded)
    _, ledger = folded
    assert backlogs(ledger.cases.values(), CATALOG, END)[SHOWN].overdue == fields[SHOWN]["open"]["overdue"]
    board = api(server, "/v1/scoreboard")["metrics"]
    for metric in CATALOG.metrics:
        if metric.id in fields:  # the read API's board says the same
            assert {key: board[metric.id][key] for key in fields[metric.id]} == fields[metric.id], metric.id
        shown = browser.execute_script(READ_BACKLOG, f'#board tr[data-metric="{metric.id}"] th .backlog')
        if metric.id not in fields or not (fields[metric.id]["open"]["overdue"] or fields[metric.id]["open"]["due_soon"]):
            assert shown is None, metric.id
            continue
        check_backlog(shown, fields[metric.id])


def test_metric_page_with_its_cases_fits_a_phone(browser, server):
    open_page(browser, f"{server}/metric/{SHOWN}", 390, mobile=True)
    width, scroll = browser.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]")
    assert scroll <= width, "the metric page scrolls sideways on a phone"
    assert console_problems(browser) == []
