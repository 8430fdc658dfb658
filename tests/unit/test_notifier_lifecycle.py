"""The alert lifecycle rules: flap damping, one alert, resolve, reminders, quiet hours."""

from dataclasses import replace
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from services.notifier.lifecycle import (
    Alert, Policy, QuietHours, Reading, ReminderTimes, Status, Streak, Transition, acknowledge, close, evaluate, fire,
    move, remind, reminder_due, reply, resolve, take_ownership, thread_note,
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
    alert = ReminderTimes(Status.FIRING, fired)
    assert not reminder_due(alert, fired + timedelta(hours=3, minutes=59), POLICY)
    assert reminder_due(alert, fired + timedelta(hours=4), POLICY)
    reminded = ReminderTimes(Status.FIRING, fired, last_reminded_at=fired + timedelta(hours=4))
    assert not reminder_due(reminded, fired + timedelta(hours=7), POLICY)
    assert reminder_due(reminded, fired + timedelta(hours=8), POLICY)
    assert not reminder_due(acknowledge(alert), fired + timedelta(hours=9), POLICY)
    assert not reminder_due(alert, fired + timedelta(hours=12), POLICY)  # 21:00 is quiet
    held = ReminderTimes(Status.FIRING, datetime(2026, 7, 22, 23, 0, tzinfo=BOSTON),
                      held_until=datetime(2026, 7, 23, 7, 30, tzinfo=BOSTON))
    assert not reminder_due(held, datetime(2026, 7, 23, 8, 0, tzinfo=BOSTON), POLICY)
    assert reminder_due(held, datetime(2026, 7, 23, 11, 30, tzinfo=BOSTON), POLICY)


def test_acknowledging_a_resolved_alert_changes_nothing():
    resolved = ReminderTimes(Status.RESOLVED, datetime(2026, 7, 23, tzinfo=BOSTON))
    assert acknowledge(resolved) == resolved


def test_a_score_that_reads_1_00_is_on_target_and_fires_nothing():
    # 0.996 is shown as 1.00 on the board: asking a department to follow up on it would be noise.
    assert run([0.996, 0.996, 0.9951, 0.996]) == [Transition.NONE] * 4
    assert run([0.994, 0.994]) == [Transition.NONE, Transition.FIRE]


# -- the alert as a value: each rule returns the next alert ------------------------------------

FIRED = datetime(2026, 7, 23, 9, 0, tzinfo=timezone.utc)


def an_alert(**changes) -> Alert:
    alert = fire("pothole-on-time", "week", 3, "C0PWD", Reading(0.8, 38.4, 48.0, date(2026, 7, 22)), FIRED, None)
    return replace(alert, id=7, **changes)


def test_a_fired_alert_remembers_its_first_score_and_names_its_outbox_keys():
    held = datetime(2026, 7, 23, 11, 30, tzinfo=timezone.utc)
    alert = fire("pothole-on-time", "week", 3, "C0PWD", Reading(0.8), FIRED, held)
    assert (alert.id, alert.status, alert.first_score, alert.noted_score, alert.held_until) == (
        None, Status.FIRING, 0.8, 0.8, held)
    assert (alert.reminders, alert.replies) == (0, 0)
    assert alert.key == "alert:pothole-on-time:week:3" and alert.post_key == "alert:pothole-on-time:week:3:post"
    assert alert.reminder_times == ReminderTimes(Status.FIRING, FIRED, held, None)


def test_a_move_edits_the_alert_and_only_a_notable_one_is_told_in_the_thread():
    alert = an_alert()
    assert move(alert, alert.reading, POLICY) is None  # the same reading: nothing to edit
    small = move(alert, Reading(0.78, 37.4, 48.0, date(2026, 7, 23)), POLICY)
    assert small.note is None and small.alert.reading.score == 0.78 and small.alert.noted_score == 0.8
    worse = move(small.alert, Reading(0.7, 33.6, 48.0, date(2026, 7, 23)), POLICY)
    assert worse.note == "worse" and worse.alert.noted_score == 0.7
    # only the reading changed: the date alone is a move (the message shows it)
    assert move(alert, replace(alert.reading, as_of=date(2026, 7, 23)), POLICY).note is None


def test_resolve_and_close_end_the_alert_in_place():
    later = FIRED + timedelta(hours=5)
    resolved = resolve(an_alert(), Reading(1.05), later)
    assert (resolved.status, resolved.resolved_at, resolved.reading.score, resolved.key) == (
        Status.RESOLVED, later, 1.05, "alert:pothole-on-time:week:3")
    closed = close(an_alert(), "pothole-on-time is no longer in the catalog", later)
    assert (closed.status, closed.resolved_reason, closed.reading.score) == (
        Status.RESOLVED, "pothole-on-time is no longer in the catalog", 0.8)


def test_reminders_and_replies_are_counted_so_their_outbox_keys_never_repeat():
    later = FIRED + timedelta(hours=4)
    reminded = remind(remind(an_alert(), FIRED + timedelta(hours=2)), later)
    assert (reminded.reminders, reminded.last_reminded_at) == (2, later)
    assert reply(reply(an_alert())).replies == 2
    assert not reminder_due(reminded.reminder_times, later + timedelta(hours=3), POLICY)


def test_acknowledging_records_who_did_it_first_and_a_second_click_changes_nothing():
    at = FIRED + timedelta(minutes=5)
    acknowledged = acknowledge(an_alert(), "U0PWD1", at)
    assert (acknowledged.status, acknowledged.acknowledged_by, acknowledged.acknowledged_at) == (
        Status.ACKNOWLEDGED, "U0PWD1", at)
    assert acknowledge(acknowledged, "U0PWD2", at + timedelta(minutes=1)) == acknowledged
    resolved = an_alert(status=Status.RESOLVED)
    assert acknowledge(resolved, "U0PWD1", at) == resolved
    # the same rule decides the reminders
    assert not reminder_due(acknowledged.reminder_times, FIRED + timedelta(hours=5), POLICY)


def test_taking_ownership_of_an_open_alert_and_not_of_a_resolved_one():
    owned = take_ownership(an_alert(), "U0PWD2")
    assert owned.owner == "U0PWD2" and owned.status is Status.FIRING
    assert take_ownership(owned, "U0PWD2") == owned
    assert take_ownership(owned, "U0PWD1").owner == "U0PWD1"  # someone else takes it over
    assert take_ownership(acknowledge(owned, "U0PWD1", FIRED), "U0PWD1").owner == "U0PWD1"
    resolved = an_alert(status=Status.RESOLVED)
    assert take_ownership(resolved, "U0PWD2") == resolved
