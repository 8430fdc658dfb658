"""The public scoreboard in a real browser: Debian's Chromium, headless, driven by Selenium.

The scorer's app serves 120 generated days of Boston's 23 metrics on a real port; the
browser loads the board and a metric page, and every row, figure and colour it shows
is checked against GET /v1/scoreboard. Screenshots go to docs/screenshots/.

Needs the Debian packages `chromium` and `chromium-driver` (paths can be overridden
with CITYSCORE_CHROMIUM / CITYSCORE_CHROMEDRIVER). Without them the tests FAIL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import update

from services.scorer.app import create_app
from shared.catalog import load_catalog
from shared.contract import parse_event
from shared.db import CurrentScore, make_engine, migrate
from shared.generator import generate
from shared.score_store import ScoreStore

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CATALOG = load_catalog()
END = date(2026, 6, 30)
NOW = datetime(2026, 7, 1, 13, 30, tzinfo=timezone.utc)  # 9:30 AM in Boston: the board is as of yesterday
PUBLISHED = datetime(2026, 7, 1, 4, 0, 12, tzinfo=timezone.utc)  # the midnight rescore, 12:00 AM EDT
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--force-color-profile=srgb", "--lang=en-US")


def executable(variable: str, name: str) -> str:
    """The path of a browser program, or a failed test that says how to install it."""
    path = os.environ.get(variable) or shutil.which(name) or f"/usr/bin/{name}"
    if not os.access(path, os.X_OK):
        pytest.fail(f"{name} not found at {path} (set {variable} to another path). The scoreboard tests need "
                    f"Debian's Chromium: apt-get install -y chromium chromium-driver", pytrace=False)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The scorer's app on a real port over a SQLite database holding a published board."""
    from werkzeug.serving import make_server

    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('board')}/scores.db")
    migrate(engine)
    store = ScoreStore(engine, CATALOG)
    events = [parse_event(e) for e in generate(CATALOG, 120, 7, END)]
    for start in range(0, len(events), 5000):
        with engine.begin() as conn:
            store.fold(conn, events[start:start + 5000])
    with engine.begin() as conn:
        store.rescore(conn, END)
        conn.execute(update(CurrentScore.__table__).values(updated_at=PUBLISHED))
    app = create_app(engine=engine, catalog=CATALOG, clock=lambda: NOW)
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, name="board-http", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}"
    http.shutdown()
    thread.join(10)
    engine.dispose()


