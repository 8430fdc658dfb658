"""The public scoreboard in a real browser: Debian's Chromium, headless, driven by Selenium.

The scorer's app serves 120 generated days of Boston's 23 metrics on a real port; the
browser loads the board and a metric page, and every row, figure and colour it shows
is checked against GET /v1/scoreboard. Screenshots go to pytest's tmp dir; with
CITYSCORE_UPDATE_SCREENSHOT=1 the phone and metric ones are copied to docs/screenshots/
(the README's full board comes from the running demo: test_demo.py).

Needs the Debian packages `chromium` and `chromium-driver` (see tests/helpers/browser.py).
Without them the tests FAIL.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import update

from services.scorer.app import create_app
from shared.core.catalog import load_catalog
from shared.store.tables.scorer import CurrentScore
from shared.store.published_scores import PublishedScores
from shared.store.score_reader import ScoreReader
from tests.fakes.clock import ManualClock
from tests.helpers.browser import (
    READ_CELLS,
    READ_ROWS,
    api,
    check_cells,
    console_problems,
    open_page,
    publish,
    screenshot,
)
from tests.helpers.score_parts import engine_on_copy
from tests.helpers.serving import served

CATALOG = load_catalog()
END = date(2026, 6, 30)
NOW = datetime(2026, 7, 1, 13, 30, tzinfo=timezone.utc)  # 9:30 AM in Boston: the board is as of yesterday
PUBLISHED = datetime(2026, 7, 1, 4, 0, 12, tzinfo=timezone.utc)  # the midnight rescore, 12:00 AM EDT


@pytest.fixture(scope="module")
def server(tmp_path_factory, folded_history):
    """The scorer's app on a real port over a SQLite database holding a published board."""
    engine = engine_on_copy(folded_history, tmp_path_factory.mktemp('board'))  # 120 days folded
    with engine.begin() as conn:
        PublishedScores(ScoreReader(engine, CATALOG)).rescore(conn, END)
        conn.execute(update(CurrentScore.__table__).values(updated_at=PUBLISHED))
    app = create_app(engine=engine, catalog=CATALOG, clock=ManualClock(NOW))
    with served(app, "board-http") as url:
        yield url
    engine.dispose()


def test_board_rows_values_and_colours_match_the_api(browser, server, shots):
    board = api(server, "/v1/scoreboard")
    assert board["as_of"] == END.isoformat()
    open_page(browser, server + "/", 1280)
    assert browser.title == "Boston CityScore"

    names = browser.execute_script(READ_ROWS)
    assert [metric for metric, _ in names] == [m.id for m in CATALOG.metrics]
    assert [name for _, name in names] == [board["metrics"][m.id]["name"] for m in CATALOG.metrics]
    headers = browser.execute_script("return [...document.querySelectorAll('#board thead th')].map(th => th.scope)")
    assert headers == ["col"] * 5

    cells = browser.execute_script(READ_CELLS)
    colours = check_cells(cells, board, CATALOG)

    # Realistic data shows every standing; each has one look, and they differ.
    for standing, seen in colours.items():
        assert len(seen) == 1, (standing, seen)
    (below, _), = colours["below"]
    (above, _), = colours["above"]
    (even, _), = colours["at"]
    (blank, _), = colours["none"]
    assert below[0] > 150 and below[0] > below[1] + 80 and below[0] > below[2] + 80, below  # red
    assert above[2] > 150 and above[2] > above[0] + 80, above  # blue
    assert max(even) - min(even) < 30 and min(even) > 180, even  # a light neutral grey
    assert min(blank) > 240, blank  # white: nothing to see
    assert len({below, above, even, blank}) == 4

    text = browser.find_element("css selector", ".updated").text
    assert "Last updated 1 July 2026, 12:00 AM EDT" in text
    assert browser.find_element("css selector", ".as-of").text == "As of Tuesday 30 June 2026"
    refresh = browser.execute_script("return document.querySelector('meta[http-equiv=refresh]').content")
    assert 0 < int(refresh) <= 300
    assert console_problems(browser) == []
    screenshot(browser, shots / "scoreboard.png")  # not published: the README's board is the demo's


def test_board_fits_a_phone(browser, server, shots):
    open_page(browser, server + "/", 390, mobile=True)
    width, scroll = browser.execute_script(
        "return [window.innerWidth, document.documentElement.scrollWidth]")
    assert scroll <= width, "the board scrolls sideways on a phone"
    table = browser.execute_script("return document.querySelector('#board').getBoundingClientRect().right")
    assert table <= width
    figure = browser.execute_script(
        "return parseFloat(getComputedStyle(document.querySelector('#board td.score')).fontSize)")
    assert figure >= 12
    assert console_problems(browser) == []
    publish(screenshot(browser, shots / "scoreboard-phone.png"), "scoreboard-phone")


def test_board_of_a_past_day_matches_the_api(browser, server):
    board = api(server, "/v1/scoreboard?as_of=2026-05-15")
    open_page(browser, server + "/?as_of=2026-05-15", 1280)
    check_cells(browser.execute_script(READ_CELLS), board, CATALOG)
    assert browser.find_element("css selector", ".as-of").text == "As of Friday 15 May 2026"
    assert browser.execute_script("return document.querySelector('meta[http-equiv=refresh]')") is None


def test_metric_page_from_the_board(browser, server, shots):
    open_page(browser, server + "/", 1280)
    browser.find_element("link text", "EMS RESPONSE TIME").click()
    assert browser.current_url == server + "/metric/ems-response-time"
    assert browser.find_element("css selector", "h1").text == "EMS RESPONSE TIME"
    assert "median" in browser.find_element("css selector", ".definition").text

    board = api(server, "/v1/scoreboard")["metrics"]["ems-response-time"]
    rows = browser.execute_script("""
        return [...document.querySelectorAll('table.audit tbody tr')].map(r => {
          const [score, numerator, denominator] = r.querySelectorAll('td');
          return [r.dataset.window, score.dataset.score, numerator.dataset.numerator, denominator.dataset.denominator,
                  score.innerText.trim()];
        })""")
    assert [row[0] for row in rows] == list(CATALOG.windows)
    for window, score, numerator, denominator, shown in rows:
        expected = board[window]
        assert float(score) == expected["score"]
        assert float(numerator) == expected["numerator"] and float(denominator) == expected["denominator"]
        assert f"{expected['score']:.2f}" in shown

    chart = browser.find_element("css selector", "figure.chart svg")
    assert chart.get_attribute("role") == "img"
    box = chart.rect
    assert box["width"] > 600 and box["height"] > 150, box  # drawn, and at a readable size
    paths = browser.execute_script("return document.querySelectorAll('figure.chart path.line').length")
    assert paths >= 1
    history = api(server, "/v1/metrics/ems-response-time/history?window=week&days=90")["history"]
    latest = history[-1]["score"]
    assert f"Latest {latest:.2f}" in browser.find_element("css selector", "figure.chart figcaption").text
    assert console_problems(browser) == []
    publish(screenshot(browser, shots / "metric.png"), "metric")


def test_unknown_metric_is_a_page_not_found(browser, server):
    open_page(browser, server + "/metric/no-such-metric", 1280)
    assert "no-such-metric" in browser.find_element("css selector", "main").text
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server + "/metric/no-such-metric", timeout=10)
    assert refused.value.code == 404
