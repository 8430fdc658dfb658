"""The public scoreboard pages through Flask's test client, on a small SQLite database.

A handful of hand-made events give known scores (above, on and below target, and
null); every cell the page shows is checked against GET /v1/scoreboard.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest
from sqlalchemy import update

from services.scorer.app import create_app
from services.scorer.pages import cell, figure, history_chart, history_summary
from shared.core.wording import audit_terms, sla_words, target_sentence
from shared.core.catalog import load_catalog
from shared.core.contract import parse_event
from shared.store.engine import make_engine, migrate
from shared.store.tables.scorer import CurrentScore
from shared.store.published_scores import PublishedScores
from shared.store.score_reader import ScoreReader
from shared.store.score_writer import ScoreWriter
from shared.core.scoring import WindowScore
from tests.fakes.clock import ManualClock
from tests.helpers.catalogs import CALENDAR_WINDOWS, variant

CATALOG = load_catalog()
AS_OF = date(2026, 6, 30)  # a Tuesday; the clock below makes it 'yesterday'
NOW = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
PUBLISHED = datetime(2026, 7, 1, 10, 5, tzinfo=timezone.utc)  # 6:05 AM in Boston


# -- a little DOM, enough to find elements by class and data attributes ------------------------

VOID = {"meta", "link", "input", "br", "img", "hr", "source", "col", "wbr", "area", "base", "embed", "track"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def visible_text(self) -> str:
        """Text a sighted reader sees: without the visually hidden words."""
        return "".join(c if isinstance(c, str) else ("" if "visually-hidden" in c.classes else c.visible_text())
                       for c in self.children)

    def all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if ((tag is None or child.tag == tag) and (cls is None or cls in child.classes)
                        and all(child.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())):
                    found.append(child)
                found.extend(child.all(tag, cls, **attrs))
        return found

    def one(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.all(tag, cls, **attrs)
        assert len(found) == 1, (tag, cls, attrs, len(found))
        return found[0]


class Tree(HTMLParser):
    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.at = self.root
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.at)
        self.at.children.append(node)
        if tag not in VOID:
            self.at = node

    def handle_startendtag(self, tag, attrs):
        self.at.children.append(Node(tag, dict(attrs), self.at))

    def handle_endtag(self, tag):
        node = self.at
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None and node.parent is not None, f"stray </{tag}>"
        self.at = node.parent

    def handle_data(self, data):
        self.at.children.append(data)


def parse(html: bytes) -> Node:
    return Tree(html.decode()).root


# -- the data ---------------------------------------------------------------------------------


def at(day: date, hour: int, minute: int = 0) -> str:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=CATALOG.zone).isoformat()


def cases(metric: str, day: date, on_time: int, late: int, tag: str) -> list[dict]:
    """Cases closed at noon on `day`, due at 10:00 (late) or 14:00 (on time)."""
    events = []
    for index in range(on_time + late):
        due = at(day, 14 if index < on_time else 10)
        events.append({"event_id": f"{metric}-{tag}-{index}", "type": "case", "metric": metric,
                       "case_id": f"{metric}-{tag}-{index}", "opened_at": at(day - timedelta(days=1), 9),
                       "closed_at": at(day, 12), "due_at": due})
    return events


def measurements(metric: str, day: date, values: list[float]) -> list[dict]:
    return [{"event_id": f"{metric}-{day}-{index}", "type": "measurement", "metric": metric,
             "occurred_at": at(day, 9, index % 60), "value": value} for index, value in enumerate(values)]


def events() -> list[dict]:
    return [
        *cases("pothole-on-time", AS_OF, 9, 1, "d"),  # day 0.9 / 0.8 = 1.125: above
        *cases("pothole-on-time", AS_OF - timedelta(days=5), 0, 4, "w"),  # week 9/14/0.8 = 0.80: below
        *cases("streetlight-on-time", AS_OF, 6, 4, "d"),  # 0.6 / 0.8 = 0.75: below
        *measurements("311-call-center", AS_OF, [12.0] * 19 + [45.0]),  # 19/20/0.95 = 1.0: on target
        *measurements("311-surveys", AS_OF, [3.99]),  # 3.99/4 = 0.9975, shown as 1.00: on target
    ]


def scored_client(tmp_path_factory, catalog):
    """The pages over the events above, scored with `catalog`."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('pages')}/scores.db")
    migrate(engine)
    with engine.begin() as conn:
        ScoreWriter(engine, catalog).fold(conn, [parse_event(e) for e in events()])
        PublishedScores(ScoreReader(engine, catalog)).rescore(conn, AS_OF)
        conn.execute(update(CurrentScore.__table__).values(updated_at=PUBLISHED))
    app = create_app(engine=engine, catalog=catalog, clock=ManualClock(NOW))
    # No `with`: a client that keeps its last request's context would clash with the other
    # catalog's client when a test asks both.
    yield app.test_client()
    engine.dispose()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    yield from scored_client(tmp_path_factory, CATALOG)


