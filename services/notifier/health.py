"""Is the notifier alive, and is it ready: the answers behind /healthz and /readyz.

Liveness follows the notifier's loops, each on a thread of its own: the consumer of
score changes and the outbox sender. A loop beats each time it comes round (a poll, a
batch applied, a message sent or retried); one whose thread ended, or that has not
beaten for `stall_after_s`, makes the notifier unhealthy, and /healthz names it, so
the orchestrator's liveness probe restarts the process.

Readiness checks may be slow or rate-limited (Slack's auth.test): `CachedCheck` asks
at most every `ttl_s` and keeps the answer, the reason included, meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("cityscore.notifier.health")


class NotReady(Exception):
    """A readiness check's answer when it is not ready; the message is the reason."""


class Heartbeat:
    """One loop's sign of life: the thread that runs it, and when it last came round."""

    def __init__(self, name: str, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.stall_after_s = stall_after_s
        self.clock = clock
        self.thread: threading.Thread | None = None
        self.last: float | None = None
        self.ended_with: str | None = None  # the error that ended the thread, if one did

    def beat(self) -> None:
        self.last = self.clock()

    def problem(self) -> str | None:
        """None while the loop is alive; otherwise what is wrong with it, in words."""
        if self.thread is None or self.last is None:
            return "not started"
        if not self.thread.is_alive():
            return f"its thread has ended ({self.ended_with})" if self.ended_with else "its thread has ended"
        idle = self.clock() - self.last
        if idle > self.stall_after_s:
            return f"stalled: no progress for {idle:.0f} s (the limit is {self.stall_after_s:g} s)"
        return None


class Liveness:
    """The notifier's loops, each started on its own thread with a heartbeat."""

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s = stall_after_s
        self.clock = clock
        self.beats: dict[str, Heartbeat] = {}

    def start(self, name: str, loop: Callable[[Callable[[], None]], None]) -> threading.Thread:
        """Run `loop(beat)` on a daemon thread named `name`; `loop` calls `beat()` each time round."""
        heartbeat = self.beats[name] = Heartbeat(name, self.stall_after_s, self.clock)

        def run() -> None:
            try:
                loop(heartbeat.beat)
            except BaseException as exc:  # noqa: BLE001 - logged here, and /healthz names it
                heartbeat.ended_with = f"{type(exc).__name__}: {exc}"[:300]
                log.exception("a notifier loop ended on an error", extra={"loop": name})

        heartbeat.beat()
        heartbeat.thread = threading.Thread(target=run, name=name, daemon=True)
        heartbeat.thread.start()
        return heartbeat.thread

    def problems(self) -> dict[str, str]:
        """Each loop that is not alive, with what is wrong (empty when all are)."""
        found = {}
        for name, heartbeat in self.beats.items():
            problem = heartbeat.problem()
            if problem is not None:
                found[name] = problem
        return found


class CachedCheck:
    """A readiness check asked at most every `ttl_s`; in between, its last answer stands.

    `ask` returns None when ready, or the reason it is not. One caller asks at a time,
    so a burst of probes costs one request.
    """

    def __init__(self, ask: Callable[[], str | None], ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ask = ask
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._asked_at: float | None = None
        self._problem: str | None = None

    def problem(self) -> str | None:
        with self._lock:
            now = self.clock()
            if self._asked_at is None or now - self._asked_at >= self.ttl_s:
                try:
                    self._problem = self.ask()
                except Exception as exc:  # noqa: BLE001 - a check that fails is a reason
                    self._problem = f"{type(exc).__name__}: {exc}"[:300]
                self._asked_at = self.clock()
            return self._problem

    def __call__(self) -> bool:
        """For /readyz: True when ready, else NotReady with the reason."""
        problem = self.problem()
        if problem is not None:
            raise NotReady(problem)
        return True