@pytest.fixture(scope="module")
def browser():
    chromium = executable("CITYSCORE_CHROMIUM", "chromium")
    chromedriver = executable("CITYSCORE_CHROMEDRIVER", "chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install selenium", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="cityscore-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def api(server: str, path: str) -> dict:
    with urllib.request.urlopen(server + path, timeout=10) as response:
        return json.loads(response.read())


def open_page(driver, url: str, width: int, mobile: bool = False) -> None:
    """Load `url` in a viewport `width` CSS pixels wide (a phone's when `mobile`)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile})
    driver.get(url)
    driver.get_log("browser")  # start each page with an empty console


def screenshot(driver, name: str) -> Path:
    """The whole page, not just the viewport, as docs/screenshots/NAME.png."""
    import base64

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    size = driver.execute_script("return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}})
    path = SCREENSHOTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def console_problems(driver) -> list[str]:
    """Console errors: a CSP violation, a missing stylesheet, a failed request."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]


def rgb(css: str) -> tuple[int, int, int]:
    parts = [float(p) for p in re.findall(r"[\d.]+", css)[:4]]
    assert len(parts) == 3 or parts[3] == 1, f"a transparent colour: {css}"
    return tuple(round(p) for p in parts[:3])


def luminance(colour: tuple[int, int, int]) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# What the board's cells show, read from the rendered page (computed colours included).
READ_CELLS = """
const cells = [...document.querySelectorAll('#board td.score, .tiles .tile')];
let background = (node) => {
  for (; node; node = node.parentElement) {
    const colour = getComputedStyle(node).backgroundColor;
    if (colour !== 'rgba(0, 0, 0, 0)' && colour !== 'transparent') return colour;
  }
  return 'rgb(255, 255, 255)';
};
let seen = (node) => {  // the text a sighted reader sees: without the visually hidden words
  const copy = node.cloneNode(true);
  copy.querySelectorAll('.visually-hidden').forEach((hidden) => hidden.remove());
  return copy.textContent.replace(/\\s+/g, ' ').trim();
};
return cells.map((cell) => {
  const value = cell.querySelector('.value, .tile-score');
  return {
    metric: cell.dataset.metric, window: cell.dataset.window, score: cell.dataset.score,
    classes: [...cell.classList], shown: seen(cell), spoken: cell.textContent.replace(/\\s+/g, ' ').trim(),
    background: background(cell), colour: getComputedStyle(value || cell).color,
    mark: cell.querySelector('.mark') ? cell.querySelector('.mark').textContent : '',
  };
});
"""

STANDINGS = {"below": ("▼", "below target"), "at": ("=", "on target"), "above": ("▲", "above target")}


def standing_of(score: float) -> str:
    shown = float(f"{score:.2f}")
    return "below" if shown < 1 else "above" if shown > 1 else "at"


def check_cells(cells: list[dict], board: dict) -> dict[str, set]:
    """Every cell and tile read from the page agrees with the API; returns the looks of each standing."""
    assert len(cells) == len(CATALOG.metrics) * 4 + 4
    colours: dict[str, set] = {"below": set(), "at": set(), "above": set(), "none": set()}
    for cell in cells:
        tile = cell["metric"] == "cityscore"
        window = cell["window"]
        score = board["cityscore"][window] if tile else board["metrics"][cell["metric"]][window]["score"]
        where = (cell["metric"], cell["window"], score, cell)
        if score is None:
            assert "none" in cell["classes"] and cell["score"] == "", where
            assert tile or cell["shown"] == "", where
            if not tile:
                colours["none"].add((rgb(cell["background"]), None))
            continue
        standing = standing_of(score)
        assert standing in cell["classes"], where
        assert float(cell["score"]) == score, where
        mark, words = STANDINGS[standing]
        assert cell["mark"] == mark and f"{score:.2f}" in cell["shown"], where
        assert words in cell["spoken"], where  # what a screen reader says, besides the colour
        background, text = rgb(cell["background"]), rgb(cell["colour"])
        assert contrast(background, text) >= 4.5, where
        if not tile:
            colours[standing].add((background, text))
    return colours


def test_board_rows_values_and_colours_match_the_api(browser, server):
    board = api(server, "/v1/scoreboard")
    assert board["as_of"] == END.isoformat()
    open_page(browser, server + "/", 1280)
    assert browser.title == "Boston CityScore"

    names = browser.execute_script("return [...document.querySelectorAll('#board tbody tr')]"
                                   ".map(r => [r.dataset.metric, r.querySelector('th').innerText])")
    assert [metric for metric, _ in names] == [m.id for m in CATALOG.metrics]
    assert [name for _, name in names] == [board["metrics"][m.id]["name"] for m in CATALOG.metrics]
    headers = browser.execute_script("return [...document.querySelectorAll('#board thead th')].map(th => th.scope)")
    assert headers == ["col"] * 5

    cells = browser.execute_script(READ_CELLS)
    colours = check_cells(cells, board)

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
    screenshot(browser, "scoreboard")


def test_board_fits_a_phone(browser, server):
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
    screenshot(browser, "scoreboard-phone")


def test_board_of_a_past_day_matches_the_api(browser, server):
    board = api(server, "/v1/scoreboard?as_of=2026-05-15")
    open_page(browser, server + "/?as_of=2026-05-15", 1280)
    check_cells(browser.execute_script(READ_CELLS), board)
    assert browser.find_element("css selector", ".as-of").text == "As of Friday 15 May 2026"
    assert browser.execute_script("return document.querySelector('meta[http-equiv=refresh]')") is None


def test_metric_page_from_the_board(browser, server):
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
    screenshot(browser, "metric")


def test_unknown_metric_is_a_page_not_found(browser, server):
    open_page(browser, server + "/metric/no-such-metric", 1280)
    assert "no-such-metric" in browser.find_element("css selector", "main").text
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server + "/metric/no-such-metric", timeout=10)
    assert refused.value.code == 404
