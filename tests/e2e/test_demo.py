"""`cityscore demo`, the one command, run as a user runs it, then stopped with Ctrl-C.

The demo runs as a real process in its own process group, on free ports, with its own
Apache Kafka broker (not the shared one on 9092) and a SQLite file in a temporary folder.
The tests wait for the addresses it prints and for the departments' backfill, then check
the addresses answer, the notifier's posts appear in the demo's console, and the
scoreboard page in headless Chromium shows what GET /v1/scoreboard says (its screenshot
is the README's: CITYSCORE_UPDATE_SCREENSHOT=1 copies it to docs/screenshots/). Last,
SIGINT to the demo's process group, as Ctrl-C in a terminal, must stop every process it
started: ingest (gunicorn and its workers), the scorer, the notifier and the broker.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from shared.dev import local_kafka
from shared.core.catalog import load_catalog
from tests.helpers.browser import (
    READ_CELLS,
    READ_ROWS,
    UPDATE_SCREENSHOTS,
    api,
    check_cells,
    chromium,
    console_problems,
    open_page,
    publish,
    screenshot,
)
from tests.helpers.processes import free_port
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
CATALOG = load_catalog()
# Two weeks keep the test quick; the README's screenshot shows what `make demo` shows, a quarter.
BACKFILL_DAYS = 90 if UPDATE_SCREENSHOTS else 14
START_WITHIN_S = 300  # first start of the broker included
STOP_WITHIN_S = 60
# Settings from the test's own environment that would point the demo elsewhere or change what it shows.
FOREIGN_SETTINGS = re.compile(r"DATABASE_URL|KAFKA_BOOTSTRAP_SERVERS|CITYSCORE_CATALOG|SLACK_.*|NOTIFIER_.*")


def accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def broker_port() -> int:
    """A free port whose controller port (the next one) is free too, with no broker state of an earlier run."""
    for _ in range(100):
        port = free_port()
        if port < 65535 and not accepts(port + 1) and not local_kafka.state_dir(port).exists():
            return port
    raise AssertionError("no free pair of ports for the demo's broker")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, with its command line."""
    found, todo = {}, [pid]
    while todo:
        for child in children_of(todo.pop()):
            with contextlib.suppress(OSError):
                found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            todo.append(child)
    return found


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


@dataclass
class Demo:
    process: subprocess.Popen
    console: Path
    workdir: Path
    ports: dict[str, int]
    addresses: dict[str, str] = field(default_factory=dict)
    started: dict[int, str] = field(default_factory=dict)  # the demo's processes, pid -> command line

    def output(self) -> str:
        return self.console.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match:
        """The first match of `pattern` in the console; fails at once if the demo exits before printing it."""
        def printed() -> re.Match | None:
            found = re.search(pattern, self.output(), re.MULTILINE)
            if not found and self.process.poll() is not None:
                pytest.fail(f"the demo exited ({self.process.returncode}) before printing {pattern!r}:\n{self.tail()}")
            return found

        return wait_until(printed, timeout_s, f"the demo to print {pattern!r}", interval_s=0.5, problems=self.tail)

    def records(self) -> list[dict]:
        """The JSON log records in the console (the notifier's, and the demo's own Kafka client's)."""
        found = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
        return found

    def interrupt(self) -> None:
        """Ctrl-C in a terminal: SIGINT to the foreground process group, which is the demo's alone."""
        os.killpg(self.process.pid, signal.SIGINT)


