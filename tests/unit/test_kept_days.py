"""Which days a reader that keeps day totals reads again (shared/store/kept_days.py): pure, no database."""

from datetime import date, timedelta

from shared.store.kept_days import WIDEN_DAYS, KeptDays, runs, span_days

QUARTER = (date(2026, 3, 1), date(2026, 5, 31))


def test_runs_split_sorted_days_where_a_day_is_skipped():
    days = [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3), date(2026, 1, 5), date(2026, 2, 1)]
    assert runs(days) == [(date(2026, 1, 1), date(2026, 1, 3)), (date(2026, 1, 5), date(2026, 1, 5)),
                          (date(2026, 2, 1), date(2026, 2, 1))]


def test_a_span_never_read_is_read_with_half_a_year_either_side():
    kept = KeptDays()
    assert kept.missing({"shootings": [QUARTER]}) == {
        "shootings": [(QUARTER[0] - timedelta(days=WIDEN_DAYS), QUARTER[1] + timedelta(days=WIDEN_DAYS))]}


def test_days_a_fold_changed_are_read_alone_and_a_span_all_read_not_at_all():
    kept = KeptDays()
    kept.read["shootings"] = set(span_days(*QUARTER))
    kept.read["homicides"] = set(span_days(*QUARTER))
    kept.read["shootings"] -= {date(2026, 4, 2), date(2026, 4, 3), date(2026, 5, 20)}
    assert kept.missing({"shootings": [QUARTER], "homicides": [QUARTER]}) == {
        "shootings": [(date(2026, 4, 2), date(2026, 4, 3)), (date(2026, 5, 20), date(2026, 5, 20))]}


def test_a_view_holds_only_the_spans_days_and_is_the_requests_own():
    kept = KeptDays()
    kept.totals["shootings"] = {date(2026, 2, 27): "before", date(2026, 3, 1): "first", date(2026, 5, 31): "last"}
    view = kept.view("shootings", [QUARTER])
    assert view == {date(2026, 3, 1): "first", date(2026, 5, 31): "last"}
    kept.totals["shootings"].pop(date(2026, 3, 1))  # a later fold's change, forgotten
    assert view[date(2026, 3, 1)] == "first"


def test_spans_that_overlap_or_meet_are_merged():
    from shared.store.kept_days import merged

    d = date(2026, 1, 1)
    assert merged([(d + timedelta(days=10), d + timedelta(days=12)), (d, d + timedelta(days=5)),
                   (d + timedelta(days=6), d + timedelta(days=7)), (d + timedelta(days=3), d + timedelta(days=4))]) == [
        (d, d + timedelta(days=7)), (d + timedelta(days=10), d + timedelta(days=12))]


def test_a_short_run_beside_a_widened_one_is_read_once():
    """A run widened by half a year covers a short one next to it: read as two, a median's
    measurements on the days of both would be counted twice."""
    kept = KeptDays()
    kept.read["ems-response-time"] = set(span_days(*QUARTER)) - {date(2026, 3, 10)}
    kept.read["ems-response-time"] -= set(span_days(date(2026, 3, 20), date(2026, 4, 30)))
    wanted = kept.missing({"ems-response-time": [QUARTER]})
    assert wanted == {"ems-response-time": [(date(2026, 3, 20) - timedelta(days=WIDEN_DAYS),
                                             date(2026, 4, 30) + timedelta(days=WIDEN_DAYS))]}


def test_a_read_not_to_be_kept_is_not_widened():
    assert KeptDays().missing({"shootings": [QUARTER]}, widen=False) == {"shootings": [QUARTER]}
