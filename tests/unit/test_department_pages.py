"""Department and cabinet scorecards through Flask's test client, on a small SQLite database.

The page and GET /v1/departments/ID are checked against each other and against the board's own
JSON: the same cells, window dates and backlog; the open alerts of the notifier's table with
their owners, and none of a resolved one or of another department's metric.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from sqlalchemy import insert

from services.scorer.app import create_app
from services.scorer.settings import ScorerSettings
from shared.core.catalog import parse_catalog
from shared.core.contract import parse_event
from shared.store.engine import make_engine, migrate
from shared.store.published_scores import PublishedScores
from shared.store.score_reader import ScoreReader
from shared.store.score_writer import ScoreWriter
from shared.core.record import Action, Note, close
from shared.store.record import Record
from shared.store.tables.notifier import Alert
from tests.fakes.clock import ManualClock
from tests.unit.test_pages import AS_OF, CATALOG, NOW, check_cell, events, parse

FIRED = datetime(2026, 6, 29, 13, 0, tzinfo=timezone.utc)  # 9:00 AM in Boston

ALERTS = [
    # Public Works: a follow-up owned and acknowledged, an early warning nobody owns yet.
    dict(metric="pothole-on-time", window="week", seq=1, status="acknowledged", channel="C0PWD", score=0.8036,
         fired_at=FIRED, acknowledged_by="U0LEAD", owner="U0OWNER"),
    dict(metric="streetlight-on-time", window="at-risk:week", seq=2, status="firing", channel="C0PWD", score=1.02,
         fired_at=FIRED.replace(hour=15)),
    # Resolved, and another department's: never on Public Works' page.
    dict(metric="graffiti-on-time", window="week", seq=3, status="resolved", channel="C0PWD", score=0.7,
         fired_at=FIRED, resolved_at=FIRED.replace(day=30)),
    dict(metric="311-call-center", window="week", seq=4, status="firing", channel="C0311", score=0.9,
         fired_at=FIRED),
]

ACTIONS = [
    Action(None, "streetlight-on-time", "public-works", "U0OWNER", "Clear the Dorchester backlog", date(2026, 7, 3),
           "U0LEAD", FIRED),
    Action(None, "pothole-on-time", "public-works", "U0CREW", "A second crew on nights", date(2026, 6, 29),
           "U0LEAD", FIRED),
    Action(None, "311-call-center", "boston-311", "U0CALLS", "Two more agents at lunch", date(2026, 7, 1),
           "U0LEAD", FIRED),
]
NOTES = [
    Note(None, "pothole-on-time", date(2026, 6, 26), "Snowstorm closed the depots", "U0LEAD", FIRED, public=True),
    Note(None, "pothole-on-time", date(2026, 6, 27), "Crew lead out sick", "U0LEAD", FIRED, public=False),
]


def client_for(tmp_path_factory, catalog, show_owners: bool = True, more_actions: tuple[Action, ...] = ()):
    """The pages over the events, alerts, actions (and `more_actions`) and notes above; as a city's staff
    see them (who owns what) unless `show_owners` is False, the public's."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('departments')}/scores.db")
    migrate(engine)
    with engine.begin() as conn:
        ScoreWriter(engine, catalog).fold(conn, [parse_event(e) for e in events()])
        PublishedScores(ScoreReader(engine, catalog)).rescore(conn, AS_OF)
        for alert in ALERTS:  # one by one: each row names only the columns it sets
            conn.execute(insert(Alert.__table__).values(**alert))
        record = Record(conn)
        for action in (*ACTIONS, *more_actions):
            record.add_action(action)
        done, _ = record.add_action(Action(None, "pothole-on-time", "public-works", "U0OWNER", "Already done",
                                           date(2026, 6, 25), "U0LEAD", FIRED))
        record.save_closed(close(done, "Crews added", "U0OWNER", FIRED))
        for note in NOTES:
            record.add_note(note)
    settings = ScorerSettings(**{"SCORER_SHOW_OWNERS": show_owners})
    app = create_app(settings, engine=engine, catalog=catalog, clock=ManualClock(NOW))
    yield app.test_client()
    engine.dispose()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    yield from client_for(tmp_path_factory, CATALOG)


@pytest.fixture(scope="module")
def public_client(tmp_path_factory):
    yield from client_for(tmp_path_factory, CATALOG, show_owners=False)


