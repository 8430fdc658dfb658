"""The notifier's liveness (its loops' heartbeats) and cached readiness checks, with a hand-moved clock."""

from __future__ import annotations

import threading

import pytest

from services.notifier.health import CachedCheck, Heartbeat, Liveness, NotReady


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_loop_that_keeps_beating_is_alive_and_one_that_stops_is_stalled():
    clock = Clock()
    liveness = Liveness(stall_after_s=60, clock=clock)
    stop, beat_now, beaten = threading.Event(), threading.Event(), threading.Event()

    def loop(beat) -> None:
        while not stop.is_set():
            if beat_now.wait(0.01):
                beat_now.clear()
                beat()
                beaten.set()

    thread = liveness.start("consumer", loop)
    try:
        assert liveness.problems() == {}
        clock.now += 61  # no beat for longer than the limit
        assert liveness.problems() == {"consumer": "stalled: no progress for 61 s (the limit is 60 s)"}
        beat_now.set()
        assert beaten.wait(10)
        assert liveness.problems() == {}
    finally:
        stop.set()
        thread.join(10)
    assert liveness.problems() == {"consumer": "its thread has ended"}


def test_a_loop_that_dies_on_an_error_is_named_with_the_error():
    liveness = Liveness(stall_after_s=60, clock=Clock())

    def loop(beat) -> None:
        beat()
        raise RuntimeError("the broker refused us")

    liveness.start("consumer", loop).join(10)
    assert liveness.problems() == {"consumer": "its thread has ended (RuntimeError: the broker refused us)"}


def test_a_heartbeat_without_a_thread_is_not_started():
    assert Heartbeat("sender", 60).problem() == "not started"


def test_a_cached_check_asks_once_per_period_and_keeps_the_reason():
    clock = Clock()
    answers = iter(["token_revoked", None, None])
    asked = []

    def ask() -> str | None:
        asked.append(clock.now)
        return next(answers)

    check = CachedCheck(ask, ttl_s=30, clock=clock)
    with pytest.raises(NotReady, match="token_revoked"):
        check()
    clock.now += 29
    with pytest.raises(NotReady, match="token_revoked"):
        check()  # still the cached answer
    assert len(asked) == 1
    clock.now += 1
    assert check() is True
    assert len(asked) == 2


def test_a_check_that_raises_is_not_ready_with_the_error_as_reason():
    def ask() -> str | None:
        raise ConnectionError("slack.com unreachable")

    with pytest.raises(NotReady, match="ConnectionError: slack.com unreachable"):
        CachedCheck(ask, ttl_s=30, clock=Clock())()
