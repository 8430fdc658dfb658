"""The whole system end to end (issue 6): departments post over HTTP, scores and Slack come out.

All three services run as real processes (ingest under gunicorn, `cityscore scorer
run`, `cityscore notifier run`) with real Kafka, PostgreSQL and the fake Slack server
that slack-sdk reaches through its base_url. Two runs:

1. A clean run: the departments post a month of generated events and some live ones;
   the read API equals the offline `cityscore score` of every event that got a 202,
   for several days; the board page shows the same figures; the notifier, started
   after the board time, posts the day's board with those scores and an alert for
   each metric below 1.
2. The same with faults: ingest, the scorer, the notifier and the Kafka broker are
   each killed with SIGKILL once while the departments are posting, and started
   again. The departments retry what was refused; in the end the scores still equal
   the offline score of everything that got a 202, and Slack saw every message
   exactly once.

The runs use a database of their own (`cityscore_e2e` beside the one DATABASE_URL
names, created when missing) with a schema per run, and topics and consumer groups
of their own; the fault run has a broker of its own, on a port of its own.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta

import pytest

from tests.fakeslack import FakeSlack
from tests.fakeslack.notifier_support import Schema

from .broker_support import kill_broker, start_broker_again
from .e2e_support import (CATALOG, MAYOR_CHANNEL, Departments, Pace, System, alert_problems, api_board,
                          consumer_lag, department_events, e2e_database_url, issue_keys, live_events, offline_board,
                          outbox_rows, page_cells, slack_alerts, wait_for, write_events)
from .scorer_support import board_differences

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def e2e_url(database_url):
    return e2e_database_url(database_url)


@pytest.fixture
def e2e_schema(e2e_url):
    created = Schema(e2e_url)
    try:
        yield created
    finally:
        created.drop()


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def local_days():
    today = datetime.now(CATALOG.zone).date()
    return today, today - timedelta(days=1)


def assert_scores_equal_offline(system: System, accepted: list[dict], tmp_path, days) -> dict:
    """The read API against `cityscore score` of every accepted event, for each day; returns the boards."""
    events_file = write_events(accepted, tmp_path / "accepted.jsonl")
    boards = {}
    for as_of in days:
        expected = offline_board(events_file, as_of)
        actual = api_board(system.scorer_url, as_of)
        differences = board_differences(expected, actual)
        assert differences == [], f"as of {as_of}: {len(differences)} differences, e.g. {differences[:10]}"
        assert set(actual["metrics"]) == set(expected["metrics"]) == {m.id for m in CATALOG.metrics}
        boards[as_of] = expected
    return boards


def settle_notifier(system: System, slack, engine, board: dict) -> None:
    """Wait until the notifier has read every score change and Slack shows the final alerts."""
    wait_for(lambda: consumer_lag(system.bootstrap, system.topics.notifier_group, system.topics.scores) == 0,
             120, "the notifier to read every score change", problems=system.logs)

    def settled():
        rows = outbox_rows(engine)
        return rows and all(row.status in ("sent", "cancelled") for row in rows) and not alert_problems(slack, board)

    wait_for(settled, 120, "every Slack message to be sent and the alerts to match the scores",
             problems=lambda: "\n".join([f"outbox: {Counter(row.status for row in outbox_rows(engine))}",
                                         *alert_problems(slack, board), system.log_tail("notifier")]))


def assert_slack_saw_each_message_once(slack, engine, as_of) -> dict:
    """No message twice, every message the outbox sent is in Slack, the board and its chart once; the board."""
    counts = Counter(slack.outbox_keys())
    assert [key for key, n in counts.items() if n > 1] == [], "messages posted twice"
    rows = outbox_rows(engine)
    assert [row for row in rows if row.status == "failed"] == []
    assert set(counts) == {row.key for row in rows if row.kind == "post" and row.status == "sent"}

    board_key = f"board:{MAYOR_CHANNEL}:{as_of.isoformat()}"
    assert counts[board_key] == 1, f"the daily board {board_key} is not in Slack: {sorted(counts)[:20]}"
    boards = [m for m in slack.messages(MAYOR_CHANNEL) if m["metadata"]["event_payload"]["key"] == board_key]
    charts = [m for m in slack.thread(MAYOR_CHANNEL, boards[0]["ts"]) if m.get("files")]
    assert len(charts) == 1, "the board's chart is not in its thread exactly once"
    assert slack_alerts(slack), "no follow-up alert reached Slack"
    return boards[0]


def test_departments_post_and_the_scores_page_alerts_and_board_come_out(kafka_bootstrap, e2e_schema, slack,
                                                                          tmp_path):
    today, yesterday = local_days()
    events = department_events(35, 61, yesterday)
    live = live_events(150, 61)
    system = System(kafka_bootstrap, e2e_schema.url, slack, tmp_path)
    keys = issue_keys(e2e_schema.engine)
    try:
        system.start_all(("ingest", "scorer"))
        backfill = Departments(system.ingest_url, keys, events).run()
        now = Departments(system.ingest_url, keys, live).run()
        assert backfill.refusals() + now.refusals() == []
        assert sum(backfill.retries().values()) + sum(now.retries().values()) == 0
        accepted = backfill.accepted() + now.accepted()
        assert len(accepted) == len(events) + len(live)

        wait_for(lambda: consumer_lag(kafka_bootstrap, system.topics.scorer_group, system.topics.events) == 0,
                 120, "the scorer to fold every event", problems=system.logs)
        boards = assert_scores_equal_offline(system, accepted, tmp_path,
                                             (yesterday, yesterday - timedelta(days=12), today))

        # The public board shows the API's figures, to full precision in data-score.
        board = api_board(system.scorer_url, yesterday)
        cells, shown = page_cells(system.scorer_url, yesterday)
        for metric, windows in board["metrics"].items():
            for window in CATALOG.windows:
                score = windows[window]["score"]
                assert cells[(metric, window)] == ("" if score is None else repr(score)), (metric, window)
                if score is not None:
                    assert shown[(metric, window)] == f"{score:.2f}", (metric, window)
        for window, score in board["cityscore"].items():
            assert cells[("cityscore", window)] == ("" if score is None else repr(score)), window
        scored = sum(1 for windows in board["metrics"].values() for w in CATALOG.windows if windows[w]["score"])
        assert scored >= 3 * len(CATALOG.metrics), "too few scores to say anything"

        # The notifier comes up after the board time: it posts the day's board, then alerts.
        system.start("notifier")
        settle_notifier(system, slack, e2e_schema.engine, boards[yesterday])
        posted = assert_slack_saw_each_message_once(slack, e2e_schema.engine, yesterday)
        for window, score in board["cityscore"].items():
            assert f"{window.title()} {score:.2f}" in posted["text"], (window, posted["text"])
        assert system.dead() == {}, system.logs()
    finally:
        system.stop()


def test_each_service_and_the_broker_killed_mid_stream_lose_nothing_and_post_nothing_twice(own_broker, e2e_schema,
                                                                                            slack, tmp_path):
    today, yesterday = local_days()
    events = department_events(30, 62, yesterday) + live_events(150, 62)
    # Clients that try the broker again every 20 ms meet, in every outage, the error kafka-python
    # raises out of poll() when a coordinator lookup and the metadata request after it both fail
    # to connect; with the default backoff they meet it only now and then.
    system = System(own_broker, e2e_schema.url, slack, tmp_path, extra_env={"KAFKA_RECONNECT_BACKOFF_MAX_MS": "20"})
    keys = issue_keys(e2e_schema.engine)
    pace = Pace(per_second=400)  # slow enough that every fault lands while events are still coming
    departments = Departments(system.ingest_url, keys, events, batch_size=100, pace=pace)
    try:
        system.start_all()
        departments.start()
        step = len(events) // 10

        def after(share: int) -> None:
            wait_for(lambda: departments.accepted_count() >= share * step or departments.refusals(), 180,
                     f"{share * 10}% of the events to be accepted", problems=system.logs)
            assert departments.refusals() == []

        after(1)
        system.restart("ingest")
        after(2)
        system.restart("scorer")
        after(3)
        system.restart("notifier")
        after(4)
        kill_broker()
        time.sleep(2)  # the departments meet a service without its event log
        start_broker_again()
        pace.release()
        departments.join(300)

        assert departments.refusals() == []
        retries = departments.retries()
        assert retries["503"] > 0, f"the broker outage refused nothing: {retries}"
        assert sum(n for reason, n in retries.items() if reason != "503") > 0, \
            f"killing ingest broke no request: {retries}"
        assert dict(system.kills) == {"ingest": 1, "scorer": 1, "notifier": 1}
        assert system.dead() == {}, f"a service died on its own: {system.dead()}\n{system.logs()}"
        accepted = departments.accepted()
        assert len(accepted) == len(events)

        wait_for(lambda: consumer_lag(own_broker, system.topics.scorer_group, system.topics.events) == 0,
                 180, "the scorer to catch up", problems=system.logs)
        boards = assert_scores_equal_offline(system, accepted, tmp_path,
                                             (yesterday, yesterday - timedelta(days=12), today))
        settle_notifier(system, slack, e2e_schema.engine, boards[yesterday])
        assert_slack_saw_each_message_once(slack, e2e_schema.engine, yesterday)
        assert system.dead() == {}, system.logs()
    finally:
        departments.stop()
        system.stop()