@pytest.fixture(scope="module")
def due_yesterday_client(tmp_path_factory):
    """With an action of Boston 311 due on the board's day (30 June), yesterday in the city."""
    yield from client_for(tmp_path_factory, CATALOG, more_actions=(
        Action(None, "311-call-center", "boston-311", "U0CALLS", "Call back the June callers", AS_OF, "U0LEAD",
               FIRED),))


@pytest.fixture(scope="module")
def moved_client(tmp_path_factory):
    """With an open action recorded for Boston 311 on pothole-on-time, a metric the catalog gives Public Works."""
    yield from client_for(tmp_path_factory, CATALOG, more_actions=(
        Action(None, "pothole-on-time", "boston-311", "U0CALLS", "Recorded before the metric moved",
               date(2026, 7, 8), "U0LEAD", FIRED),))


NEAR = parse_catalog({**CATALOG.model_dump(by_alias=True, exclude_none=True), "near_target": 0.75}, "near band")


@pytest.fixture(scope="module")
def near_client(tmp_path_factory):
    yield from client_for(tmp_path_factory, NEAR)


def get_json(client, path: str) -> dict:
    response = client.get(path)
    assert response.status_code == 200, response.data
    return response.get_json()


def test_the_department_page_shows_its_metrics_as_the_board_and_its_json(client):
    board = get_json(client, "/v1/scoreboard")
    card = get_json(client, "/v1/departments/public-works")
    assert card["as_of"] == board["as_of"] == AS_OF.isoformat() and card["windows"] == board["windows"]
    assert card["department"] == {"id": "public-works", "name": "Public Works Department",
                                  "cabinet": {"id": "streets", "name": "Streets (example)"}}
    ids = [metric.id for metric in CATALOG.metrics_of("public-works")]
    # Each metric exactly as the board's JSON gives it: scores, parts, dates, targets, open and projected.
    assert card["metrics"] == {metric_id: board["metrics"][metric_id] for metric_id in ids}

    page = parse(client.get("/departments/public-works").data)
    table = page.one("table", cls="scorecard-table")
    headings = table.one("thead").all("th")[1:]
    assert [(th.attrs["data-start"], th.attrs["data-end"]) for th in headings] == [
        (card["windows"][w]["start"], card["windows"][w]["end"]) for w in CATALOG.windows]
    rows = table.one("tbody").all("tr")
    assert [row.attrs["data-metric"] for row in rows] == ids
    for row in rows:
        for node in row.all("td"):
            check_cell(node, card["metrics"][row.attrs["data-metric"]][node.attrs["data-window"]]["score"])
    # The backlog beside each case-fed metric is the JSON's "open" (none are open at the end of the day
    # here: every case closed), as on the board.
    listed = page.one("ul", cls="backlogs").all("li")
    assert [li.attrs["data-metric"] for li in listed] == [m for m in ids if "open" in card["metrics"][m]]
    for li in listed:
        line = li.one("span", cls="backlog")
        assert int(line.attrs["data-overdue"]) == card["metrics"][li.attrs["data-metric"]]["open"]["overdue"]


def test_the_department_page_lists_its_open_alerts_and_who_owns_them(client):
    card = get_json(client, "/v1/departments/public-works")
    assert card["alerts"] == [
        {"id": 1, "metric": "pothole-on-time", "kind": "follow-up", "window": "week", "status": "acknowledged",
         "score": 0.8036, "fired_at": "2026-06-29T13:00:00+00:00", "acknowledged_by": "U0LEAD",
         "owner": "U0OWNER"},
        {"id": 2, "metric": "streetlight-on-time", "kind": "at risk", "window": "week", "status": "firing",
         "score": 1.02, "fired_at": "2026-06-29T15:00:00+00:00", "acknowledged_by": None, "owner": None}]
    page = parse(client.get("/departments/public-works").data)
    rows = page.one("table", cls="alerts").one("tbody").all("tr")
    assert [(r.attrs["data-alert"], r.attrs["data-kind"], r.attrs["data-owner"]) for r in rows] == [
        ("1", "follow-up", "U0OWNER"), ("2", "at risk", "")]
    assert " ".join(rows[0].text().split()) == (
        "POTHOLE ON-TIME % follow-up (week) 0.80 29 June 2026, 9:00 AM EDT acknowledged by U0LEAD U0OWNER")
    assert "no owner yet" in rows[1].text() and "not acknowledged" in rows[1].text()
    # Boston 311's page has its own alert only; a department with none says so.
    assert [a["metric"] for a in get_json(client, "/v1/departments/boston-311")["alerts"]] == ["311-call-center"]
    assert get_json(client, "/v1/departments/police")["alerts"] == []
    assert "No alert is open" in parse(client.get("/departments/police").data).one("p", data_alerts="0").text()


