"""What `cityscore rebuild` checks before it forgets anything: does the topic still hold every event?"""

from __future__ import annotations

from services.scorer.replay import PartialHistory, missing_history

TOPIC = "cityscore.events"


def test_a_whole_topic_holding_at_least_what_was_folded_is_enough():
    # Duplicates and dead letters are messages that were never folded: more messages is normal.
    assert missing_history(TOPIC, {0: 0, 1: 0}, {0: 120, 1: 80}, folded=150) == []
    assert missing_history(TOPIC, {0: 0, 1: 0}, {0: 0, 1: 0}, folded=0) == []


def test_a_partition_whose_log_start_moved_lost_events_whatever_the_database_holds():
    reasons = missing_history(TOPIC, {0: 0, 1: 35, 2: 7}, {0: 10, 1: 40, 2: 7}, folded=0)
    assert reasons == [f"partition 1 of {TOPIC} starts at offset 35: its first 35 events were deleted "
                       "(by retention, or deleted records)",
                       f"partition 2 of {TOPIC} starts at offset 7: its first 7 events were deleted "
                       "(by retention, or deleted records)"]


def test_a_topic_whose_start_moved_holds_fewer_events_than_were_folded_and_that_is_the_reason_given():
    assert missing_history(TOPIC, {0: 0, 1: 15}, {0: 0, 1: 20}, folded=10) == [
        f"partition 1 of {TOPIC} starts at offset 15: its first 15 events were deleted "
        "(by retention, or deleted records)"]


def test_a_topic_holding_fewer_events_than_were_folded_was_made_again():
    assert missing_history(TOPIC, {0: 0, 1: 0}, {0: 3, 1: 2}, folded=6) == [
        f"the database folded 6 events but {TOPIC} holds 5 (was it deleted and made again?)"]
    # A topic that is gone altogether holds nothing.
    assert missing_history(TOPIC, {}, {}, folded=1) == [
        f"the database folded 1 events but {TOPIC} holds 0 (was it deleted and made again?)"]


def test_the_refusal_says_what_is_missing_and_how_to_go_on():
    message = str(PartialHistory(TOPIC, ["partition 1 of cityscore.events starts at offset 35: gone"]))
    assert "partition 1 of cityscore.events starts at offset 35" in message
    assert "--allow-partial-history" in message and "only what the topic still holds" in message
