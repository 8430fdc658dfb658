"""Score changes are ordered by the sequence the scorer assigns, not by the scorers' clocks.

Two scorers' clocks can disagree by seconds; the notifier must still keep the change
whose rescore committed last. The scorer numbers each change with its outbox row's id
(assigned inside the rescore, which runs one at a time), and the notifier supersedes
by that number.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import orjson
import pytest
from sqlalchemy import select

from shared.store.tables.notifier import AlertTrack
from shared.core.catalog import load_catalog
from shared.store.engine import make_engine, migrate
from shared.core.score_change import ScoreChange
from shared.store.published_scores import PublishedScores
from shared.store.score_reader import ScoreReader
from tests.fakes.slack import FakeSlack
from tests.helpers.notifier_harness import Harness, notifier_settings
from tests.helpers.notifier import seed_scores

AS_OF = date(2026, 7, 23)


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def change(score: float, *, seq: int | None, changed_at: datetime, metric: str = "pothole-on-time") -> dict:
    body = {"metric": metric, "window": "week", "as_of": AS_OF.isoformat(), "score": score,
            "numerator": score * 60, "denominator": 60.0, "previous_score": None,
            "changed_at": changed_at.isoformat()}
    if seq is not None:
        body["seq"] = seq
    return body


def track(engine, metric: str = "pothole-on-time"):
    with engine.connect() as conn:
        return conn.execute(select(AlertTrack.__table__).where(AlertTrack.metric == metric,
                                                               AlertTrack.window == "week")).one()


# The scorer that committed later (sequence 8) had a clock a minute behind the other's (sequence 7).
LATE_CLOCK = datetime(2026, 7, 24, 8, 0, tzinfo=timezone.utc)
EARLY_CLOCK = LATE_CLOCK - timedelta(minutes=1)


@pytest.mark.parametrize("order", ["in sequence order", "in reverse"])
def test_the_notifier_keeps_the_later_sequence_whatever_the_clocks_say(schema, slack, tmp_path, order):
    harness = Harness(schema, notifier_settings(tmp_path, slack))
    earlier = change(0.71, seq=7, changed_at=LATE_CLOCK)
    later = change(0.93, seq=8, changed_at=EARLY_CLOCK)
    for payload in ([earlier, later] if order == "in sequence order" else [later, earlier]):
        harness.notifier.handle_changes([payload])
    kept = track(schema.engine)
    assert kept.score == 0.93
    assert kept.seq == 8
    # the same change delivered again changes nothing
    assert harness.notifier.handle_changes([later]) == 0


def test_changes_without_a_sequence_are_still_ordered_by_their_clocks(schema, slack, tmp_path):
    harness = Harness(schema, notifier_settings(tmp_path, slack))
    newer = change(0.93, seq=None, changed_at=LATE_CLOCK)
    older = change(0.71, seq=None, changed_at=EARLY_CLOCK)
    assert harness.notifier.handle_changes([newer]) == 1
    assert harness.notifier.handle_changes([older]) == 0
    assert track(schema.engine).score == 0.93
    # the first change with a sequence after an unsequenced one is compared by its clock too
    assert harness.notifier.handle_changes([change(0.5, seq=3, changed_at=EARLY_CLOCK)]) == 0
    assert harness.notifier.handle_changes([change(0.6, seq=4, changed_at=LATE_CLOCK + timedelta(seconds=1))]) == 1
    assert harness.notifier.handle_changes([change(0.8, seq=5, changed_at=EARLY_CLOCK)]) == 1
    assert (track(schema.engine).score, track(schema.engine).seq) == (0.8, 5)


def test_a_sequence_that_is_not_a_positive_integer_is_refused_with_its_field():
    base = change(0.9, seq=None, changed_at=LATE_CLOCK)
    for bad in (0, -3, 1.5, "7", True):
        with pytest.raises(ValueError, match="seq"):
            ScoreChange.from_payload({**base, "seq": bad})
    assert ScoreChange.from_payload({**base, "seq": 12}).seq == 12
    assert ScoreChange.from_payload(base).seq is None


def published(store: PublishedScores) -> list[dict]:
    with store.reader.engine.begin() as conn:
        pending = store.pending_outbox(conn)
        store.clear_outbox(conn, [row_id for row_id, _, _ in pending])
    return [orjson.loads(payload) for _, _, payload in pending]


def rescore_twice_and_publish(engine) -> tuple[list[dict], list[dict]]:
    catalog = load_catalog()
    store = PublishedScores(ScoreReader(engine, catalog))
    seed_scores(engine, catalog, AS_OF, days=40, years_of_history=0)
    with engine.begin() as conn:
        store.rescore(conn, AS_OF - timedelta(days=1))
    first = published(store)  # the outbox is now empty
    with engine.begin() as conn:
        store.rescore(conn, AS_OF)
    return first, published(store)


def check_sequences(first: list[dict], second: list[dict]) -> None:
    assert first and second
    for batch in (first, second):
        sequences = [payload["seq"] for payload in batch]
        assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
        for payload in batch:  # what the notifier reads back
            assert ScoreChange.from_payload(payload).seq == payload["seq"]
    # a later rescore's changes come after every earlier one's, even once the outbox was emptied
    assert min(p["seq"] for p in second) > max(p["seq"] for p in first)


def test_published_changes_carry_an_increasing_sequence_on_sqlite(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/scores.db")
    migrate(engine)
    try:
        check_sequences(*rescore_twice_and_publish(engine))
    finally:
        engine.dispose()


def test_published_changes_carry_an_increasing_sequence_on_postgresql(schema):
    check_sequences(*rescore_twice_and_publish(schema.engine))
