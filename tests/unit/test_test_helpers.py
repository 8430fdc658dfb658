"""The tests' own wait-until and scoreboard comparator: they must see what they are there to see."""

from __future__ import annotations

from datetime import date

import pytest

from shared.core.scoring import Scoreboard, WindowScore
from tests.helpers.boards import board_differences
from tests.helpers.waiting import wait_until


def board(numerator: float = 7.0, cityscore: float | None = 0.9) -> Scoreboard:
    return Scoreboard(date(2026, 6, 30), {"week": cityscore},
                      {"pothole-on-time": {"week": WindowScore(numerator / 8 / 0.8, numerator, 8.0)}})


def board_json() -> dict:
    return {"as_of": "2026-06-30", "cityscore": {"week": 0.9},
            "metrics": {"pothole-on-time": {"week": {"score": 7 / 8 / 0.8, "numerator": 7.0, "denominator": 8.0,
                                                     "state": "scored"}}}}


def test_equal_boards_have_no_differences_whichever_shape():
    assert board_differences(board(), board()) == []
    assert board_differences(board(), {**board_json(), "metrics": {"pothole-on-time": {
        "name": "POTHOLE ON-TIME %", **board_json()["metrics"]["pothole-on-time"]}}}) == []


def test_a_figure_off_by_one_case_or_a_null_is_a_difference_that_names_the_metric_window_and_field():
    assert board_differences(board(), board(numerator=6.0)) == [
        f"pothole-on-time week score: {7 / 8 / 0.8} != {6 / 8 / 0.8}", "pothole-on-time week numerator: 7.0 != 6.0"]
    assert board_differences(board(), board(cityscore=None)) == ["cityscore week: 0.9 != None"]
    assert board_differences(board(cityscore=None), {**board_json(), "cityscore": {}}) == [
        "cityscore week: None != (no such window)"]
    assert board_differences(board_json(), {**board_json(), "as_of": "2026-07-01"}) == [
        "as_of 2026-06-30 != 2026-07-01"]


def test_sums_that_differ_in_the_last_bits_are_the_same_figure_unless_asked_closer():
    near = board(numerator=7.0 + 1e-12)
    assert board_differences(board(), near) == []
    assert board_differences(board(), board(numerator=7.0 + 1e-6)) != []


def test_wait_until_returns_the_first_truthy_value():
    answers = iter([None, [], ["folded"]])
    assert wait_until(lambda: next(answers), 5, "the third answer", interval_s=0) == ["folded"]


def test_wait_until_fails_naming_what_it_waited_for_with_the_problems():
    with pytest.raises(AssertionError, match=r"(?s)timed out after 0.05s waiting for the scorer.*its log"):
        wait_until(lambda: False, 0.05, "the scorer", interval_s=0.01, problems=lambda: "its log")


def test_wait_until_retries_only_the_errors_it_is_told_are_not_yet():
    calls = []

    def away_then_back():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("broker away")
        return True

    assert wait_until(away_then_back, 5, "the broker", interval_s=0, retry_on=ConnectionError)
    with pytest.raises(AssertionError, match=r"last error: ConnectionError\('broker away'\)"):
        wait_until(lambda: (_ for _ in ()).throw(ConnectionError("broker away")), 0.05, "the broker",
                   interval_s=0.01, retry_on=ConnectionError)
    with pytest.raises(KeyError):  # a broken predicate fails at once, not after the timeout
        wait_until(lambda: {}["missing"], 60, "a key")


def test_a_metric_s_own_fields_beside_its_windows_are_not_windows():
    # The JSON shape gives each metric its name, target (and more) beside its windows.
    shown = board_json()
    shown["metrics"]["pothole-on-time"].update(name="POTHOLE ON-TIME %", target=0.8)
    assert board_differences(shown, board()) == []
    assert board_differences(board(), shown) == []


def test_the_dates_and_target_of_a_window_that_says_them_are_compared():
    def dated(start: str, target: float = 0.8) -> dict:
        shown = board_json()
        shown["metrics"]["pothole-on-time"]["week"].update(start=start, end="2026-06-28", target=target)
        return shown

    assert board_differences(dated("2026-06-22"), dated("2026-06-22")) == []
    assert board_differences(dated("2026-06-22"), dated("2026-06-24")) == [
        "pothole-on-time week start: 2026-06-22 != 2026-06-24"]
    assert board_differences(dated("2026-06-22"), dated("2026-06-22", 0.85)) == [
        "pothole-on-time week target: 0.8 != 0.85"]
    assert board_differences(dated("2026-06-22"), board_json()) == [
        "pothole-on-time week start: 2026-06-22 != None", "pothole-on-time week end: 2026-06-28 != None",
        "pothole-on-time week target: 0.8 != None"]


def test_the_state_of_a_window_that_says_it_is_compared():
    """A null score is no data or insufficient data: a board that tells them apart wrongly differs."""
    def unscored(insufficient: bool) -> Scoreboard:
        return Scoreboard(date(2026, 6, 30), {"week": None},
                          {"pothole-on-time": {"week": WindowScore(None, None, None, insufficient)}})

    assert board_differences(unscored(True), unscored(True)) == []
    assert board_differences(unscored(False), unscored(True)) == [
        "pothole-on-time week state: no_data != insufficient_data"]
    said = {**board_json(), "cityscore": {"week": None}}
    said["metrics"]["pothole-on-time"]["week"].update(score=None, numerator=None, denominator=None,
                                                      state="insufficient_data")
    assert board_differences(said, unscored(False)) == ["pothole-on-time week state: insufficient_data != no_data"]
    # A board without states (one written before them) is compared on its figures alone.
    del said["metrics"]["pothole-on-time"]["week"]["state"]
    assert board_differences(said, unscored(False)) == []
