"""The alert lifecycle rules: flap damping, one alert, resolve, reminders, quiet hours."""

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from services.notifier.lifecycle import (
    AlertClock, Policy, QuietHours, Status, Streak, Transition, acknowledge, evaluate, reminder_due, thread_note,
)

BOSTON = ZoneInfo("America/New_York")
POLICY = Policy(fire_after=2, resolve_after=2, repeat_interval=timedelta(hours=4),
                quiet=QuietHours(time(20), time(7, 30), BOSTON))


def run(scores, policy=POLICY):
    """Feed scores through the rules with an alert store of one; return the transitions."""
    streak, status, seen = Streak(), None, []
    for score in scores:
        streak, transition = evaluate(streak, status, score, policy)
        seen.append(transition)
        if transition is Transition.FIRE:
            status = Status.FIRING
        elif transition is Transition.RESOLVE:
            status = None
    return seen


def test_a_drop_below_1_fires_once_after_the_damping():
    seen = run([0.9, 0.85, 0.8, 0.82])
    assert seen == [Transition.NONE, Transition.FIRE, Transition.CHANGE, Transition.CHANGE]
    assert seen.count(Transition.FIRE) == 1


def test_flapping_around_1_never_fires():
    assert set(run([0.99, 1.01, 0.98, 1.0, 0.97, 1.02, 0.99, 1.03])) == {Transition.NONE}


def test_recovery_resolves_after_consecutive_evaluations_and_a_dip_keeps_it_open():
    seen = run([0.8, 0.8, 1.1, 0.9, 1.05, 1.1])
    assert seen == [Transition.NONE, Transition.FIRE, Transition.CHANGE, Transition.CHANGE, Transition.CHANGE,
                    Transition.RESOLVE]


def test_no_score_counts_for_nothing():
    assert run([0.8, None, None]) == [Transition.NONE] * 3
    assert run([0.8, None, 0.8])[-1] is Transition.FIRE


def test_a_new_alert_after_resolution():
    seen = run([0.8, 0.8, 1.2, 1.2, 0.7, 0.7])
    assert seen.count(Transition.FIRE) == 2 and seen.count(Transition.RESOLVE) == 1


def test_fire_after_one_fires_at_once():
    assert run([0.5], Policy(fire_after=1)) == [Transition.FIRE]


def test_thread_notes_only_for_notable_moves_so_a_wobble_around_1_is_quiet():
    assert thread_note(0.9, 1.01, POLICY) == "recovering"
    assert thread_note(0.8, 0.9, POLICY) == "better"
    assert thread_note(0.9, 0.84, POLICY) == "worse"
    assert thread_note(0.99, 1.01, POLICY) is None
    assert thread_note(1.01, 0.98, POLICY) is None
    assert thread_note(0.9, 0.88, POLICY) is None
    assert thread_note(None, 0.5, POLICY) is None


def test_quiet_hours_hold_until_the_morning():
    quiet = POLICY.quiet
    evening = datetime(2026, 7, 22, 22, 15, tzinfo=BOSTON)
    assert quiet.contains(evening)
    assert quiet.release(evening) == datetime(2026, 7, 23, 7, 30, tzinfo=BOSTON)
    early = datetime(2026, 7, 23, 6, 0, tzinfo=BOSTON)
    assert quiet.release(early) == datetime(2026, 7, 23, 7, 30, tzinfo=BOSTON)
    noon = datetime(2026, 7, 23, 12, 0, tzinfo=BOSTON)
    assert not quiet.contains(noon) and quiet.release(noon) == noon
    # works from UTC instants too
    assert quiet.contains(evening.astimezone(timezone.utc))
    daytime = QuietHours(time(12), time(13), BOSTON)
    assert daytime.contains(datetime(2026, 7, 23, 12, 30, tzinfo=BOSTON))
    assert not daytime.contains(datetime(2026, 7, 23, 13, 0, tzinfo=BOSTON))


def test_reminders_after_the_repeat_interval_unless_acknowledged_or_quiet():
    fired = datetime(2026, 7, 23, 9, 0, tzinfo=BOSTON)
    alert = AlertClock(Status.FIRING, fired)
    assert not reminder_due(alert, fired + timedelta(hours=3, minutes=59), POLICY)
    assert reminder_due(alert, fired + timedelta(hours=4), POLICY)
    reminded = AlertClock(Status.FIRING, fired, last_reminded_at=fired + timedelta(hours=4))
    assert not reminder_due(reminded, fired + timedelta(hours=7), POLICY)
    assert reminder_due(reminded, fired + timedelta(hours=8), POLICY)
    assert not reminder_due(acknowledge(alert), fired + timedelta(hours=9), POLICY)
    assert not reminder_due(alert, fired + timedelta(hours=12), POLICY)  # 21:00 is quiet
    held = AlertClock(Status.FIRING, datetime(2026, 7, 22, 23, 0, tzinfo=BOSTON),
                      held_until=datetime(2026, 7, 23, 7, 30, tzinfo=BOSTON))
    assert not reminder_due(held, datetime(2026, 7, 23, 8, 0, tzinfo=BOSTON), POLICY)
    assert reminder_due(held, datetime(2026, 7, 23, 11, 30, tzinfo=BOSTON), POLICY)


def test_acknowledging_a_resolved_alert_changes_nothing():
    resolved = AlertClock(Status.RESOLVED, datetime(2026, 7, 23, tzinfo=BOSTON))
    assert acknowledge(resolved) == resolved


def test_a_score_that_reads_1_00_is_on_target_and_fires_nothing():
    # 0.996 is shown as 1.00 on the board: asking a department to follow up on it would be noise.
    assert run([0.996, 0.996, 0.9951, 0.996]) == [Transition.NONE] * 4
    assert run([0.994, 0.994]) == [Transition.NONE, Transition.FIRE]