def test_the_cabinet_page_is_each_of_its_departments_scorecards(client):
    cabinet = get_json(client, "/v1/cabinets/streets")
    assert cabinet["cabinet"] == {"id": "streets", "name": "Streets (example)"}
    assert [d["department"]["id"] for d in cabinet["departments"]] == ["public-works", "transportation"]
    for department in cabinet["departments"]:
        alone = get_json(client, f"/v1/departments/{department['department']['id']}")
        assert department == {key: alone[key] for key in department}
    page = parse(client.get("/cabinets/streets").data)
    sections = page.all("section", cls="department")
    assert [s.attrs["data-department"] for s in sections] == ["public-works", "transportation"]
    assert sections[0].one("h2").one("a").attrs["href"] == "/departments/public-works"
    for section, department in zip(sections, cabinet["departments"]):
        rows = section.one("table", cls="scorecard-table").one("tbody").all("tr")
        assert [r.attrs["data-metric"] for r in rows] == list(department["metrics"])
        for row in rows:
            for node in row.all("td"):
                check_cell(node, department["metrics"][row.attrs["data-metric"]][node.attrs["data-window"]]["score"])


def test_the_board_and_metric_page_link_each_department_and_cabinet(client):
    nav = parse(client.get("/").data).one("nav", cls="departments")
    links = {a.attrs["data-department"]: a.attrs["href"] for a in nav.all("a") if "data-department" in a.attrs}
    assert links == {d.id: f"/departments/{d.id}" for d in CATALOG.departments}
    assert [li.attrs["data-cabinet"] for li in nav.all("li") if "data-cabinet" in li.attrs] == [
        c.id for c in CATALOG.cabinets]
    metric_page = parse(client.get("/metric/pothole-on-time").data)
    assert any(a.attrs["href"] == "/departments/public-works" for a in metric_page.all("a"))
    # A past day's board links the department pages of that day.
    past = parse(client.get("/?as_of=2026-06-29").data).one("nav", cls="departments")
    assert any(a.attrs["href"] == "/departments/public-works?as_of=2026-06-29" for a in past.all("a"))


def test_unknown_departments_and_cabinets_and_bad_days_are_refused(client):
    assert client.get("/departments/sanitation").status_code == 404
    assert client.get("/cabinets/sanitation").status_code == 404
    refused = client.get("/v1/departments/sanitation")
    assert refused.status_code == 404 and refused.get_json() == {
        "error": "no department 'sanitation' in the Boston catalog"}
    assert client.get("/v1/cabinets/sanitation").get_json() == {"error": "no cabinet 'sanitation' in the Boston catalog"}
    bad = client.get("/v1/departments/public-works?as_of=2026-13-01")
    assert bad.status_code == 400 and bad.get_json()["errors"][0]["field"] == "as_of"
    assert client.get("/departments/public-works?as_of=2026-13-01").status_code == 400


def test_a_past_day_is_the_board_of_that_day(client):
    card = get_json(client, "/v1/departments/public-works?as_of=2026-06-29")
    board = get_json(client, "/v1/scoreboard?as_of=2026-06-29")
    assert card["as_of"] == "2026-06-29"
    assert card["metrics"]["pothole-on-time"] == board["metrics"]["pothole-on-time"]


def test_the_near_target_band_is_its_own_mark_on_the_pages(client, near_client):
    """With near_target 0.75, streetlight's 0.75 and pothole's week 0.80 read near target; the
    1.12 and a 1.00 are as before; without the band the same scores are below target."""
    def shown(c, path, metric, window):
        node = parse(c.get(path).data).one("td", data_metric=metric, data_window=window)
        return (node.classes & {"below", "near", "at", "above", "none"}).pop(), node.visible_text().split(), node.text()

    for path in ("/", "/departments/public-works"):
        assert shown(near_client, path, "streetlight-on-time", "day")[:2] == ("near", ["▽", "0.75"])
        assert "near target" in shown(near_client, path, "streetlight-on-time", "day")[2]
        assert shown(near_client, path, "pothole-on-time", "week")[:2] == ("near", ["▽", "0.80"])
        assert shown(near_client, path, "pothole-on-time", "day")[:2] == ("above", ["▲", "1.12"])
        assert shown(client, path, "streetlight-on-time", "day")[:2] == ("below", ["▼", "0.75"])
    legend = parse(near_client.get("/").data).one("ul", cls="legend").text()
    assert "near target (0.75 to 0.99)" in legend
    assert "near target" not in parse(client.get("/").data).one("ul", cls="legend").text()


