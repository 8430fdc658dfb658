"""The review packet's pure parts: the month and scope asked for (each refusal names its option), the
chart's own stylesheet for WeasyPrint, and the notifier's packet day."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from services.notifier.packets import month_before
from services.scorer.report import PacketRefused, chart_style, complete_month, parse_month, review_catalog, scope_of
from shared.core.catalog import load_catalog

CATALOG = load_catalog()


def test_a_month_is_its_first_and_last_day():
    assert parse_month("2026-02") == (date(2026, 2, 1), date(2026, 2, 28))
    assert parse_month("2028-02") == (date(2028, 2, 1), date(2028, 2, 29))
    assert parse_month(" 2026-12 ") == (date(2026, 12, 1), date(2026, 12, 31))


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "May", "2026-5", "2026/05", ""])
def test_a_month_not_written_yyyy_mm_is_refused_naming_the_option(text):
    with pytest.raises(PacketRefused, match=r"^--month: .* is not a month written YYYY-MM"):
        parse_month(text)


def test_a_month_is_reviewed_only_once_its_last_day_is_complete():
    boston = ZoneInfo("America/New_York")
    # Just after midnight on 1 June in Boston (still 31 May in no other sense): May is complete.
    assert complete_month("2026-05", CATALOG, datetime(2026, 6, 1, 0, 5, tzinfo=boston)) == \
        (date(2026, 5, 1), date(2026, 5, 31))
    # The evening of 31 May in Boston (1 June in UTC): May's last day is not over.
    with pytest.raises(PacketRefused, match=r"^--month: 2026-05 is not over: its last day, 31 May 2026, is after "
                                            r"the last complete day, 30 May 2026 \(yesterday in America/New_York\)"):
        complete_month("2026-05", CATALOG, datetime(2026, 6, 1, 2, 0, tzinfo=ZoneInfo("UTC")))
    with pytest.raises(PacketRefused, match=r"^--month: 2027-01 is not over"):
        complete_month("2027-01", CATALOG, datetime(2026, 6, 1, 12, 0, tzinfo=boston))


def test_the_scope_is_a_department_a_cabinet_or_the_city():
    assert scope_of(CATALOG, department="public-works").departments == ("public-works",)
    assert scope_of(CATALOG, cabinet="streets").departments == ("public-works", "transportation")
    city = scope_of(CATALOG)
    assert city.kind == "city" and len(city.departments) == len(CATALOG.departments)


@pytest.mark.parametrize("department, cabinet, message", [
    ("nope", None, "--department: no department 'nope' in the Boston catalog"),
    (None, "nope", "--cabinet: no cabinet 'nope' in the Boston catalog"),
    ("public-works", "streets", "--department and --cabinet: give one of them, not both"),
])
def test_an_unknown_scope_is_refused_naming_the_option(department, cabinet, message):
    with pytest.raises(PacketRefused, match=message):
        scope_of(CATALOG, department, cabinet)


def test_the_review_catalog_adds_the_calendar_month_and_keeps_the_rest():
    reviewing = review_catalog(CATALOG)
    assert list(reviewing.windows) == [*CATALOG.windows, "calendar month"]
    assert reviewing.windows["calendar month"].span(date(2026, 5, 31)) == (date(2026, 5, 1), date(2026, 5, 31))
    assert reviewing.metrics == CATALOG.metrics and "calendar month" not in CATALOG.windows


def test_the_charts_style_is_the_stylesheets_svg_rules_with_their_colours_put_in():
    css = """:root { --navy: #091f2f; }
    /* a comment { fill: red } */
    body { color: var(--navy); }
    .line { fill: none; stroke: var(--navy); stroke-width: 2.5; }
    .label { fill: var(--navy); paint-order: stroke; stroke: #fff; stroke-width: 4px; font-size: 12px; }
    @media print { .zone { fill: #eee; } }"""
    assert chart_style(css).splitlines() == [
        ".line {fill: none; stroke: #091f2f; stroke-width: 2.5;}",
        ".label {fill: #091f2f; font-size: 12px;}",  # the halo WeasyPrint would paint over the text: gone
        ".zone {fill: #eee;}",
    ]


def test_the_packet_posted_in_a_month_is_the_month_befores():
    assert month_before(date(2027, 1, 4)) == "2026-12"
    assert month_before(date(2026, 3, 2)) == "2026-02"
