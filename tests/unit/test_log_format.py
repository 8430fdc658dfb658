"""Logs read as plain lines at a terminal and as JSON everywhere else (shared.platform.logs).

A real pseudo-terminal stands for the person at the keyboard; a pipe for a container's
log collector. configure_logging runs in a child process, the way a service starts.
"""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from shared.platform.logs import LogFormatError, log_format

ROOT = Path(__file__).resolve().parents[2]

# A service's start: logging configured from the environment, then the laptop Slack sender's post.
SERVICE = """
from shared.platform.logs import configure_logging
from services.notifier.slack import LogGateway
configure_logging()
LogGateway().post("#public-works", {"text": "Pothole On-Time % week score 0.81 (39 of 60 cases closed on time (65%); target 80%)"},
                  key="alert:pothole-on-time:week:1:post")
"""


def run_service(log_setting: str | None, *, terminal: bool) -> tuple[int, str]:
    """Run SERVICE with stderr on a pseudo-terminal or a pipe; its exit status and what it wrote."""
    env = {k: v for k, v in os.environ.items() if k != "CITYSCORE_LOG_FORMAT"}
    if log_setting is not None:
        env["CITYSCORE_LOG_FORMAT"] = log_setting
    if not terminal:
        done = subprocess.run([sys.executable, "-c", SERVICE], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=60)
        return done.returncode, done.stderr
    controller, child = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-c", SERVICE], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=child)
        os.close(child)
        written = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the child closed the terminal (EIO on Linux)
                break
            if not chunk:
                break
            written += chunk
        return process.wait(timeout=60), written.decode().replace("\r\n", "\n")
    finally:
        os.close(controller)


def test_a_terminal_reads_plain_lines_with_the_slack_post_in_full():
    status, written = run_service(None, terminal=True)
    assert status == 0, written
    [line] = written.splitlines()
    assert not line.startswith("{")
    assert " INFO cityscore.notifier.slack: slack message to #public-works (not sent: no SLACK_BOT_TOKEN): " \
           "Pothole On-Time % week score 0.81 (39 of 60 cases closed on time (65%); target 80%)" in line
    assert line.endswith(" key=alert:pothole-on-time:week:1:post")
    assert line.count("39 of 60") == 1  # the text and channel fields are in the message: not repeated


def test_without_a_terminal_the_logs_stay_json_with_every_field():
    status, written = run_service(None, terminal=False)
    assert status == 0, written
    [record] = [json.loads(line) for line in written.splitlines()]
    assert record["logger"] == "cityscore.notifier.slack" and record["level"] == "INFO"
    assert record["message"].startswith("slack message")
    assert record["key"] == "alert:pothole-on-time:week:1:post" and record["channel"] == "#public-works"
    assert record["text"].startswith("Pothole On-Time % week score 0.81")


def test_the_setting_overrides_either_way():
    status, written = run_service("json", terminal=True)
    assert status == 0 and json.loads(written.splitlines()[0])["channel"] == "#public-works"
    status, written = run_service("plain", terminal=False)
    assert status == 0 and written.startswith(tuple("0123456789")) and " key=alert:" in written


def test_a_wrong_setting_stops_the_service_naming_it():
    status, written = run_service("yaml", terminal=False)
    assert status != 0
    assert "CITYSCORE_LOG_FORMAT: 'yaml' is not one of json, plain, auto" in written


@pytest.fixture
def terminal():
    """A real terminal's stream (a pseudo-terminal's far end)."""
    controller, child = pty.openpty()
    with open(child, "w") as stream:
        yield stream
    os.close(controller)


@pytest.mark.parametrize("setting, chosen_at_terminal, chosen_elsewhere", [
    (None, "plain", "json"), ("", "plain", "json"), ("auto", "plain", "json"), ("AUTO", "plain", "json"),
    ("json", "json", "json"), ("plain", "plain", "plain"), (" Plain ", "plain", "plain"),
])
def test_the_choice(terminal, setting, chosen_at_terminal, chosen_elsewhere):
    assert log_format(setting, terminal) == chosen_at_terminal
    assert log_format(setting, io.StringIO()) == chosen_elsewhere


def test_a_closed_stream_is_not_a_person(terminal):
    closed = io.StringIO()
    closed.close()
    assert log_format(None, closed) == "json"
    with pytest.raises(LogFormatError, match="CITYSCORE_LOG_FORMAT: 'text'"):
        log_format("text", terminal)