def test_the_department_page_lists_its_open_actions_and_public_notes(client):
    card = get_json(client, "/v1/departments/public-works")
    # Open ones only, by due day; the closed one and Boston 311's are not Public Works' to do.
    assert [(a["metric"], a["owner"], a["text"], a["due"]) for a in card["actions"]] == [
        ("pothole-on-time", "U0CREW", "A second crew on nights", "2026-06-29"),
        ("streetlight-on-time", "U0OWNER", "Clear the Dorchester backlog", "2026-07-03")]
    # The page is public: the internal note stays off it.
    assert [(n["metric"], n["day"], n["text"]) for n in card["notes"]] == [
        ("pothole-on-time", "2026-06-26", "Snowstorm closed the depots")]
    page = parse(client.get("/departments/public-works").data)
    items = page.one("ul", cls="actions").all("li")
    assert [(li.attrs["data-metric"], li.attrs["data-due"]) for li in items] == [
        (a["metric"], a["due"]) for a in card["actions"]]
    # Due before the as-of day (30 June) and still open: overdue.
    assert "overdue" in items[0].text() and "overdue" not in items[1].text()
    assert [li.attrs["data-day"] for li in page.one("ul", cls="notes").all("li")] == ["2026-06-26"]
    assert "Crew lead out sick" not in client.get("/departments/public-works").data.decode()
    assert [a["text"] for a in get_json(client, "/v1/departments/boston-311")["actions"]] == ["Two more agents at lunch"]
    assert "No open follow-up action" in parse(client.get("/departments/police").data).one("p", data_actions="0").text()


def test_who_owns_what_is_named_only_where_the_city_says_so(client, public_client):
    """SCORER_SHOW_OWNERS unset (a public board): whether each alert is acknowledged and owned, never
    who; the actions without their owners. The figures are the same."""
    staff, public = get_json(client, "/v1/departments/public-works"), get_json(public_client, "/v1/departments/public-works")
    assert public["metrics"] == staff["metrics"] and public["notes"] == staff["notes"]
    assert public["alerts"] == [
        {"id": 1, "metric": "pothole-on-time", "kind": "follow-up", "window": "week", "status": "acknowledged",
         "score": 0.8036, "fired_at": "2026-06-29T13:00:00+00:00", "acknowledged": True, "owned": True},
        {"id": 2, "metric": "streetlight-on-time", "kind": "at risk", "window": "week", "status": "firing",
         "score": 1.02, "fired_at": "2026-06-29T15:00:00+00:00", "acknowledged": False, "owned": False}]
    assert [{k: v for k, v in a.items() if k != "owner"} for a in staff["actions"]] == public["actions"]
    html = public_client.get("/departments/public-works").data.decode()
    assert not any(who in html for who in ("U0OWNER", "U0LEAD", "U0CREW"))
    rows = parse(html.encode()).one("table", cls="alerts").one("tbody").all("tr")
    assert [r.attrs["data-owner"] for r in rows] == ["owned", ""]
    assert rows[0].all("td")[-1].text().strip() == "owned" and "no owner yet" in rows[1].text()
    assert "U0CALLS" not in public_client.get("/v1/cabinets/operations").data.decode()


def test_an_action_due_yesterday_is_overdue_on_the_page_and_in_the_json(due_yesterday_client):
    """Overdue is Action.overdue with the city's day now (1 July), as in the packet and `action list`:
    due on the board's day (30 June, yesterday) and still open is overdue; due today is not."""
    card = get_json(due_yesterday_client, "/v1/departments/boston-311")
    assert [(a["due"], a["overdue"]) for a in card["actions"]] == [("2026-06-30", True), ("2026-07-01", False)]
    items = parse(due_yesterday_client.get("/departments/boston-311").data).one("ul", cls="actions").all("li")
    assert ["overdue" in li.text() for li in items] == [True, False]


def test_a_departments_actions_are_those_of_its_metrics_in_the_catalog_now(moved_client):
    """As the packet picks actions by metric: an action stored under another department (its metric
    moved since) is on the page of the metric's department now, not of the one it was recorded for."""
    works = [a["text"] for a in get_json(moved_client, "/v1/departments/public-works")["actions"]]
    assert "Recorded before the metric moved" in works
    assert [a["text"] for a in get_json(moved_client, "/v1/departments/boston-311")["actions"]] == [
        "Two more agents at lunch"]
    assert "Recorded before the metric moved" in moved_client.get("/departments/public-works").data.decode()
