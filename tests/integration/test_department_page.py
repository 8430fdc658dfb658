"""The department and cabinet scorecards in a real browser: Debian's Chromium, headless, driven by Selenium.

The scorer's app serves 120 generated days of Boston's metrics (with a near-target band of 0.9)
on a real port, with alerts, follow-up actions and notes in the database; every cell, alert and
action the browser shows is checked against GET /v1/departments/ID and /v1/cabinets/ID, which are
checked against /v1/scoreboard. With CITYSCORE_UPDATE_SCREENSHOT=1 the department page's
screenshot is copied to docs/screenshots/department.png.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from sqlalchemy import insert, update

from services.scorer.app import create_app
from services.scorer.settings import ScorerSettings
from shared.core.catalog import load_catalog, parse_catalog
from shared.core.record import Action, Note
from shared.core.scoring import standing
from shared.store.published_scores import PublishedScores
from shared.store.record import Record
from shared.store.score_reader import ScoreReader
from shared.store.tables.notifier import Alert
from shared.store.tables.scorer import CurrentScore
from tests.fakes.clock import ManualClock
from tests.helpers.browser import api, console_problems, contrast, open_page, publish, rgb, screenshot
from tests.helpers.score_parts import engine_on_copy
from tests.helpers.serving import served

BOSTON = load_catalog()
CATALOG = parse_catalog({**BOSTON.model_dump(by_alias=True, exclude_none=True), "near_target": 0.9}, "near band")
END = date(2026, 6, 30)
NOW = datetime(2026, 7, 1, 13, 30, tzinfo=timezone.utc)
FIRED = datetime(2026, 6, 29, 13, 5, tzinfo=timezone.utc)
MARKS = {"below": ("▼", "below target"), "near": ("▽", "near target"), "at": ("=", "on target"),
         "above": ("▲", "above target")}

# The scorecard's cells as the page shows them, with their computed colours.
READ_SCORECARD = """
const background = (node) => {
  for (; node; node = node.parentElement) {
    const colour = getComputedStyle(node).backgroundColor;
    if (colour !== 'rgba(0, 0, 0, 0)' && colour !== 'transparent') return colour;
  }
  return 'rgb(255, 255, 255)';
};
return [...document.querySelectorAll('section.department')].map((section) => ({
  department: section.dataset.department,
  cells: [...section.querySelectorAll('table.scorecard-table td.score')].map((cell) => ({
    metric: cell.dataset.metric, window: cell.dataset.window, score: cell.dataset.score, classes: [...cell.classList],
    mark: cell.querySelector('.mark') ? cell.querySelector('.mark').textContent : '',
    value: cell.querySelector('.value') ? cell.querySelector('.value').textContent : '',
    spoken: cell.textContent.replace(/\\s+/g, ' ').trim(),
    background: background(cell), colour: getComputedStyle(cell).color})),
  dates: [...section.querySelectorAll('table.scorecard-table thead th[data-window]')].map(
    (th) => [th.dataset.window, th.dataset.start, th.dataset.end]),
  alerts: [...section.querySelectorAll('table.alerts tbody tr')].map(
    (row) => [Number(row.dataset.alert), row.dataset.metric, row.dataset.kind, row.dataset.owner, row.innerText]),
  actions: [...section.querySelectorAll('ul.actions li')].map((li) => [Number(li.dataset.action), li.dataset.due]),
  notes: [...section.querySelectorAll('ul.notes li')].map((li) => [li.dataset.metric, li.dataset.day]),
}));
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, folded_history):
    engine = engine_on_copy(folded_history, tmp_path_factory.mktemp('departments'))  # 120 days folded
    with engine.begin() as conn:
        PublishedScores(ScoreReader(engine, CATALOG)).rescore(conn, END)
        conn.execute(update(CurrentScore.__table__).values(updated_at=FIRED))
        conn.execute(insert(Alert.__table__).values(
            metric="pothole-on-time", window="week", seq=1, status="acknowledged", channel="C0PWD", score=0.86,
            fired_at=FIRED, acknowledged_by="U0PWDLEAD", owner="U0PWDOWNER"))
        conn.execute(insert(Alert.__table__).values(
            metric="streetlight-on-time", window="at-risk:week", seq=2, status="firing", channel="C0PWD",
            score=1.01, fired_at=FIRED))
        conn.execute(insert(Alert.__table__).values(
            metric="missed-trash-on-time", window="week", seq=3, status="resolved", channel="C0PWD", score=0.7,
            fired_at=FIRED, resolved_at=NOW))
        record = Record(conn)
        record.add_action(Action(None, "pothole-on-time", "public-works", "U0PWDOWNER",
                                 "A second crew on nights until the backlog is under 20", date(2026, 7, 6),
                                 "U0PWDLEAD", FIRED))
        record.add_action(Action(None, "streetlight-on-time", "public-works", "U0PWDLEAD",
                                 "Ask the contractor for the parts' delivery dates", date(2026, 6, 26),
                                 "U0PWDLEAD", FIRED))
        record.add_note(Note(None, "pothole-on-time", date(2026, 6, 22), "Heavy rain: crews on flooding calls",
                             "U0PWDLEAD", FIRED, public=True))
    # As the city's staff see it (SCORER_SHOW_OWNERS): who owns each alert and action.
    app = create_app(ScorerSettings(**{"SCORER_SHOW_OWNERS": True}), engine=engine, catalog=CATALOG,
                     clock=ManualClock(NOW))
    with served(app, "department-http") as url:
        yield url
    engine.dispose()