# Boston's published calendar windows, and a pothole target raised on Monday 29 June 2026: the
# day (30 June) is scored against 85%, the week (22-28 June) still against 80%.
CALENDAR = variant(CATALOG, windows=CALENDAR_WINDOWS, targets={"pothole-on-time": [
    {"from": date(2016, 1, 1), "target": 0.8}, {"from": date(2026, 6, 29), "target": 0.85}]})


@pytest.fixture(scope="module")
def calendar_client(tmp_path_factory):
    yield from scored_client(tmp_path_factory, CALENDAR)


def api_board(client, as_of: str | None = None) -> dict:
    response = client.get("/v1/scoreboard" + (f"?as_of={as_of}" if as_of else ""))
    assert response.status_code == 200
    return response.get_json()


STANDINGS = {"below": ("▼", "below target"), "at": ("=", "on target"), "above": ("▲", "above target")}


def check_cell(node: Node, score: float | None) -> None:
    """One score cell agrees with the API's score: figure, class, mark and words."""
    if score is None:
        assert node.attrs["data-score"] == ""
        assert "none" in node.classes
        assert node.visible_text().strip() in ("", "–")
        return
    assert float(node.attrs["data-score"]) == score
    shown = f"{score:.2f}"
    standing = "below" if float(shown) < 1 else "above" if float(shown) > 1 else "at"
    assert standing in node.classes, (node.attrs, score)
    mark, words = STANDINGS[standing]
    assert node.visible_text().split() == [mark, shown]
    assert words in node.text()


# -- the board --------------------------------------------------------------------------------


