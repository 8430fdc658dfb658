"""The SQL score store (the writer's folds, the reader's boards, the published scores) against the
in-memory Ledger: same events, same scores, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import date

import pytest
from sqlalchemy import func, select

from shared.core.catalog import load_catalog
from shared.core.contract import parse_event
from shared.core.folding import Ledger
from shared.dev.generator import generate
from shared.core.score_change import CITY
from shared.store.published_scores import PublishedScores
from shared.store.score_reader import ScoreReader
from shared.store.score_writer import ScoreWriter

from tests.helpers.boards import board_differences, same
from tests.helpers.ingest import fresh_database
from tests.helpers.score_parts import fold_batches
from tests.helpers.statements import statements_run

CATALOG = load_catalog()
END = date(2026, 6, 30)


@pytest.fixture(scope="module")
def generated():
    """120 days of events (and the trend history before them), in the order sent."""
    return [parse_event(e) for e in generate(CATALOG, 120, 11, END)]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/scores.db"
    else:
        url = request.getfixturevalue("database_url")
    engine = fresh_database(url)
    assert engine.dialect.name == request.param
    yield engine
    engine.dispose()


@pytest.fixture
def writer(engine):
    return ScoreWriter(engine, CATALOG)


@pytest.fixture
def reader(engine):
    return ScoreReader(engine, CATALOG)


@pytest.fixture
def published(reader):
    return PublishedScores(reader)


def test_store_scores_equal_the_ledger(writer, reader, generated):
    ledger = Ledger(CATALOG)
    for event in generated:
        ledger.fold(event)
    fold_batches(writer, generated, 4000, redeliver_every=3)
    for as_of in (END, date(2026, 5, 17), date(2026, 3, 9), date(2026, 3, 8)):
        assert board_differences(ledger.scoreboard(as_of), reader.scoreboard(as_of)) == []
    non_null = sum(1 for m in reader.scoreboard(END).metrics.values() if m["week"].score is not None)
    assert non_null >= 21


def test_a_claim_returns_the_ids_already_claimed_and_takes_an_id_given_twice_once(engine, writer):
    a, b, c = ("police", "a"), ("police", "b"), ("police", "c")
    with engine.begin() as conn:
        assert writer.claim(conn, [b, a, b]) == set()
    with engine.begin() as conn:
        assert writer.claim(conn, [c, a, b, c]) == {a, b}
    with engine.begin() as conn:
        assert writer.claim(conn, [c]) == {c}
    # The same id from another department is another event.
    with engine.begin() as conn:
        assert writer.claim(conn, [("public-works", "a"), a]) == {a}


def test_overlapping_batches_count_each_event_once(engine, writer, reader, generated):
    """Batches that partly repeat the one before (a crash half-way through a redelivery):
    only the new part of each batch counts."""
    ledger = Ledger(CATALOG)
    for event in generated:
        ledger.fold(event)
    size, step = 3000, 2000
    folded = 0
    for start in range(0, len(generated), step):
        with engine.begin() as conn:
            outcome = writer.fold(conn, generated[start:start + size])
        folded += outcome.folded
        if start:
            assert outcome.duplicates >= min(size - step, len(generated) - start)
    assert folded == len({event.event_id for event in generated})
    assert board_differences(ledger.scoreboard(END), reader.scoreboard(END)) == []


def test_history_matches_scoreboards(writer, reader, generated):
    fold_batches(writer, generated, 10000)
    series = reader.history("pothole-on-time", "week", 10, END)
    assert [d for d, _ in series][-1] == END and len(series) == 10
    for as_of, result in series[::3]:
        assert tuple(result) == tuple(reader.scoreboard(as_of).metrics["pothole-on-time"]["week"])


def test_rescore_publishes_only_changes_and_the_city(engine, writer, reader, published, generated):
    half = len(generated) // 2
    fold_batches(writer, generated[:half], 5000)
    with engine.begin() as conn:
        first = published.rescore(conn, END)
    windows = len(CATALOG.windows)
    assert len(first) == (len(CATALOG.metrics) + 1) * windows  # first run: everything is new
    with engine.begin() as conn:
        assert published.rescore(conn, END) == []  # nothing changed, nothing published
    tail = generated[half:]
    random.Random(3).shuffle(tail)  # late events too
    fold_batches(writer, tail, 5000)
    with engine.begin() as conn:
        changes = published.rescore(conn, END, ["pothole-on-time"])
    assert {c.metric for c in changes} <= {"pothole-on-time", CITY}
    assert any(c.metric == "pothole-on-time" for c in changes)
    with engine.connect() as conn:
        stored = reader.current(conn)
    for change in changes:  # what was published is what is stored now
        row = stored[(change.metric, change.window)]
        assert (row.score, row.as_of) == (change.score, change.as_of)
    with engine.connect() as conn:
        pending = published.pending_outbox(conn)
    assert len(pending) == len(first) + len(changes)


def test_scorers_rescoring_at_once_neither_fail_nor_leave_an_older_score(database_url, generated):
    """Two scorers (two connections) rescore together on PostgreSQL, as after a rebalance: the
    first scores of a fresh database are inserted once, and what stays is the latest."""
    import threading

    from sqlalchemy import delete

    from shared.store.tables.scorer import CurrentScore

    engine = fresh_database(database_url)
    writer, reader = ScoreWriter(engine, CATALOG), ScoreReader(engine, CATALOG)
    published = PublishedScores(reader)
    try:
        half = len(generated) // 2
        fold_batches(writer, generated[:half], 10000)
        for round_ in range(3):
            with engine.begin() as conn:
                conn.execute(delete(CurrentScore.__table__))
            barrier = threading.Barrier(2)
            errors = []

            def rescore():
                try:
                    with engine.begin() as conn:
                        barrier.wait(timeout=30)
                        published.rescore(conn, END)
                except Exception as exc:  # noqa: BLE001 - collected for the assertion
                    errors.append(exc)

            threads = [threading.Thread(target=rescore) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert errors == [], (round_, errors)
        # A batch lands between two rescores: the stored scores are those of all the events.
        fold_batches(writer, generated[half:], 10000)
        with engine.begin() as conn:
            published.rescore(conn, END)
        with engine.connect() as conn:
            stored = reader.current(conn)
        board = reader.scoreboard(END)
        for metric, windows in board.metrics.items():
            for window, result in windows.items():
                assert same(stored[(metric, window)].score, result.score), (metric, window)
    finally:
        engine.dispose()


def test_a_claim_racing_another_scorers_transaction_is_run_again_and_counts_each_event_once(database_url, generated):
    """Two scorers in a rebalance fold overlapping batches at once. The second one's claim
    waits for the first transaction's index entries; when that commits, the claim fails
    with a duplicate key and the scorer runs its transaction again, now folding only the
    events the first did not."""
    import threading

    from services.scorer.consumer import Scorer
    from services.scorer.settings import ScorerSettings

    engine = fresh_database(database_url)
    writer, reader = ScoreWriter(engine, CATALOG), ScoreReader(engine, CATALOG)
    scorer = Scorer(ScorerSettings(), writer, PublishedScores(reader), CATALOG)
    try:
        first, second = generated[:3000], generated[2000:5000]  # 1,000 events in both
        outcomes, errors = [], []
        with engine.begin() as conn:
            writer.fold(conn, first)  # holds its claim until this block commits

            def fold_second():
                try:
                    outcomes.append(scorer._in_transaction(lambda c: writer.fold(c, second)))
                except Exception as exc:  # noqa: BLE001 - collected for the assertion
                    errors.append(exc)

            racing = threading.Thread(target=fold_second)
            racing.start()
            racing.join(1.0)
            assert racing.is_alive(), "the second claim should wait for the first transaction"
        racing.join(60)
        assert errors == []
        assert outcomes[0].folded == 2000 and outcomes[0].duplicates == 1000
        ledger = Ledger(CATALOG)
        for event in generated[:5000]:
            ledger.fold(event)
        assert board_differences(ledger.scoreboard(END), reader.scoreboard(END)) == []
    finally:
        scorer.close()
        engine.dispose()


def corrections_mixed_into(generated, seed):
    """The generated stream with what careless departments send: another department's ids,
    withdrawals and corrections of events before them, after them (in this batch or a later
    one) and of events that never come, and resends of all of these."""
    rng = random.Random(seed)
    mixed = []
    sent = []
    owner = {m.id: m.department for m in CATALOG.metrics}
    for number, event in enumerate(generated):
        mixed.append(event)
        sent.append(event)
        roll = rng.random()
        if roll < 0.01:  # the same id from another department, which must count too
            other = rng.choice([m for m in CATALOG.metrics if m.department != owner[event.metric]
                                and m.feed.value in ("values", "incidents")])
            if other.feed.value == "incidents":
                raw = {"event_id": event.event_id, "type": "incident", "metric": other.id,
                       "occurred_at": "2026-06-20T12:00:00-04:00"}
            else:
                raw = {"event_id": event.event_id, "type": "measurement", "metric": other.id,
                       "occurred_at": "2026-06-20T12:00:00-04:00", "value": 4.5}
            mixed.append(parse_event(raw))
        elif roll < 0.02:  # withdraw an earlier event (or, sometimes, one still to come or never sent)
            target = rng.choice(sent[-3000:]).event_id if rng.random() < 0.8 else f"never-{number}"
            if rng.random() < 0.3 and number + 50 < len(generated):
                target = generated[number + rng.randint(1, 50)].event_id
            metric = next(e.metric for e in sent if e.event_id == target) if any(
                e.event_id == target for e in sent[-3000:]) else event.metric
            mixed.append(parse_event({"event_id": f"w-{number}", "type": "withdrawal", "metric": metric,
                                      "withdraws": target}))
        elif roll < 0.025 and event.type in ("incident", "measurement"):  # a correction of this one
            raw = event.model_dump(mode="json", exclude_none=True)
            raw.update(event_id=f"fix-{number}", replaces=event.event_id)
            if event.type == "incident":
                raw["count"] = event.count + 1
            mixed.append(parse_event(raw))
        if rng.random() < 0.005:
            mixed.append(rng.choice(mixed[-100:]))  # a resend of something recent
    return mixed


@pytest.mark.parametrize("batch_size", [11, 2500])
def test_withdrawals_corrections_and_colliding_ids_score_as_the_ledger(engine, writer, reader, generated,
                                                                        batch_size):
    # The stream's last part (the whole is folded by the test above): small batches, one
    # transaction each, take less of it.
    events = corrections_mixed_into(generated[-(3000 if batch_size < 100 else 60000):], seed=batch_size)
    assert sum(e.type == "withdrawal" for e in events) > 20
    ledger = Ledger(CATALOG)
    for event in events:
        ledger.fold(event)
    assert ledger.withdrawn > 15
    fold_batches(writer, events, batch_size, redeliver_every=5)
    for as_of in (END, date(2026, 5, 17), date(2026, 3, 8)):
        assert board_differences(ledger.scoreboard(as_of), reader.scoreboard(as_of)) == []
    with engine.connect() as conn:
        assert reader.first_days(conn) == ledger.first_day


def test_a_withdrawn_incident_far_back_moves_the_first_day_back_in_the_store(engine, writer, reader):
    events = [parse_event({"event_id": f"s{year}", "type": "incident", "metric": "shootings",
                           "occurred_at": f"{year}-06-01T12:00:00-04:00"}) for year in range(2022, 2027)]
    typo = parse_event({"event_id": "typo", "type": "incident", "metric": "shootings",
                        "occurred_at": "2011-06-01T12:00:00-04:00"})
    with engine.begin() as conn:
        writer.fold(conn, events + [typo])
    with engine.connect() as conn:
        assert reader.first_days(conn)["shootings"] == date(2011, 6, 1)
    with engine.begin() as conn:
        writer.fold(conn, [parse_event({"event_id": "w", "type": "withdrawal", "metric": "shootings",
                                       "withdraws": "typo"})])
    with engine.connect() as conn:
        assert reader.first_days(conn)["shootings"] == date(2022, 6, 1)
    ledger = Ledger(CATALOG)
    for event in events:
        ledger.fold(event)
    assert board_differences(ledger.scoreboard(END), reader.scoreboard(END)) == []


def test_an_event_id_folded_before_identities_were_per_department_is_still_a_duplicate(engine, writer, reader):
    """Migration 0005 gives the rows it carries over department '': they stand for every department,
    so resending an old event changes nothing, and withdrawing one (it kept no record) neither."""
    from shared.store.tables.scorer import ProcessedEvent

    with engine.begin() as conn:
        conn.execute(ProcessedEvent.__table__.insert(), [{"department": "", "event_id": "old-1"}])
    old = parse_event({"event_id": "old-1", "type": "incident", "metric": "shootings",
                       "occurred_at": "2026-06-01T12:00:00-04:00"})
    withdrawal = parse_event({"event_id": "w-old", "type": "withdrawal", "metric": "shootings", "withdraws": "old-1"})
    with engine.begin() as conn:
        outcome = writer.fold(conn, [old, withdrawal])
    assert (outcome.folded, outcome.duplicates, outcome.withdrawn) == (1, 1, 0)
    with engine.connect() as conn:
        assert reader.first_days(conn) == {}
        assert conn.scalar(select(func.count()).select_from(ProcessedEvent)) == 2  # no tombstone beside the old row


def test_the_claim_keeps_what_each_measurement_counts_to_the_last_bit(engine, writer):
    """processed_events keeps each measurement's value as folded, to take it back exactly: the rows
    go to PostgreSQL as JSON text, and a negative zero or a float's last digit must come back the same."""
    import struct

    from shared.store.tables.scorer import ProcessedEvent

    values = [0.1 + 0.2, 1e-7, 123456789.12345679, 5e-324, 0.0]
    if engine.dialect.name == "postgresql":
        values.append(-0.0)  # (SQLite itself stores a negative zero as 0)
    events = [parse_event({"event_id": f"ems-{at}", "type": "measurement", "metric": "ems-response-time",
                           "occurred_at": "2026-06-01T12:00:00-04:00", "value": value})
              for at, value in enumerate(values)]
    with engine.begin() as conn:
        writer.fold(conn, events)
    table = ProcessedEvent.__table__
    with engine.connect() as conn:
        kept = dict(conn.execute(select(table.c.event_id, table.c.value)).all())
    assert [struct.pack("<d", kept[f"ems-{at}"]) for at in range(len(values))] == [
        struct.pack("<d", value) for value in values]


