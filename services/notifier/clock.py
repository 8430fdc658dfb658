"""Time for the notifier: the system clock, or one a test moves by hand."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Protocol


def aware(moment: datetime | None) -> datetime | None:
    """A stored timestamp as UTC: SQLite hands `UTCDateTime` values back naive (they are UTC)."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock:
    """A clock that only moves when told (for tests of the schedule and reminders)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("give the clock an aware datetime")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = moment

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now