def test_board_has_one_row_per_metric_matching_the_api(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = parse(response.data)
    api = api_board(client)
    table = page.one("table", cls="board")
    assert "as of Tuesday 30 June 2026" in table.one("caption").text()
    # Each window's heading says the days it covers (30 days up to 30 June are the whole of June).
    assert [" ".join(th.text().split()) for th in table.one("thead").all("th")] == [
        "Metric", "Day 30 June", "Week 24–30 June", "Month June 2026", "Quarter 2 April – 30 June"]
    assert all(th.attrs.get("scope") == "col" for th in table.one("thead").all("th"))
    rows = table.one("tbody").all("tr")
    assert [row.attrs["data-metric"] for row in rows] == [m.id for m in CATALOG.metrics]
    for row, metric in zip(rows, CATALOG.metrics):
        heading = row.one("th")
        assert heading.attrs["scope"] == "row"
        assert heading.one("a").attrs["href"] == f"/metric/{metric.id}"
        assert heading.one("a").text().strip() == metric.name == api["metrics"][metric.id]["name"]
        # A stale feed is marked beside the name, as the API's "feed" says (docs/scoring.md §4c).
        feed = api["metrics"][metric.id].get("feed")
        assert len(heading.all("span", cls="stale")) == (1 if feed and feed["stale"] else 0)
        cells = row.all("td")
        assert [c.attrs["data-window"] for c in cells] == list(CATALOG.windows)
        for node in cells:
            assert node.attrs["data-metric"] == metric.id
            check_cell(node, api["metrics"][metric.id][node.attrs["data-window"]]["score"])


def test_board_shows_each_standing_the_events_make(client):
    page = parse(client.get("/").data)

    def standing(metric, window):
        node = page.one("td", data_metric=metric, data_window=window)
        return (node.classes & {"below", "at", "above", "none"}).pop(), node.visible_text().split()

    assert standing("pothole-on-time", "day") == ("above", ["▲", "1.12"])  # 1.125 rounds half to even
    assert standing("pothole-on-time", "week") == ("below", ["▼", "0.80"])
    assert standing("streetlight-on-time", "day") == ("below", ["▼", "0.75"])
    assert standing("311-call-center", "day") == ("at", ["=", "1.00"])
    assert standing("311-surveys", "day") == ("at", ["=", "1.00"])  # 0.9975 reads 1.00, so it is not red
    assert standing("shootings", "quarter") == ("none", [])


def test_board_overall_cityscore_matches_the_api(client):
    page = parse(client.get("/").data)
    api = api_board(client)
    tiles = page.all("li", cls="tile")
    assert [t.attrs["data-window"] for t in tiles] == list(CATALOG.windows)
    for tile in tiles:
        score = api["cityscore"][tile.attrs["data-window"]]
        assert float(tile.attrs["data-score"]) == score
        assert f"{score:.2f}" in tile.text()
    # Day: the mean of 1.125, 0.75, 1.0 and 0.9975.
    assert math.isclose(float(page.one("li", cls="tile", data_window="day").attrs["data-score"]),
                        (1.125 + 0.75 + 1.0 + 0.9975) / 4)


def test_board_says_when_it_was_updated_in_the_citys_time_and_refreshes(client):
    response = client.get("/")
    page = parse(response.data)
    assert "Last updated 1 July 2026, 6:05 AM EDT" in page.one("p", cls="updated").text()
    assert page.one("p", cls="as-of").one("time").attrs["datetime"] == "2026-06-30"
    refresh = page.one("meta", http_equiv="refresh")
    assert int(refresh.attrs["content"]) <= 300
    assert page.one("meta", name="viewport").attrs["content"].startswith("width=device-width")


def test_board_for_another_day_matches_the_api_and_does_not_refresh(client):
    response = client.get("/?as_of=2026-06-25")
    assert response.status_code == 200
    page = parse(response.data)
    api = api_board(client, "2026-06-25")
    assert not page.all("meta", http_equiv="refresh")
    assert "Thursday 25 June 2026" in page.one("p", cls="as-of").text()
    for node in page.one("table", cls="board").all("td"):
        check_cell(node, api["metrics"][node.attrs["data-metric"]][node.attrs["data-window"]]["score"])
    # Links from a past board keep its date.
    assert page.one("tr", data_metric="pothole-on-time").one("a").attrs["href"] == \
        "/metric/pothole-on-time?as_of=2026-06-25"


@pytest.mark.parametrize("as_of, reason", [("yesterday", "YYYY-MM-DD"), ("2026-07-01", "no scores after")])
def test_board_refuses_a_bad_or_future_date(client, as_of, reason):
    response = client.get(f"/?as_of={as_of}")
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert reason in response.get_data(as_text=True)


def test_pages_run_no_inline_script_or_style_under_a_strict_policy(client):
    for path in ("/", "/metric/pothole-on-time", "/metric/no-such-metric"):
        response = client.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert "script-src" not in policy and "default-src 'none'" in policy and "'unsafe-inline'" not in policy
        assert response.headers["X-Frame-Options"] == "DENY"
        html = response.get_data(as_text=True)
        assert "<script" not in html
        assert not re.search(r"\sstyle=", html) and "<style" not in html
        assert "http://" not in html and "https://" not in html  # nothing from another site


def test_stylesheet_is_served_from_the_blueprint(client):
    page = parse(client.get("/").data)
    href = page.one("link", rel="stylesheet").attrs["href"]
    assert href.startswith("/assets/board.css?v=")
    response = client.get(href)
    assert response.status_code == 200
    assert response.mimetype == "text/css"
    assert b".score.below" in response.data


# -- the metric page --------------------------------------------------------------------------


def test_metric_page_defines_the_metric_and_audits_its_scores(client):
    response = client.get("/metric/pothole-on-time")
    assert response.status_code == 200
    page = parse(response.data)
    metric = CATALOG.by_id["pothole-on-time"]
    assert page.one("h1").text().strip() == metric.name
    assert page.one("p", cls="definition").text().strip() == metric.description
    facts = {dt.text(): dt.parent.one("dd").text() for dt in page.one("dl", cls="facts").all("dt")}
    assert facts["Target"] == "80% of cases closed on time"
    assert facts["Service level"] == "Closed within 1 business day"
    assert facts["Department"] == "Public Works Department"
    assert "divided by the target" in facts["How it is scored"]
    api = api_board(client)["metrics"]["pothole-on-time"]
    audit = page.one("table", cls="audit")
    assert "cases closed on time" in audit.one("thead").text()
    for row in audit.one("tbody").all("tr"):
        window = row.attrs["data-window"]
        score, numerator, denominator = row.all("td")
        check_cell(score, api[window]["score"])
        assert float(numerator.attrs["data-numerator"]) == api[window]["numerator"]
        assert float(denominator.attrs["data-denominator"]) == api[window]["denominator"]
    week = audit.one("tr", data_window="week")
    assert [td.text() for td in week.all("td", cls="num")] == ["9", "14"]


def test_metric_page_says_each_windows_figures_in_the_words_of_its_feed(client):
    """The same words as Slack and the terminal (shared.core.wording): a survey is an average rating."""
    pothole = parse(client.get("/metric/pothole-on-time").data).one("ul", cls="in-words")
    assert pothole.one("li", data_window="week").text() == "Week: 9 of 14 cases closed on time (64.3%)"
    assert pothole.one("li", data_window="day").text() == "Day: 9 of 10 cases closed on time (90%)"
    surveys = parse(client.get("/metric/311-surveys").data).one("ul", cls="in-words")
    assert surveys.one("li", data_window="day").text() == "Day: average rating 3.99 from 1 survey"
    shootings = parse(client.get("/metric/shootings").data).one("ul", cls="in-words")
    assert shootings.one("li", data_window="week").text() == \
        "Week: no incidents in the window, or no past years to compare with"


def test_metric_page_charts_the_week_score_accessibly(client):
    page = parse(client.get("/metric/pothole-on-time").data)
    svg = page.one("svg")
    assert svg.attrs["role"] == "img"
    labelled = svg.attrs["aria-labelledby"].split()
    assert svg.one("title").attrs["id"] in labelled and svg.one("desc").attrs["id"] in labelled
    assert "Week score for each day from" in svg.one("desc").text()
    assert svg.all("line", cls="target")
    history = client.get("/v1/metrics/pothole-on-time/history?window=week&days=90").get_json()["history"]
    rows = page.one("table", cls="history").one("tbody").all("tr")
    assert len(rows) == len(history) == 90
    for row, point in zip(rows, reversed(history)):
        assert row.one("time").attrs["datetime"] == point["as_of"]
        check_cell(row.one("td", cls="score"), point["score"])


def test_trend_metric_page_says_it_is_compared_with_past_years(client):
    page = parse(client.get("/metric/shootings").data)
    facts = {dt.text(): dt.parent.one("dd").text() for dt in page.one("dl", cls="facts").all("dt")}
    assert facts["Target"].startswith("Compared with past years")
    assert "Service level" not in facts
    assert "No scores in this period" in page.one("svg").one("desc").text()


def test_unknown_metric_is_a_404_page(client):
    response = client.get("/metric/no-such-metric")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "no-such-metric" in response.get_data(as_text=True)
    assert any("scoreboard" in a.text() for a in parse(response.data).one("main").all("a", href="/"))


# -- each window's dates, and the targets over time -------------------------------------------


def window_headings(page: Node) -> list[str]:
    return [" ".join(th.text().split()) for th in page.one("table", cls="board").one("thead").all("th")]


def check_window_dates(page: Node, api: dict) -> None:
    """Each column and tile of the board covers the dates the API gives its window, and says them."""
    headings = page.one("table", cls="board").one("thead").all("th")[1:]
    assert [th.attrs["data-window"] for th in headings] == list(api["windows"])
    for th in headings:
        dates = api["windows"][th.attrs["data-window"]]
        assert (th.attrs["data-start"], th.attrs["data-end"]) == (dates["start"], dates["end"])
        tile = page.one("li", cls="tile", data_window=th.attrs["data-window"])
        assert tile.one("span", cls="tile-dates").text() == th.one("span", cls="span").text()
    for node in page.one("table", cls="board").all("td"):
        check_cell(node, api["metrics"][node.attrs["data-metric"]][node.attrs["data-window"]]["score"])


def test_board_says_the_days_each_trailing_window_covers(client):
    page = parse(client.get("/?as_of=2026-06-25").data)
    assert window_headings(page) == ["Metric", "Day 25 June", "Week 19–25 June", "Month 27 May – 25 June",
                                     "Quarter 28 March – 25 June"]
    check_window_dates(page, api_board(client, "2026-06-25"))


def test_board_of_calendar_windows_says_the_calendar_periods(calendar_client):
    """Thursday 25 June: the last complete Monday-to-Sunday week, and whole months (docs/scoring.md §3b)."""
    page = parse(calendar_client.get("/?as_of=2026-06-25").data)
    assert window_headings(page) == ["Metric", "Day 25 June", "Week 15–21 June", "Month May 2026",
                                     "Quarter March – May 2026"]
    check_window_dates(page, api_board(calendar_client, "2026-06-25"))
    # The last day of June completes June.
    current = parse(calendar_client.get("/").data)
    assert window_headings(current) == ["Metric", "Day 30 June", "Week 22–28 June", "Month June 2026",
                                        "Quarter April – June 2026"]
    check_window_dates(current, api_board(calendar_client))


def audit_spans(page: Node) -> dict[str, str]:
    return {row.attrs["data-window"]: row.one("span", cls="span").text()
            for row in page.one("table", cls="audit").one("tbody").all("tr")}


def test_metric_page_says_each_windows_days_trailing_or_calendar(client, calendar_client):
    trailing = parse(client.get("/metric/pothole-on-time?as_of=2026-06-25").data)
    assert audit_spans(trailing) == {"day": "25 June 2026", "week": "19–25 June 2026",
                                     "month": "27 May – 25 June 2026", "quarter": "28 March – 25 June 2026"}
    calendar = parse(calendar_client.get("/metric/pothole-on-time?as_of=2026-06-25").data)
    assert audit_spans(calendar) == {"day": "25 June 2026", "week": "15–21 June 2026", "month": "May 2026",
                                     "quarter": "March – May 2026"}


def facts_of(page: Node) -> dict[str, str]:
    return {dt.text(): " ".join(dt.parent.one("dd").text().split()) for dt in page.one("dl", cls="facts").all("dt")}


def test_metric_page_shows_the_targets_over_time_and_states_the_one_in_force(calendar_client):
    page = parse(calendar_client.get("/metric/pothole-on-time").data)  # as of 30 June: the raised target
    assert facts_of(page)["Target"] == "85% of cases closed on time"
    history = page.one("ul", cls="targets")
    assert [li.attrs["data-from"] for li in history.all("li")] == ["2016-01-01", "2026-06-29"]
    assert [" ".join(li.text().split()) for li in history.all("li")] == [
        "From 1 January 2016: 80% of cases closed on time",
        "From 29 June 2026: 85% of cases closed on time (in force on 30 June 2026)"]
    # A past board states the target of its own day.
    before = parse(calendar_client.get("/metric/pothole-on-time?as_of=2026-06-25").data)
    assert facts_of(before)["Target"] == "80% of cases closed on time"
    assert "(in force on 25 June 2026)" in before.one("ul", cls="targets").all("li")[0].text()


def window_targets(page: Node) -> dict[str, str]:
    return {row.attrs["data-window"]: " ".join(span.text().split())
            for row in page.one("table", cls="audit").one("tbody").all("tr")
            for span in row.all("span", cls="window-target")}


def test_metric_page_says_a_windows_target_beside_its_score_when_not_the_one_stated(calendar_client):
    # As of Tuesday 30 June the page states 85% (raised on Monday 29 June); the week of 22-28 June
    # ended before, and was scored with 80%, as the JSON's "target" of that window says.
    page = parse(calendar_client.get("/metric/pothole-on-time").data)
    assert facts_of(page)["Target"] == "85% of cases closed on time"
    assert window_targets(page) == {"week": "target 80% (in force on 28 June 2026)"}
    api = api_board(calendar_client)["metrics"]["pothole-on-time"]
    assert [w for w in CALENDAR.windows if api[w]["target"] != api["target"]] == ["week"]
    # Every window of a metric with one target is scored with it: nothing to add.
    assert window_targets(parse(calendar_client.get("/metric/311-call-center").data)) == {}


def test_a_metric_with_one_target_has_no_history_of_targets(client, calendar_client):
    assert parse(client.get("/metric/pothole-on-time").data).all("ul", cls="targets") == []
    assert parse(calendar_client.get("/metric/311-call-center").data).all("ul", cls="targets") == []


# -- presenting scores, without a database ----------------------------------------------------


@pytest.mark.parametrize("score, text, standing", [
    (0.7883, "0.79", "below"),
    (0.994, "0.99", "below"),
    (0.996, "1.00", "at"),
    (1.0, "1.00", "at"),
    (1.004, "1.00", "at"),
    (1.006, "1.01", "above"),
    (5.333, "5.33", "above"),
    (None, "", "none"),
    (float("nan"), "", "none"),
])
def test_cell_rounds_to_two_places_and_its_standing_follows_the_figure(score, text, standing):
    shown = cell(score)
    assert (shown.text, shown.standing) == (text, standing)
    assert bool(shown.mark) == (standing != "none") and shown.label


def test_figures_for_the_audit_columns():
    assert [figure(v) for v in (None, 773.0, 22378.857, 6.49167, 0.2857142857, 1234567.0)] == \
        ["", "773", "22,378.86", "6.4917", "0.2857", "1,234,567"]


def test_targets_and_service_levels_in_words():
    by_id = CATALOG.by_id
    assert target_sentence(by_id["311-call-center"]) == "95% of measurements within the threshold"
    assert target_sentence(by_id["311-surveys"]) == "An average rating of 4 out of 5"
    assert target_sentence(by_id["ems-response-time"]) == "A median of 6 minutes"
    assert target_sentence(by_id["bps-attendance"]) == "95% on an average day"
    assert target_sentence(by_id["homicides"]).startswith("Compared with past years")
    assert sla_words(by_id["signal-repair-on-time"]) == "Closed within 24 hours"
    assert "lighting: within 7 business days" in sla_words(by_id["parks-maintenance-on-time"])
    assert audit_terms(by_id["ems-response-time"]) == ("target", "median")
    assert audit_terms(by_id["library-users"]) == ("current daily average", "past years' daily average")


def test_history_chart_breaks_the_line_where_there_is_no_score():
    start = date(2026, 5, 25)
    scores = [0.8, 0.9, None, None, 1.2, 1.1, 1.0, None, 0.95]
    series = [(start + timedelta(days=i), WindowScore(s, None, None)) for i, s in enumerate(scores)]
    chart = history_chart(series)
    assert [path.count("L") for path in chart.paths] == [1, 2]  # 0.8-0.9 and 1.2-1.1-1.0
    assert len(chart.lone_points) == 1  # 0.95, alone after a gap
    assert chart.top < chart.target_y < chart.bottom
    assert "1.00" in [tick.label for tick in chart.y_ticks]
    assert [tick.label for tick in chart.x_ticks] == ["Jun 1"]
    ys = {tick.label: tick.at for tick in chart.y_ticks}
    assert ys["1.00"] == chart.target_y
    assert chart.latest is not None and chart.latest[2] == "0.95"
    summary = history_summary(series, "week")
    assert "Lowest 0.80 on 25 May, highest 1.20 on 29 May" in summary
    assert "On or above target on 3 of 6 days with a score" in summary


def test_history_chart_of_no_scores_still_draws_the_target():
    series = [(date(2026, 6, d), WindowScore(None, None, None)) for d in range(1, 8)]
    chart = history_chart(series)
    assert chart.paths == [] and chart.latest is None
    assert chart.top < chart.target_y < chart.bottom


# -- the notifier's posts: internal, never on the public board -----------------------------------

# What an outbox holds once alerts have fired and staff have answered them in Slack: the
# alert, a thread reply naming who acknowledged it, a staff note, and Slack user ids.
INTERNAL_POSTS = [
    ("alert:pothole-on-time:week:1:post", "#public-works", None,
     "POTHOLE ON-TIME % week score 0.80 is below target <follow up>"),
    ("alert:pothole-on-time:week:1:reply:1", "#public-works", "alert:pothole-on-time:week:1:post",
     "Acknowledged by <@U0PWDLEAD>: crew shortage in Dorchester"),
    ("alert:pothole-on-time:week:1:reply:2", "#public-works", "alert:pothole-on-time:week:1:post",
     "Note from <@U0DISPATCH>: two trucks back on Monday"),
]
INTERNAL_WORDS = ["#public-works", "U0PWDLEAD", "U0DISPATCH", "crew shortage", "two trucks", "follow up",
                  "Recent posts", "slack-posts"]


def posts_client(tmp_path, enabled: bool):
    """A board over a database whose outbox holds the notifier's posts."""
    from services.notifier.outbox import enqueue_post
    from services.scorer.settings import ScorerSettings

    engine = make_engine(f"sqlite:///{tmp_path}/posts.db")
    migrate(engine)
    with engine.begin() as conn:
        for key, channel, parent, words in INTERNAL_POSTS:
            enqueue_post(conn, key, channel, {"text": words}, parent_key=parent)
    return engine, create_app(ScorerSettings(SCORER_SHOW_SLACK_POSTS=enabled), engine=engine, catalog=CATALOG, clock=ManualClock(NOW))


def test_showing_slack_posts_is_off_unless_enabled():
    from services.scorer.settings import ScorerSettings

    assert ScorerSettings.model_fields["scorer_show_slack_posts"].default is False


@pytest.mark.parametrize("enabled", [False, True])
def test_public_pages_never_show_the_notifiers_posts(tmp_path, enabled):
    """Alert threads, staff notes, Slack user ids and channels are internal: not on any public page."""
    engine, app = posts_client(tmp_path, enabled)
    with app.test_client() as test_client:
        for path in ("/", "/metric/pothole-on-time", "/metric/no-such-metric"):
            html = test_client.get(path).get_data(as_text=True)
            # Enabled (a laptop), the pages may link to the posts page, by its address only.
            shown = [word for word in INTERNAL_WORDS if word in html and not (enabled and word == "slack-posts")]
            assert shown == [], (path, shown)
    engine.dispose()


def test_slack_posts_page_is_not_found_unless_enabled(tmp_path):
    engine, app = posts_client(tmp_path, False)
    with app.test_client() as test_client:
        response = test_client.get("/slack-posts")
        assert response.status_code == 404
        html = response.get_data(as_text=True)
        assert [word for word in INTERNAL_WORDS if word in html] == []
    engine.dispose()


def test_slack_posts_page_shows_the_notifiers_recent_posts_when_enabled(tmp_path):
    """With no Slack token the notifier's posts stay in its outbox; a laptop that enables it sees them."""
    from services.notifier.outbox import enqueue_post

    engine = make_engine(f"sqlite:///{tmp_path}/posts.db")
    migrate(engine)
    from services.scorer.settings import ScorerSettings

    app = create_app(ScorerSettings(SCORER_SHOW_SLACK_POSTS=True), engine=engine, catalog=CATALOG, clock=ManualClock(NOW))
    with app.test_client() as test_client:
        empty = test_client.get("/slack-posts")
        assert empty.status_code == 200 and b"No posts yet" in empty.data
        with engine.begin() as conn:
            enqueue_post(conn, "alert:pothole-on-time:week:1:post", "#public-works",
                         {"text": "POTHOLE ON-TIME % week score 0.80 is below target <follow up>"})
        response = test_client.get("/slack-posts")
        board = parse(test_client.get("/").data)
    engine.dispose()
    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]  # internal: never kept by a shared cache
    page = response.get_data(as_text=True)
    assert "Recent posts to Slack" in page
    assert "#public-works" in page and "pending" in page
    assert "week score 0.80 is below target &lt;follow up&gt;" in page  # escaped, never raw HTML
    assert "<script" not in page
    # The board links to it only here, where it is enabled.
    assert [a.attrs["href"] for a in board.all("a") if a.attrs.get("href") == "/slack-posts"] == ["/slack-posts"]