def test_past_boards_read_as_arrays_equal_the_row_by_row_reads_exactly(database_url, generated):
    """PostgreSQL reads a past board's day totals and measurements as arrays (the fast path of the
    date picker); the boards must be exactly those of the plain row-by-row reads, on every date
    (corrections and withdrawals included), not merely close."""
    from datetime import timedelta

    from shared.store.bulk_sql import PortableReads, PostgresBulkSQL

    engine = fresh_database(database_url)
    try:
        writer = ScoreWriter(engine, CATALOG)
        events = generated[:-60000] + corrections_mixed_into(generated[-60000:], seed=5)
        fold_batches(writer, events, 5000)
        class RowByRow(PostgresBulkSQL):
            day_totals = PortableReads.day_totals
            measurement_values = PortableReads.measurement_values

        fast = ScoreReader(engine, CATALOG)
        rows = ScoreReader(engine, CATALOG, sql=RowByRow())
        assert isinstance(fast.sql, PostgresBulkSQL)
        with engine.connect() as conn:
            first = min(rows.first_days(conn).values())
        # Every day an event was withdrawn or corrected from, beside every fourth day of the history.
        taken_back = {e.withdraws if e.type == "withdrawal" else e.replaces for e in events
                      if e.type == "withdrawal" or e.replaces is not None}
        changed_days = {e.occurred_at.astimezone(CATALOG.zone).date() for e in events
                        if e.event_id in taken_back and getattr(e, "occurred_at", None) is not None}
        assert len(changed_days) > 20
        dates = {first + timedelta(days=n) for n in range(0, (END - first).days + 1, 4)} | changed_days | {END}
        assert len(dates) > 250
        for as_of in sorted(dates):
            assert fast.scoreboard(as_of) == rows.scoreboard(as_of), as_of
        for metric in ("shootings", "ems-response-time", "pothole-on-time"):
            assert fast.history(metric, "month", 120, END) == rows.history(metric, "month", 120, END)
    finally:
        engine.dispose()


