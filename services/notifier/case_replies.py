"""The "Show cases" button's answer: the cases behind an alert, seen only by whoever clicked.

A follow-up says a score is below 1; the manager who has to fix it asks which cases. The
answer is ephemeral (Slack shows it to the person who clicked, no one else): the latest cases
closed late in the alert's window, the oldest cases still open past their due time at the end
of the alert's as-of day, and a link to the metric's public page. The cases come from the
scorer's kept cases through ScoreReader.case_page (only those shown are read, with each list's
length), so they are the ends of the read API's and `cityscore cases`' lists. They reach
Slack even when the catalog keeps a metric's case lists off the public pages
(public_case_lists: false): the department's channel is not public. Only the attributes the
catalog marks public are shown.

`cases_message` is pure (the Block Kit answer from the lists); `show_cases` is the use case
(the alert, then its cases) and answers every request in words, a missing alert included.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Sequence
from urllib.parse import quote, urljoin
from zoneinfo import ZoneInfo

from shared.core.cases import LATE, OVERDUE, CaseLine
from shared.core.catalog import Feed, Metric
from shared.core.wording import case_time, lateness_words
from shared.store.score_reader import ReadTimedOut

from .blocks import MAX_MESSAGE_TEXT, _clip, context, escape, in_window, long_date, section, span_if_known
from .lifecycle import FEED, watched_window

log = logging.getLogger("cityscore.notifier.cases")

# Each list shows this many cases, as the metric page does: enough to act on, short enough to read.
SHOWN = 10
# The lists are read while Slack waits for the click's answer (three seconds).
READ_TIMEOUT_S = 2.0
# An attribute's value longer than this is cut: ten cases must fit one Block Kit section.
MAX_VALUE = 80


def ephemeral(message: dict) -> dict:
    """A message for an interaction's response_url, shown only to whoever clicked, the alert kept as it is."""
    return {"response_type": "ephemeral", "replace_original": False, **message}


def in_words(text: str) -> dict:
    """An answer in one sentence (no such alert, no cases to show)."""
    return ephemeral({"text": text})


def metric_page_url(public_board_url: str, metric_id: str, as_of: date | None) -> str:
    """The metric's public page (the scorer's /metric/ID), as of the alert's day when known."""
    base = public_board_url if public_board_url.endswith("/") else public_board_url + "/"
    url = urljoin(base, f"metric/{quote(metric_id, safe='')}")
    return f"{url}?as_of={as_of.isoformat()}" if as_of is not None else url


# How a case a minute or less late is said in a sentence ("… less than a minute late").
UNDER_A_MINUTE = "less than a minute"


def _case_id(case_id: str) -> str:
    # In code type, which shows an id as typed; an id holding a backtick is only escaped.
    shown = escape(case_id)
    return shown if "`" in case_id else f"`{shown}`"


def _attributes(line: CaseLine, metric: Metric) -> str:
    # The case keeps the attributes public when it was folded; the catalog may have made one
    # private since: only those it marks public now are shown.
    pairs = [(name, value) for name, value in line.case.attributes if name in metric.public_attributes]
    return "".join(f" · {escape(name)}: {escape(_clip(value, MAX_VALUE))}" for name, value in pairs)


def late_line(line: CaseLine, metric: Metric, zone: ZoneInfo) -> str:
    assert line.case.closed_at is not None
    return (f"• {_case_id(line.case.case_id)} closed {case_time(line.case.closed_at, zone)}, "
            f"{lateness_words(line.hours_late, UNDER_A_MINUTE)} late{_attributes(line, metric)}")


def overdue_line(line: CaseLine, metric: Metric, zone: ZoneInfo) -> str:
    return (f"• {_case_id(line.case.case_id)} opened {case_time(line.case.opened_at, zone)}, due "
            f"{case_time(line.case.due_at, zone)}, {lateness_words(line.hours_late, UNDER_A_MINUTE)} late"
            f"{_attributes(line, metric)}")


def _how_many(shown: int, total: int, which: str) -> str:
    """'the 10 latest of 23', 'all 3', 'the one'."""
    if shown < total:
        return f"the {shown} {which} of {total:,}"
    return "the one" if total == 1 else f"all {total:,}"