def check_section(section: dict, card: dict, board: dict) -> set[str]:
    """One department's section of a page agrees with its JSON, and the JSON with the board's; returns
    the standings it shows."""
    assert card["metrics"] == {metric_id: board["metrics"][metric_id] for metric_id in card["metrics"]}
    assert section["dates"] == [[w, card["windows"][w]["start"], card["windows"][w]["end"]] for w in CATALOG.windows]
    assert [(c["metric"], c["window"]) for c in section["cells"]] == [
        (metric_id, window) for metric_id in card["metrics"] for window in CATALOG.windows]
    seen = set()
    for cell in section["cells"]:
        score = card["metrics"][cell["metric"]][cell["window"]]["score"]
        where = (cell, score)
        if score is None:
            assert "none" in cell["classes"] and cell["score"] == "", where
            continue
        place = standing(score, CATALOG.near_target)
        seen.add(place)
        mark, words = MARKS[place]
        assert place in cell["classes"] and float(cell["score"]) == score, where
        assert cell["mark"] == mark and cell["value"] == f"{score:.2f}" and words in cell["spoken"], where
        assert contrast(rgb(cell["background"]), rgb(cell["colour"])) >= 4.5, where
    assert [[a["id"], a["metric"], a["kind"], a["owner"] or ""] for a in card["alerts"]] == [
        row[:4] for row in section["alerts"]]
    assert [[a["id"], a["due"]] for a in card["actions"]] == section["actions"]
    assert [[n["metric"], n["day"]] for n in card["notes"]] == section["notes"]
    return seen


def test_the_department_scorecard_matches_the_api(browser, server, shots):
    board = api(server, "/v1/scoreboard")
    card = api(server, "/v1/departments/public-works")
    open_page(browser, server + "/", 1280)
    browser.find_element("css selector", "nav.departments a[data-department=public-works]").click()
    assert browser.current_url == server + "/departments/public-works"
    assert browser.title == "Public Works Department · Boston CityScore"
    section, = browser.execute_script(READ_SCORECARD)
    seen = check_section(section, card, board)
    # Generated data gives Public Works scores on each side of the band.
    assert {"below", "near"} <= seen, seen
    alerts = {row[0]: row[4] for row in section["alerts"]}
    assert set(alerts) == {1, 2}  # the resolved one is not open
    assert "U0PWDOWNER" in alerts[1] and "acknowledged by U0PWDLEAD" in alerts[1]
    assert "no owner yet" in alerts[2] and "at risk (week)" in alerts[2]
    assert [a["text"] for a in card["actions"]] == ["Ask the contractor for the parts' delivery dates",
                                                    "A second crew on nights until the backlog is under 20"]
    assert browser.find_element("css selector", "ul.actions li .overdue").text == "overdue"
    assert console_problems(browser) == []
    publish(screenshot(browser, shots / "department.png"), "department")


def test_the_cabinet_scorecard_matches_the_api(browser, server):
    board = api(server, "/v1/scoreboard")
    cabinet = api(server, "/v1/cabinets/streets")
    open_page(browser, server + "/", 1280)
    browser.find_element("link text", "Streets (example)").click()
    assert browser.current_url == server + "/cabinets/streets"
    sections = browser.execute_script(READ_SCORECARD)
    assert [s["department"] for s in sections] == [d["department"]["id"] for d in cabinet["departments"]] == [
        "public-works", "transportation"]
    for section, card in zip(sections, cabinet["departments"]):
        check_section(section, {**card, "windows": cabinet["windows"]}, board)
    assert console_problems(browser) == []


def test_the_department_scorecard_fits_a_phone(browser, server, shots):
    open_page(browser, server + "/departments/public-works", 390, mobile=True)
    width, scroll = browser.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]")
    assert scroll <= width, "the scorecard scrolls sideways on a phone"
    assert console_problems(browser) == []