# -- a reader keeps the day totals it read while the change log allows (shared/store/kept_days.py)

PAST = (END, date(2026, 5, 17), date(2026, 3, 8))


def incident(event_id: str, metric: str, day: str, **more) -> object:
    return parse_event({"event_id": event_id, "type": "incident", "metric": metric,
                        "occurred_at": f"{day}T12:00:00-04:00", **more})


def fold_both(engine, writer, ledger, events):
    with engine.begin() as conn:
        writer.fold(conn, events)
    for event in events:
        ledger.fold(event)


def test_a_reader_that_kept_past_boards_scores_every_later_fold_withdrawal_and_correction(engine, writer, reader,
                                                                                           generated):
    events = corrections_mixed_into(generated[-16000:], seed=7)
    ledger = Ledger(CATALOG)
    fold_batches(writer, events[:8000], 4000)
    for event in events[:8000]:
        ledger.fold(event)
    for as_of in PAST:
        assert board_differences(ledger.scoreboard(as_of), reader.scoreboard(as_of)) == []  # now kept
    before = {as_of: ledger.scoreboard(as_of) for as_of in PAST}
    late = [incident("late-1", "shootings", "2026-03-07"), incident("late-2", "homicides", "2026-05-16"),
            parse_event({"event_id": "late-3", "type": "measurement", "metric": "ems-response-time",
                         "occurred_at": "2026-05-15T12:00:00-04:00", "value": 1.5})]
    rest = events[8000:] + late + [
        parse_event({"event_id": "w-late-1", "type": "withdrawal", "metric": "shootings", "withdraws": "late-2"}),
        incident("late-2-fixed", "homicides", "2026-05-16", count=3, replaces="late-2")]
    for start in range(0, len(rest), 2000):
        fold_both(engine, writer, ledger, rest[start:start + 2000])
        for as_of in PAST:
            assert board_differences(ledger.scoreboard(as_of), reader.scoreboard(as_of)) == []
    # Every past board moved: had the reader served what it kept, it would differ.
    assert all(board_differences(before[as_of], ledger.scoreboard(as_of)) for as_of in PAST)


