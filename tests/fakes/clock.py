"""A clock that only moves when a test tells it to (the scorer's day change, the notifier's schedule)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta


class ManualClock:
    """A `shared.platform.clock.Clock` held at an instant until `set` or `advance` moves it."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("start: give the clock an aware datetime (a naive one has no zone)")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("moment: give the clock an aware datetime (a naive one has no zone)")
        with self._lock:
            self._now = moment

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now
