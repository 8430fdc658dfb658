"""Time for every service: one `Clock` shape, the system clock, and the as-of day it gives.

Services never call `datetime.now()` for a decision of their own: they are handed a
`Clock`, so a test can hold or move time (tests/fakes/clock.py). Production runs on
`system_clock`. Elapsed-time measures (heartbeats, timeouts) use time.monotonic, not a Clock.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Protocol

from shared.core.catalog import Catalog
from shared.core.scoring import as_of_at


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, zone-aware."""
        ...


class SystemClock:
    """The machine's time, in UTC."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


system_clock = SystemClock()


def current_as_of(clock: Clock, catalog: Catalog) -> date:
    """The day scores are as of now: the core's rule (`as_of_at`) at the clock's time."""
    return as_of_at(clock.now(), catalog)


__all__ = ["Clock", "SystemClock", "current_as_of", "system_clock"]