def test_a_reader_reads_no_day_totals_for_days_it_kept_until_a_fold_changes_one(engine, writer, reader, generated):
    fold_batches(writer, generated[-12000:], 4000)
    reader.scoreboard(date(2026, 5, 17))
    with statements_run(engine) as ran:
        warm = reader.scoreboard(date(2026, 5, 17))
    assert any("day_changes" in statement for statement in ran)
    assert not [s for s in ran if "day_totals" in s or "measurement_values" in s]
    ledger = Ledger(CATALOG)
    for event in generated[-12000:]:
        ledger.fold(event)
    fold_both(engine, writer, ledger, [incident("late-1", "stabbings", "2026-05-12")])
    with statements_run(engine) as ran:
        board = reader.scoreboard(date(2026, 5, 17))
    assert [s for s in ran if "FROM day_totals" in s]  # the changed day's span, read again
    assert board_differences(warm, board)  # stabbings' day count moved
    assert board_differences(ledger.scoreboard(date(2026, 5, 17)), board) == []


def test_a_rebuild_or_replay_makes_a_reader_read_everything_again(engine, writer, reader, generated):
    from services.scorer.rebuild import forget

    fold_batches(writer, generated[-12000:], 4000)
    for as_of in PAST:
        reader.scoreboard(as_of)
    with engine.begin() as conn:
        forget(conn, writer)  # rebuild's: TRUNCATE on PostgreSQL, the writer's reset (a replay's) on SQLite
    again = generated[-12000:-6000]  # days the first folds filled are now empty
    fold_batches(writer, again, 3000)
    ledger = Ledger(CATALOG)
    for event in again:
        ledger.fold(event)
    for as_of in PAST:
        assert board_differences(ledger.scoreboard(as_of), reader.scoreboard(as_of)) == []


