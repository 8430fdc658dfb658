"""Small helpers the tests and the benchmarks share (bench/ puts the repository on sys.path)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import requests

from tests.helpers.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank of the sorted values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def run_probes(probe: Callable[[int], None], seconds: float, interval_s: float, join_s: float = 40) -> int:
    """Start `probe(number)` on a thread of its own every `interval_s` for `seconds`; wait for them all.

    Each probe times one event on its own thread, so a slow one never delays the next.
    Returns how many were started.
    """
    started = time.perf_counter()
    probes = []
    while time.perf_counter() - started < seconds:
        thread = threading.Thread(target=probe, args=(len(probes),), daemon=True)
        thread.start()
        probes.append(thread)
        time.sleep(interval_s)
    for thread in probes:
        thread.join(join_s)
    return len(probes)


def memory_kb(pid: int) -> tuple[int, int]:
    """(resident now, peak resident) of a process in kB, from /proc/PID/status (0, 0 once it is gone)."""
    fields = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return int(fields.get("VmRSS", "0 kB").split()[0]), int(fields.get("VmHWM", "0 kB").split()[0])


def cpu_seconds(pid: int, with_exited_children: bool = False) -> float:
    """CPU time (user and system) a process has used so far, in seconds, from /proc/PID/stat (0 once
    it is gone); with `with_exited_children`, also that of its children that exited and were waited for."""
    with contextlib.suppress(OSError):
        # The fields after the command name, which is in parentheses and may hold spaces: utime,
        # stime, cutime and cstime are the 14th to 17th of the line.
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks = int(fields[11]) + int(fields[12])
        if with_exited_children:
            ticks += int(fields[13]) + int(fields[14])
        return ticks / os.sysconf("SC_CLK_TCK")
    return 0.0


def cpu_seconds_of(command: str) -> float | None:
    """CPU seconds used so far by every process on this machine whose command name is `command`
    (PostgreSQL's, say), those of their children that exited included (a server's backends and
    autovacuum workers come and go: their time then moves to the server process, so the sum never
    goes down); None when none runs here."""
    pids = [entry.name for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    found = None
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == command:
                found = (found or 0.0) + cpu_seconds(int(pid), with_exited_children=True)
    return found


def start_gunicorn(app: str, env: dict[str, str], port: int, timeout_s: float = 60) -> subprocess.Popen:
    """`app` (e.g. services.ingest.wsgi:app) under deploy/gunicorn.conf.py on 127.0.0.1:`port`, once
    its /readyz answers 200; exits the benchmark if it never does."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
         "--bind", f"127.0.0.1:{port}", app],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200,
                   timeout_s, f"{app} to be ready on port {port}", interval_s=0.5,
                   retry_on=requests.RequestException)
    except AssertionError as exc:
        proc.kill()
        raise SystemExit(str(exc)) from None
    return proc
