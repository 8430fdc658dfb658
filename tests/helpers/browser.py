"""Headless Chromium for the scoreboard tests: Debian's `chromium` and `chromium-driver`, driven by Selenium.

Shared by test_scoreboard_page.py (the scorer's app over a fixed board) and test_demo.py
(the running demo). Without the browser the tests FAIL with how to install it; paths can
be overridden with CITYSCORE_CHROMIUM / CITYSCORE_CHROMEDRIVER.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from shared.core.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
# Set to 1 to refresh the screenshots the README shows; otherwise they stay in pytest's tmp dir.
UPDATE_SCREENSHOTS = os.environ.get("CITYSCORE_UPDATE_SCREENSHOT") == "1"
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


@contextmanager
def chromium():
    """A headless Chromium with its own throwaway profile, quit on exit."""
    binary = executable("CITYSCORE_CHROMIUM", "chromium")
    chromedriver = executable("CITYSCORE_CHROMEDRIVER", "chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install selenium", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
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


def open_page(driver, url: str, width: int, mobile: bool = False, height: int = 900) -> None:
    """Load `url` in a viewport `width` CSS pixels wide (a phone's when `mobile`)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
    driver.get(url)
    driver.get_log("browser")  # start each page with an empty console


def screenshot(driver, path: Path) -> Path:
    """The whole page, not just the viewport, as a PNG at `path`."""
    size = driver.execute_script("return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def publish(shot: Path, name: str) -> None:
    """Copy a screenshot to docs/screenshots/NAME.png when CITYSCORE_UPDATE_SCREENSHOT=1."""
    if UPDATE_SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOTS / f"{name}.png")


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

# The board's rows as the page shows them: [metric id, name]. The name is the row heading's link: the
# heading also says a stale feed and a case-fed metric's backlog under it.
READ_ROWS = ("return [...document.querySelectorAll('#board tbody tr')]"
             ".map(r => [r.dataset.metric, r.querySelector('th a').innerText])")

STANDINGS = {"below": ("▼", "below target"), "at": ("=", "on target"), "above": ("▲", "above target")}


def standing_of(score: float) -> str:
    shown = float(f"{score:.2f}")
    return "below" if shown < 1 else "above" if shown > 1 else "at"


def check_cells(cells: list[dict], board: dict, catalog: Catalog) -> dict[str, set]:
    """Every cell and tile read from the page agrees with the API; returns the looks of each standing."""
    assert len(cells) == len(catalog.metrics) * 4 + 4
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