def test_a_reader_whose_missed_versions_were_purged_from_the_log_reads_everything_again(engine, writer, reader,
                                                                                        monkeypatch):
    import shared.store.score_writer as score_writer

    monkeypatch.setattr(score_writer, "CHANGES_KEPT", 2)
    monkeypatch.setattr(score_writer, "PURGE_EVERY", 1)
    ledger = Ledger(CATALOG)
    fold_both(engine, writer, ledger, [incident(f"s{year}", "shootings", f"{year}-06-29") for year in (2024, 2025)]
              + [incident("s-now", "shootings", "2026-06-28")])
    reader.scoreboard(END)  # kept, at this version
    fold_both(engine, writer, ledger, [incident("s-late", "shootings", "2026-06-29")])  # a day the reader kept
    for number in range(3):  # three more folds elsewhere: the late one's version is purged
        fold_both(engine, writer, ledger, [incident(f"h{number}", "homicides", f"2026-04-0{number + 1}")])
    with engine.connect() as conn:
        versions = conn.execute(select(func.min(score_writer.DayChange.version))).scalar()
    assert versions > 3  # the log lost the late incident's version
    assert board_differences(ledger.scoreboard(END), reader.scoreboard(END)) == []


def test_a_rescore_in_a_fold_that_rolls_back_leaves_nothing_for_a_reader_to_serve(engine, writer, reader, published):
    """The scorer's rescore reads in its fold's transaction; had it kept what it read, a board
    served after that transaction rolled back would count the events it never committed."""
    ledger = Ledger(CATALOG)
    fold_both(engine, writer, ledger, [incident(f"s{year}", "shootings", f"{year}-06-29") for year in (2024, 2025)]
              + [incident("s-now", "shootings", "2026-06-28")])
    reader.scoreboard(END)
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            writer.fold(conn, [incident("never", "shootings", "2026-06-29", count=40)])
            published.rescore(conn, END)
            raise RuntimeError("the batch's transaction fails after its rescore")
    # The next fold commits under the version number the rolled-back one had taken.
    fold_both(engine, writer, ledger, [incident("s-next", "shootings", "2026-06-27")])
    assert board_differences(ledger.scoreboard(END), reader.scoreboard(END)) == []


