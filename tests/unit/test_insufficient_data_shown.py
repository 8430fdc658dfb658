"""Insufficient data and the percentile where people read them: the read API's JSON, the same as
`cityscore score`'s; the public pages; Slack. On a small SQLite database (no server)."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta, timezone

import orjson
import pytest

from services.cli.offline import score_file
from services.notifier.blocks import board_message, mark, metric_scores_message
from services.scorer.app import create_app
from shared.core.catalog import load_catalog
from shared.core.scoring import INSUFFICIENT, INSUFFICIENT_DATA, NO_DATA, NULL, SCORED, Scoreboard, overall
from tests.fakes.clock import ManualClock
from tests.unit.test_pages import cases, parse
from tests.helpers.score_parts import sqlite_scores

CATALOG = load_catalog()
AS_OF = date(2026, 6, 30)
NOW = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)  # AS_OF is 'yesterday'


def events() -> list[dict]:
    # pothole: day rates 5/10, 9/10, 7/10 on the three days before, 8/10 on AS_OF: percentile 2 of 3
    found = [event for back, on_time in ((3, 5), (2, 9), (1, 7), (0, 8))
             for event in cases("pothole-on-time", AS_OF - timedelta(days=back), on_time, 10 - on_time, f"p{back}")]
    # a homicide today and no past year: data, but nothing to compare with (insufficient data)
    found.append({"event_id": "homicide-1", "type": "incident", "metric": "homicides",
                  "occurred_at": datetime(2026, 6, 30, 15, tzinfo=CATALOG.zone).isoformat()})
    return found


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    engine = sqlite_scores(tmp_path_factory.mktemp('insufficient') / "scores.db", CATALOG, events(), AS_OF)
    yield create_app(engine=engine, catalog=CATALOG, clock=ManualClock(NOW)).test_client()
    engine.dispose()


def offline_board() -> dict:
    lines = io.BytesIO(b"\n".join(orjson.dumps(event) for event in events()))
    board, _, _ = score_file(lines, CATALOG, AS_OF)
    return board.as_dict(CATALOG)


def api(client, query: str) -> dict:
    response = client.get("/v1/scoreboard" + query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


# -- the JSON ------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["?percentile=1", f"?as_of={AS_OF}&percentile=1"])
def test_the_api_and_cityscore_score_give_the_same_states_and_percentiles(client, query):
    # without as_of: the board the scorer published (states found for its nulls); with: computed
    offline, served = offline_board(), api(client, query)
    assert served["as_of"] == offline["as_of"] == AS_OF.isoformat()
    for metric in CATALOG.metrics:
        mine, theirs = offline["metrics"][metric.id], served["metrics"][metric.id]
        assert theirs["percentile"] == pytest.approx(mine["percentile"]) if mine["percentile"] is not None \
            else theirs["percentile"] is None, metric.id
        for window in CATALOG.windows:
            assert theirs[window]["state"] == mine[window]["state"], (metric.id, window)
    assert offline["metrics"]["pothole-on-time"]["percentile"] == pytest.approx(200 / 3)
    assert offline["metrics"]["pothole-on-time"]["day"]["state"] == SCORED
    assert {offline["metrics"]["homicides"][w]["state"] for w in CATALOG.windows} == {INSUFFICIENT_DATA}
    assert {offline["metrics"]["shootings"][w]["state"] for w in CATALOG.windows} == {NO_DATA}
    assert offline["metrics"]["homicides"]["percentile"] is None


def test_the_board_json_has_the_percentile_only_when_asked(client):
    served = api(client, "")
    assert "percentile" not in served["metrics"]["pothole-on-time"]
    assert served["metrics"]["homicides"]["week"] == {**served["metrics"]["homicides"]["week"], "score": None,
                                                      "numerator": None, "denominator": None,
                                                      "state": INSUFFICIENT_DATA}


def test_a_percentile_other_than_0_or_1_is_refused_naming_the_field(client):
    response = client.get("/v1/scoreboard?percentile=yes")
    assert response.status_code == 400
    assert response.get_json()["errors"] == [{"field": "percentile",
                                              "reason": "'yes': must be 1 (each metric's percentile) or 0"}]
    assert "percentile" not in api(client, "?percentile=0")["metrics"]["pothole-on-time"]


# -- the pages -----------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", f"?as_of={AS_OF}"])
def test_the_board_shows_insufficient_data_apart_from_no_score(client, query):
    page = parse(client.get("/" + query).data)
    insufficient = page.one("td", data_metric="homicides", data_window="week")
    assert "insufficient" in insufficient.classes and insufficient.attrs["data-state"] == INSUFFICIENT_DATA
    assert insufficient.visible_text().strip() == "insufficient data"
    nothing = page.one("td", data_metric="shootings", data_window="week")
    assert "insufficient" not in nothing.classes and nothing.visible_text().strip() == ""
    assert "no score" in nothing.text()
    assert any("insufficient data" in item.text() for item in page.one("ul", cls="legend").all("li"))


def test_the_metric_page_shows_insufficient_data_and_the_percentile(client):
    page = parse(client.get("/metric/homicides").data)
    assert page.one("td", data_metric="homicides", data_window="day").visible_text().strip() == "insufficient data"
    assert "no complete past year to compare with" in page.one("li", data_window="week").text()
    assert page.one("p", cls="percentile").attrs["data-percentile"] == ""
    pothole = parse(client.get("/metric/pothole-on-time").data).one("p", cls="percentile")
    assert float(pothole.attrs["data-percentile"]) == pytest.approx(200 / 3)
    assert pothole.text().startswith("Percentile 67: the day score is at or above 67% of the day scores")


# -- Slack ---------------------------------------------------------------------------------------


def slack_board() -> Scoreboard:
    metrics = {m.id: {w: NULL for w in CATALOG.windows} for m in CATALOG.metrics}
    metrics["homicides"] = {w: INSUFFICIENT for w in CATALOG.windows}
    return Scoreboard(AS_OF, overall(metrics.values(), CATALOG.windows), metrics)


def test_slack_marks_insufficient_data_apart_from_no_score():
    assert mark(None, INSUFFICIENT_DATA) == "— insufficient data"
    assert mark(None, NO_DATA) == "— no score"
    message = board_message(slack_board(), None, CATALOG, "https://cityscore.example/")
    table = next(block for block in message["blocks"] if block["type"] == "table")
    rows = {row[0]["text"]: [cell["text"] for cell in row[1:]] for row in table["rows"][1:]}
    assert rows["Homicides (Trend)"] == ["— insufficient data"] * len(CATALOG.windows)
    assert rows["Shootings (Trend)"] == ["— no score"] * len(CATALOG.windows)
    assert "insufficient data: data came in, but not enough to score" in repr(message["blocks"])


def test_slack_metric_scores_say_insufficient_data_and_why():
    message = metric_scores_message(CATALOG.metric("homicides"), {w: INSUFFICIENT for w in CATALOG.windows}, AS_OF,
                                    CATALOG.windows)
    text = message["blocks"][1]["text"]["text"]
    assert text.count("— insufficient data") == len(CATALOG.windows)
    assert "no complete past year to compare with" in text


# -- a ratio below its min_denominator -----------------------------------------------------------


def with_minimum(minimum: float):
    from shared.core.catalog import parse_catalog

    data = CATALOG.model_dump(by_alias=True, exclude_none=True)
    for metric in data["metrics"]:
        if metric["id"] == "pothole-on-time":
            metric["min_denominator"] = minimum
    return parse_catalog(data, "test catalog")


FEW_CASES = with_minimum(100)  # every window of the pothole metric has 10 to 40 cases


@pytest.fixture(scope="module")
def few_cases_client(tmp_path_factory):
    engine = sqlite_scores(tmp_path_factory.mktemp('few-cases') / "scores.db", FEW_CASES, events(), AS_OF)
    yield create_app(engine=engine, catalog=FEW_CASES, clock=ManualClock(NOW)).test_client()
    engine.dispose()


@pytest.mark.parametrize("query", ["", f"?as_of={AS_OF}"])
def test_a_window_below_its_min_denominator_keeps_its_figures_in_the_api_and_cityscore_score(few_cases_client, query):
    # without as_of: the board the scorer published (its nulls' states found again); with: computed
    lines = io.BytesIO(b"\n".join(orjson.dumps(event) for event in events()))
    offline = score_file(lines, FEW_CASES, AS_OF)[0].as_dict(FEW_CASES)["metrics"]["pothole-on-time"]
    served = api(few_cases_client, query)["metrics"]["pothole-on-time"]
    assert offline["day"] == {**offline["day"], "score": None, "numerator": 8, "denominator": 10,
                              "state": INSUFFICIENT_DATA}
    assert offline["week"] == {**offline["week"], "score": None, "numerator": 29, "denominator": 40,
                               "state": INSUFFICIENT_DATA}
    for window in FEW_CASES.windows:
        assert served[window] == offline[window], window


def test_the_page_and_slack_say_a_window_has_too_few_cases_to_judge_by(few_cases_client):
    page = parse(few_cases_client.get("/metric/pothole-on-time").data)
    assert page.one("td", data_metric="pothole-on-time", data_window="day").visible_text().strip() \
        == "insufficient data"
    assert page.one("td", data_denominator="10.0").text().strip() == "10"  # the day's cases, kept
    day = page.one("li", data_window="day").text()
    assert "8 of 10 cases closed on time (80%)" in day and "fewer than 100 cases to judge by" in day
    assert "denominator is 0" not in day
    from shared.core.scoring import DayTotals, score_metric

    scores = score_metric(FEW_CASES.metric("pothole-on-time"), {AS_OF: DayTotals(5, 10)}, AS_OF, FEW_CASES.windows)
    text = metric_scores_message(FEW_CASES.metric("pothole-on-time"), scores, AS_OF,
                                 FEW_CASES.windows)["blocks"][1]["text"]["text"]
    assert "5 of 10 cases closed on time (50%): fewer than 100 cases to judge by" in text
    assert "denominator is 0" not in text