def wait_for_scores(scores_api: str, timeout_s: float) -> dict:
    """The board once the backfill is scored: every window of the CityScore has a score, and it holds still."""
    last: dict = {}

    def settled() -> dict | None:
        board = api(scores_api, "")
        if all(board["cityscore"][w] is not None for w in CATALOG.windows) and board == last.get("board"):
            return board
        last["board"] = board
        return None

    return wait_until(settled, timeout_s, f"{scores_api} to show a complete, settled board", interval_s=2,
                      retry_on=(OSError, ValueError), problems=lambda: f"last board: {last.get('board')}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    console = workdir.parent / f"{workdir.name}-console.txt"
    ports = {"ingest": free_port(), "scorer": free_port(), "notifier": free_port(), "kafka": broker_port()}
    assert len({*ports.values(), ports["kafka"] + 1}) == 5, ports
    env = {name: value for name, value in os.environ.items() if not FOREIGN_SETTINGS.fullmatch(name)}
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    command = [sys.executable, "-m", "services.cli", "demo", "--workdir", str(workdir),
               "--kafka-port", str(ports["kafka"]), "--ingest-port", str(ports["ingest"]),
               "--scorer-port", str(ports["scorer"]), "--notifier-port", str(ports["notifier"]),
               "--backfill-days", str(BACKFILL_DAYS)]
    with open(console, "wb") as sink:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
            # A terminal's foreground job has SIGINT at its default; a test started from a
            # background shell job would otherwise hand down "ignored" and Ctrl-C do nothing.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    run = Demo(process, console, workdir, ports)
    try:
        for name in ("scoreboard", "scores API", "ingest API"):
            run.addresses[name] = run.wait_for(rf"^  {name} +(http://\S+)$", START_WITHIN_S).group(1)
        run.started = descendants(process.pid)
        run.wait_for(r"^live traffic: ", 180)  # the backfill went through ingest
        yield run
    finally:
        if process.poll() is None:  # a test failed before Ctrl-C: stop it, and whatever it left
            run.interrupt()
            try:
                process.wait(STOP_WITHIN_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid, command in run.started.items():
            with contextlib.suppress(OSError):  # only when the pid is still the process the demo started
                if alive(pid) and Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() == command:
                    os.kill(pid, signal.SIGKILL)
        local_kafka.stop(ports["kafka"])
        shutil.rmtree(local_kafka.state_dir(ports["kafka"]), ignore_errors=True)
        print(f"demo console: {console}")


def test_printed_addresses_answer(demo):
    assert demo.addresses == {
        "scoreboard": f"http://127.0.0.1:{demo.ports['scorer']}/",
        "scores API": f"http://127.0.0.1:{demo.ports['scorer']}/v1/scoreboard",
        "ingest API": f"http://127.0.0.1:{demo.ports['ingest']}/docs",
    }
    board = wait_for_scores(demo.addresses["scores API"], 120)
    today = datetime.now(CATALOG.zone).date()
    assert board["as_of"] in {str(today - timedelta(days=1)), str(today - timedelta(days=2))}  # yesterday's
    assert set(board["metrics"]) == {m.id for m in CATALOG.metrics}
    with urllib.request.urlopen(demo.addresses["scoreboard"], timeout=10) as page:
        assert page.status == 200 and page.headers.get_content_type() == "text/html"
        assert f"{CATALOG.city} CityScore" in page.read().decode()
    with urllib.request.urlopen(demo.addresses["ingest API"], timeout=10) as docs:
        assert docs.status == 200 and docs.headers.get_content_type() == "text/html"
    accepted = re.search(r"^  (\d+) events accepted, (\d+) refused", demo.output(), re.MULTILINE)
    assert accepted, demo.tail()
    assert int(accepted.group(1)) > 1000 and accepted.group(2) == "0"
    assert (demo.workdir / "cityscore.db").is_file()  # SQLite, not a server's database


def test_notifier_posts_appear_in_the_console(demo):
    """Realistic scores go below 1: the notifier's follow-up alerts show in the demo's console."""
    read: dict = {}

    def alert_posts() -> dict:
        read["records"] = demo.records()
        posts = {r["key"]: r for r in read["records"]
                 if r.get("logger") == "cityscore.notifier.slack" and r.get("message", "").startswith("slack message")}
        return {k: r for k, r in posts.items() if re.fullmatch(r"alert:[^:]+:[^:]+:\d+:post", k)}

    alerts = wait_until(alert_posts, 60, "a follow-up alert posted in the demo's console", interval_s=1,
                        problems=demo.tail)
    records = read["records"]
    assert alerts, f"no follow-up alert posted in the demo's console within a minute of the backfill:\n{demo.tail()}"

    fired = {(r["metric"], r["window"], r["seq"]): r for r in records
             if r.get("logger") == "cityscore.notifier" and r["message"] == "alert fired"}
    names = {m.id: m for m in CATALOG.metrics}
    for key, post in alerts.items():
        _, metric, window, seq, _ = key.split(":")
        assert metric in names and window in CATALOG.windows, key
        assert fired[(metric, window, int(seq))]["score"] < 1, key
        assert post["channel"].startswith("#") and re.search(rf"\b{window} score \d\.\d\d\b", post["text"]), post

    # What the console shows was delivered: the outbox in the demo's SQLite says so.
    engine = create_engine(f"sqlite:///{demo.workdir / 'cityscore.db'}")
    try:
        with engine.connect() as conn:
            status = dict(conn.execute(text("SELECT key, status FROM notifier_outbox")).all())
    finally:
        engine.dispose()
    assert {key: status.get(key) for key in alerts} == {key: "sent" for key in alerts}


def test_scoreboard_page_in_chromium_matches_the_api(demo, tmp_path):
    scores_api = demo.addresses["scores API"]
    board = wait_for_scores(scores_api, 120)
    with chromium() as browser:
        for _ in range(5):  # live traffic may rescore between the API's answer and the page's
            open_page(browser, demo.addresses["scoreboard"], 1280, height=1600)
            cells = browser.execute_script(READ_CELLS)
            rows = browser.execute_script(READ_ROWS)
            after = api(scores_api, "")
            if after == board:
                break
            board = after
        else:
            pytest.fail("the board kept changing while the page loaded")

        assert browser.title == f"{CATALOG.city} CityScore"
        assert [metric for metric, _ in rows] == [m.id for m in CATALOG.metrics]
        assert [name for _, name in rows] == [board["metrics"][m.id]["name"] for m in CATALOG.metrics]
        colours = check_cells(cells, board, CATALOG)
        for standing, looks in colours.items():
            assert len(looks) <= 1, (standing, looks)  # one look for each standing
        # Two weeks of realistic traffic put metrics both below and above target, in red and in blue.
        assert colours["below"] and colours["above"], colours
        (below, _), = colours["below"]
        (above, _), = colours["above"]
        assert below[0] > 150 and below[0] > below[1] + 80 and below[0] > below[2] + 80, below
        assert above[2] > 150 and above[2] > above[0] + 80, above

        as_of = date.fromisoformat(board["as_of"])
        assert browser.find_element("css selector", ".as-of").text == f"As of {as_of:%A} {as_of.day} {as_of:%B %Y}"
        assert "Last updated" in browser.find_element("css selector", ".updated").text
        assert console_problems(browser) == []

        # The public board shows nothing of the notifier's posts (internal); the demo enables the
        # laptop's page of them, and each one sent is one the console showed, word for word.
        assert not browser.find_elements("css selector", "section.posts")
        shot = screenshot(browser, tmp_path / "scoreboard.png")
        open_page(browser, demo.addresses["scoreboard"] + "slack-posts", 1280)
        shown = browser.execute_script("""return [...document.querySelectorAll('section.posts li')].map(li =>
            [li.dataset.key, li.querySelector('.post-meta').innerText, li.querySelector('.post-text').innerText])""")
    posted = {r["key"]: r["text"] for r in demo.records()
              if r.get("logger") == "cityscore.notifier.slack" and r.get("message", "").startswith("slack message")}
    sent = {key: " ".join(words.split()) for key, meta, words in shown if meta.endswith("· sent")}
    assert sent and sent == {key: " ".join(posted.get(key, "").split()) for key in sent}, (shown, posted)
    width, height = png_size(shot)
    assert width == 1280 and height > 900, (width, height)  # the whole board, not a cut-off viewport
    publish(shot, "scoreboard")


def test_ctrl_c_stops_everything(demo):
    demo.started.update(descendants(demo.process.pid))  # a gunicorn worker may have been replaced
    started = dict(demo.started)
    commands = " | ".join(started.values())
    assert "gunicorn" in commands and "scorer run" in commands and "notifier run" in commands, started
    assert "kafka.Kafka" in commands, started
    ports = [demo.ports["ingest"], demo.ports["scorer"], demo.ports["notifier"], demo.ports["kafka"],
             demo.ports["kafka"] + 1]
    assert all(accepts(port) for port in ports)

    began = time.monotonic()
    demo.interrupt()
    try:
        code = demo.process.wait(STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the demo still runs {STOP_WITHIN_S}s after Ctrl-C:\n{demo.tail()}")
    took = time.monotonic() - began

    output = demo.output()
    assert code == 0, demo.tail()
    assert "\nstopping…\n" in output and output.rstrip().endswith("stopped."), demo.tail()
    left = {pid: command for pid, command in started.items() if alive(pid)}
    assert left == {}, f"still running {took:.0f}s after Ctrl-C: {left}"
    assert [port for port in ports if accepts(port)] == []
    assert local_kafka.status(demo.ports["kafka"])["running"] is False
