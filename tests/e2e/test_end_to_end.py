"""The whole system end to end (issue 6): departments post over HTTP, scores and Slack come out.

All three services run as real processes (ingest under gunicorn, `cityscore scorer
run`, `cityscore notifier run`) with real Kafka, PostgreSQL and the fake Slack server
that slack-sdk reaches through its base_url. Three runs:

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
3. Trust (issue 13), ingest and the scorer only: two departments send the same
   event_id, and two the same case_id, and every one of them counts; the police
   withdraw and correct incidents; poison written straight to the events topic goes
   to the dead-letter topic. The scores equal the offline score of the accepted
   events that still count.

The runs use a database of their own (`cityscore_e2e` beside the one DATABASE_URL
names, created when missing) with a schema per run, and topics and consumer groups
of their own; the fault run has a broker of its own, on a port of its own.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta

import orjson
import pytest

from shared.platform.kafka import make_producer
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier import Schema

from tests.helpers.broker import kill_broker, start_broker_again
from tests.helpers.system import (CATALOG, MAYOR_CHANNEL, Departments, Pace, System, alert_problems, api_board,
                          consumer_lag, department_events, e2e_database_url, issue_keys, live_events, offline_board,
                          outbox_rows, page_cells, slack_alerts, write_events)
from tests.helpers.boards import board_differences
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(600)

# Every wait here may ask a broker or a service that a fault run has just killed: an error is "not yet".
ON_ITS_WAY_BACK = Exception


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
    wait_until(lambda: consumer_lag(system.bootstrap, system.topics.notifier_group, system.topics.scores) == 0,
               120, "the notifier to read every score change", problems=system.logs, retry_on=ON_ITS_WAY_BACK)

    def settled():
        rows = outbox_rows(engine)
        return rows and all(row.status in ("sent", "cancelled") for row in rows) and not alert_problems(slack, board)

    wait_until(settled, 120, "every Slack message to be sent and the alerts to match the scores",
               problems=lambda: "\n".join([f"outbox: {Counter(row.status for row in outbox_rows(engine))}",
                                           *alert_problems(slack, board), system.log_tail("notifier")]),
               retry_on=ON_ITS_WAY_BACK)


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

        wait_until(lambda: consumer_lag(kafka_bootstrap, system.topics.scorer_group, system.topics.events) == 0,
                   120, "the scorer to fold every event", problems=system.logs, retry_on=ON_ITS_WAY_BACK)
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
            wait_until(lambda: departments.accepted_count() >= share * step or departments.refusals(), 180,
                       f"{share * 10}% of the events to be accepted", problems=system.logs,
                       retry_on=ON_ITS_WAY_BACK)
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

        wait_until(lambda: consumer_lag(own_broker, system.topics.scorer_group, system.topics.events) == 0,
                   180, "the scorer to catch up", problems=system.logs, retry_on=ON_ITS_WAY_BACK)
        boards = assert_scores_equal_offline(system, accepted, tmp_path,
                                             (yesterday, yesterday - timedelta(days=12), today))
        settle_notifier(system, slack, e2e_schema.engine, boards[yesterday])
        assert_slack_saw_each_message_once(slack, e2e_schema.engine, yesterday)
        assert system.dead() == {}, system.logs()
    finally:
        departments.stop()
        system.stop()


# -- colliding ids, withdrawals, corrections and poison (issue 13) ---------------------------------

POISON_EVENTS_TOPIC_KEY = b"shootings"  # the partition the police's later shootings events take


def at_noon(day) -> str:
    return datetime(day.year, day.month, day.day, 12, 0, tzinfo=CATALOG.zone).isoformat()


def stamped(events: list[dict]) -> list[dict]:
    """The events as ingest wrote them to Kafka: with the department of the key that sent them (ingest
    refuses a metric of another department, so that is the metric's owner)."""
    return [{**event, "department": CATALOG.by_id[event["metric"]].department} for event in events]


def identity(event: dict) -> tuple[str, str]:
    return event["department"], event["event_id"]


def without(events: list[dict], *identities: tuple[str, str]) -> list[dict]:
    return [event for event in events if identity(event) not in identities]


def changed_metrics(tmp_path, events: list[dict], fewer: list[dict], as_of, name: str) -> set[str]:
    """The metrics whose scores as of `as_of` differ between `cityscore score` of the two lists."""
    whole = offline_board(write_events(events, tmp_path / f"{name}-whole.jsonl"), as_of)
    less = offline_board(write_events(fewer, tmp_path / f"{name}-less.jsonl"), as_of)
    return {difference.split()[0] for difference in board_differences(whole, less)} - {"cityscore"}


def test_colliding_ids_a_withdrawal_a_correction_and_poison_on_the_topic_leave_the_offline_scores(
        kafka_bootstrap, e2e_schema, slack, tmp_path):
    """Identity is (department, event_id) and (department, case_id), end to end.

    Public works and the police both send an event "dup-test-1" (a pothole case, a homicide);
    public works and transportation both send a case "101004242424" (a streetlight, a signal
    repair). Every one of them counts. The police then withdraw two incidents (their
    "dup-test-1" and a shooting dated 2012 by mistake, which had moved shootings' first day and
    so every baseline) and correct a shooting's count, after a poison message (invalid JSON, and
    an event with a NUL in its event_id) was written straight to the events topic. The scores
    equal `cityscore score` of the accepted events that still count, and the poison is in the
    dead-letter topic.
    """
    today, yesterday = local_days()
    background = department_events(3, 63, yesterday)
    colliding = [
        {"event_id": "dup-test-1", "type": "case", "metric": "pothole-on-time", "case_id": "101004240001",
         "opened_at": at_noon(yesterday - timedelta(days=2)), "closed_at": at_noon(yesterday)},
        {"event_id": "dup-test-1", "type": "incident", "metric": "homicides", "occurred_at": at_noon(yesterday)},
        {"event_id": "pwd-streetlight-4242", "type": "case", "metric": "streetlight-on-time",
         "case_id": "101004242424", "opened_at": at_noon(yesterday - timedelta(days=1)),
         "closed_at": at_noon(yesterday)},
        {"event_id": "btd-signal-4242", "type": "case", "metric": "signal-repair-on-time",
         "case_id": "101004242424", "opened_at": at_noon(yesterday - timedelta(days=40)),
         "closed_at": at_noon(yesterday)},
        {"event_id": "bpd-2012-typo", "type": "incident", "metric": "shootings",
         "occurred_at": "2012-03-14T02:00:00-04:00"},
        {"event_id": "bpd-count-typo", "type": "incident", "metric": "shootings",
         "occurred_at": at_noon(yesterday), "count": 5},
    ]
    system = System(kafka_bootstrap, e2e_schema.url, slack, tmp_path, partitions=3)
    keys = issue_keys(e2e_schema.engine)
    try:
        system.start_all(("ingest", "scorer"))

        # Both departments' "dup-test-1" and both "101004242424" cases get a 202 and count.
        first = Departments(system.ingest_url, keys, background + colliding).run()
        assert first.refusals() == []
        accepted = stamped(first.accepted())
        assert len(accepted) == len(background) + len(colliding)
        wait_until(lambda: consumer_lag(kafka_bootstrap, system.topics.scorer_group, system.topics.events) == 0,
                   120, "the scorer to fold every event", problems=system.logs, retry_on=ON_ITS_WAY_BACK)
        assert_scores_equal_offline(system, accepted, tmp_path, (yesterday,))
        # Each colliding event moves its own metric's scores: without it the offline scores differ,
        # so the scores above count both departments' events (one id per event dropped one of them).
        for gone, metric in [(("public-works", "dup-test-1"), "pothole-on-time"),
                             (("police", "dup-test-1"), "homicides"),
                             (("public-works", "pwd-streetlight-4242"), "streetlight-on-time"),
                             (("transportation", "btd-signal-4242"), "signal-repair-on-time"),
                             (("police", "bpd-2012-typo"), "shootings")]:
            assert changed_metrics(tmp_path, accepted, without(accepted, gone), yesterday, gone[1]) == {metric}, gone

        # Poison straight onto the events topic, on the partition the police's next events take.
        poison = [b'{"event_id": "bpd-poison-1", "type": "incident", "metric": "shoot',
                  orjson.dumps({"event_id": "bpd-\x00-poison", "type": "incident", "metric": "shootings",
                                "occurred_at": at_noon(yesterday), "department": "police"})]
        producer = make_producer(kafka_bootstrap, 30, client_id="e2e-poison")
        try:
            for value in poison:
                producer.send(system.topics.events, key=POISON_EVENTS_TOPIC_KEY, value=value).get(timeout=30)
        finally:
            producer.close(timeout=10)

        # The police take back what they sent by mistake (contract version 2): a withdrawal of
        # their "dup-test-1" (public works' stays) and of the shooting dated 2012, and a correction.
        amends = [
            {"event_id": "bpd-withdraw-dup", "type": "withdrawal", "metric": "homicides",
             "withdraws": "dup-test-1"},
            {"event_id": "bpd-withdraw-2012", "type": "withdrawal", "metric": "shootings",
             "withdraws": "bpd-2012-typo"},
            {"event_id": "bpd-count-fixed", "type": "incident", "metric": "shootings",
             "occurred_at": at_noon(yesterday), "count": 1, "replaces": "bpd-count-typo"},
        ]
        second = Departments(system.ingest_url, keys, amends).run()
        assert second.refusals() == []
        amended = stamped(second.accepted())
        assert len(amended) == len(amends)
        wait_until(lambda: consumer_lag(kafka_bootstrap, system.topics.scorer_group, system.topics.events) == 0,
                   120, "the scorer to fold the withdrawals and the correction", problems=system.logs,
                   retry_on=ON_ITS_WAY_BACK)

        counting = without(accepted, ("police", "dup-test-1"), ("police", "bpd-2012-typo"),
                           ("police", "bpd-count-typo")) + [e for e in amended if e["type"] != "withdrawal"]
        assert_scores_equal_offline(system, counting, tmp_path, (yesterday, today))
        # Offline, the withdrawals and the correction themselves come to the same scores.
        assert board_differences(offline_board(write_events(counting, tmp_path / "counting.jsonl"), yesterday),
                                 offline_board(write_events(accepted + amended, tmp_path / "all.jsonl"),
                                               yesterday)) == []

        from tests.integration.test_scorer import read_all

        letters = read_all(kafka_bootstrap, system.topics.dead_letters)
        # Each poison message is dead-lettered as it was written, with the field it breaks.
        assert {letter["value"]: [problem["field"] for problem in letter["problems"]] for letter in letters} == \
            {poison[0].decode(): [""], poison[1].decode(): ["event_id"]}, letters
        assert len(letters) == len(poison)
        for letter in letters:
            assert letter["topic"] == system.topics.events and letter["key"] == "shootings", letter
        assert system.dead() == {}, system.logs()
    finally:
        system.stop()