def cases_message(metric: Metric, window: str, span: tuple[date, date] | None, as_of: date,
                  latest: Sequence[CaseLine], late_total: int, oldest_cases: Sequence[CaseLine], overdue_total: int,
                  page_url: str, zone: ZoneInfo) -> dict:
    """The ephemeral answer to "Show cases" (pure).

    `latest`: the window's last cases closed late, newest closing first, of `late_total`;
    `oldest_cases`: the cases open past their due time at the end of `as_of` that have waited
    longest, oldest first, of `overdue_total` (ScoreReader.case_page's pages, each of the lists
    read from its own end). Each is shown with how late it is, then the link to the metric page.
    """
    name = metric.name.title()
    period = in_window(window, span)
    day_end = f"the end of {long_date(as_of)}"

    if latest:
        late_text = (f"*Late cases*: {_how_many(len(latest), late_total, 'latest')} closed late {period}"
                     + (", newest first" if len(latest) > 1 else "") + "\n" + "\n".join(late_line(line, metric, zone) for line in latest))
    else:
        late_text = f"*Late cases*: none closed late {period}."
    if oldest_cases:
        overdue_text = (f"*Overdue cases*: {_how_many(len(oldest_cases), overdue_total, 'oldest')} open past "
                        f"{'their' if overdue_total > 1 else 'its'} due time at {day_end}" + (", oldest first" if len(oldest_cases) > 1 else "") + "\n"
                        + "\n".join(overdue_line(line, metric, zone) for line in oldest_cases))
    else:
        overdue_text = f"*Overdue cases*: none open past its due time at {day_end}."

    notes = [f"<{page_url}|{escape(name)} on the public board>"]
    if not metric.public_case_lists:
        notes.append("These case lists are not on the public pages (the catalog keeps them off): "
                     "shown here for the department only.")
    text = (f"{name}: {late_total:,} case{'s' if late_total != 1 else ''} closed late {period}; "
            f"{overdue_total:,} overdue at {day_end}.")
    blocks = [section(f"🔎 *{escape(name)}*: the cases behind its {window} score, as of {long_date(as_of)}"),
              section(late_text), section(overdue_text), context(*notes)]
    return ephemeral({"text": _clip(text, MAX_MESSAGE_TEXT), "blocks": blocks})


def show_cases(notifier, alert_id: int, *, shown: int = SHOWN, timeout_s: float | None = READ_TIMEOUT_S) -> dict:
    """The answer to "Show cases" on alert `alert_id`, for its response_url: the cases, or why there are none.

    `notifier`: services.notifier.service.Notifier (its alerts, catalog, store and settings).
    Reading only: anyone who sees the alert may ask, as anyone in the channel sees its score.
    """
    alert = notifier.alert(alert_id)
    if alert is None:
        return in_words("That alert does not exist.")
    if alert.window == FEED:
        return in_words("A data alert has no cases to show: it says a feed is quiet, not that a score is low.")
    catalog = notifier.catalog
    metric = catalog.by_id.get(alert.metric)
    if metric is None:
        return in_words(f"{escape(alert.metric)} is no longer in the catalog: its cases cannot be listed.")
    name = metric.name.title()
    if metric.feed is not Feed.CASES:
        return in_words(f"{name} is not scored from cases (its feed is {metric.feed.value}): "
                        "there are no cases behind its score to show.")
    window = watched_window(alert.window) or alert.window  # an at-risk alert's: the window it watches
    if window not in catalog.windows:
        return in_words(f"The {escape(window)} window of this alert is no longer in the catalog: "
                        f"{name}'s cases cannot be listed for it.")
    # The alert's own day (its message says "as of" it); an alert without one, the board's day.
    as_of = alert.reading.as_of or notifier.local_today() - timedelta(days=1)
    try:
        # Only the cases shown are read, with each list's length (a busy metric's are thousands).
        late_total, latest = notifier.store.case_page(metric.id, as_of, LATE, window, shown, 0, timeout_s)
        overdue_total, oldest_cases = notifier.store.case_page(metric.id, as_of, OVERDUE, window, shown, 0, timeout_s,
                                                               oldest_first=True)
    except ReadTimedOut:
        log.warning("cases not read in time", extra={"alert": alert_id, "metric": metric.id})
        return in_words(f"{name}'s cases took too long to read; try the button again in a moment.")
    page = metric_page_url(notifier.settings.public_board_url, metric.id, as_of)
    return cases_message(metric, window, span_if_known(catalog, window, as_of), as_of, latest, late_total,
                         oldest_cases, overdue_total, page, catalog.zone)