def measurement(event_id: str, day: date, value: float) -> object:
    return parse_event({"event_id": event_id, "type": "measurement", "metric": "ems-response-time",
                        "occurred_at": f"{day.isoformat()}T12:00:00-04:00", "value": value})


def test_a_median_s_measurements_read_in_two_runs_that_meet_count_once(engine, writer, reader):
    """A late measurement leaves one day unread beside a long run of days never read: the long
    run, widened, covers that day, and its measurements must be read once, not twice."""
    from datetime import timedelta

    ledger = Ledger(CATALOG)
    fold_both(engine, writer, ledger, [measurement(f"m{n}-{k}", END - timedelta(days=n), 5.0 + (n * 7 + k) % 11)
                                       for n in range(120) for k in range(3)])
    reader.scoreboard(END - timedelta(days=200))  # keeps days up to about END - 17
    fold_both(engine, writer, ledger, [measurement(f"late-{k}", END - timedelta(days=18), 30.0) for k in range(30)])
    for as_of in (END, END - timedelta(days=18)):
        assert board_differences(ledger.scoreboard(as_of), reader.scoreboard(as_of)) == []


def test_a_reader_past_its_bound_starts_afresh_and_still_scores_every_day(engine, writer, reader, generated,
                                                                         monkeypatch):
    import shared.store.kept_days as kept_days

    events = generated[-12000:]
    fold_batches(writer, events, 4000)
    ledger = Ledger(CATALOG)
    for event in events:
        ledger.fold(event)
    for as_of in PAST:
        reader.scoreboard(as_of)
    monkeypatch.setattr(kept_days, "MAX_KEPT_DAYS", 10)  # what is kept is now past the bound
    # One day to read again, among many kept: the board must still have them all.
    fold_both(engine, writer, ledger, [incident("late-1", "shootings", "2026-06-27")])
    for as_of in PAST:
        assert board_differences(ledger.scoreboard(as_of), reader.scoreboard(as_of)) == []
