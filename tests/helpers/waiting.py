"""Waiting for something a real server, broker or process will do: the one wait-until of the tests and benchmarks."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str, *, interval_s: float = 0.25,
               problems: Callable[[], str] | None = None,
               retry_on: type[BaseException] | tuple[type[BaseException], ...] = ()) -> T:
    """The first truthy value of `predicate()`, asked every `interval_s` seconds.

    After `timeout_s` seconds it raises AssertionError naming `what`, with `problems()` (a log tail,
    the rows still pending) when given. An exception of a type in `retry_on` (a server on its way
    back up) counts as "not yet" and is reported if the wait times out; any other one propagates at
    once, so a broken predicate fails the test straight away instead of after the timeout.
    """
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except retry_on as exc:
            last_error, value = exc, None
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval_s)
    detail = problems() if problems else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}"
                         + (f" (last error: {last_error!r})" if last_error else "")
                         + (f"\n{detail}" if detail else ""))
