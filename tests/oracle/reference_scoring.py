"""A deliberately slow, naive reference implementation of CityScore scoring.

Written straight from the spec (docs/scoring.md sections 2-5, docs/contract.md) and the
catalog YAML, WITHOUT looking at or importing the project's scoring code
(shared/core/scoring.py, shared/core/folding.py, shared/core/business_time.py). It exists only to
check the fast scoring core: when the two disagree, one of them misreads the spec.

Inputs are plain data: raw event dicts as decoded from JSONL (assumed valid), the
catalog as a plain dict from ``yaml.safe_load``, and an as-of ``date``. Output is a
dict in the "Scores" JSON shape of docs/contract.md.

Simplicity over speed: every window re-filters the metric's surviving events by
local date; the only preprocessing is turning each surviving event into its local
date and what it adds (numerator, denominator, value or count), once, so that
several as-of dates can be scored from one event list.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import holidays

WINDOW_ORDER = ("day", "week", "month", "quarter")
TREND_KINDS = ("trend_lower_better", "trend_higher_better")
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ONE_DAY = timedelta(days=1)


# --------------------------------------------------------------------------- helpers


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp with offset (docs/contract.md) as an aware datetime."""
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    return moment


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    """The city's calendar day an instant falls on."""
    return moment.astimezone(zone).date()


def median(values: list[float]) -> float:
    """Plain textbook median: middle value, or the mean of the two middle ones."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median of nothing")
    middle = n // 2
    if n % 2 == 1:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def parse_clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def days_from(first: date, last: date) -> list[date]:
    days = []
    while first <= last:
        days.append(first)
        first += ONE_DAY
    return days


def last_of_month(year: int, month: int) -> date:
    next_month = date(year + month // 12, month % 12 + 1, 1)
    return next_month - ONE_DAY


def target_on(metric: dict, day: date) -> float | None:
    """The catalog's `target`: a number, or [{from, target}, ...], the one in force on `day`
    (before the first `from`, the first)."""
    target = metric.get("target")
    if not isinstance(target, list):
        return target
    chosen = target[0]["target"]
    for change in target:
        since = change["from"] if isinstance(change["from"], date) else date.fromisoformat(change["from"])
        if since <= day:
            chosen = change["target"]
    return chosen


def move_back(day: date, years: int) -> date:
    """docs/scoring.md section 3: a date moved back `years` years; 29 February becomes 28 February."""
    year = day.year - years
    if day.month == 2 and day.day == 29:
        return date(year, 2, 28)
    return date(year, day.month, day.day)


# ---------------------------------------------------------------------- business time


class BusinessDays:
    """Mon-Fri (per the catalog) opening hours, holidays from the `holidays` package."""

    def __init__(self, catalog: dict):
        hours = catalog.get("business_hours") or {}
        names = hours.get("weekdays", ["mon", "tue", "wed", "thu", "fri"])
        self.weekdays = {WEEKDAY_NAMES.index(name.lower()[:3]) for name in names}
        self.opens = parse_clock(hours.get("opens", "08:30"))
        self.closes = parse_clock(hours.get("closes", "17:00"))
        calendar = catalog.get("holidays") or {}
        if calendar.get("country"):
            self.holidays = holidays.country_holidays(calendar["country"], subdiv=calendar.get("subdivision"))
        else:
            self.holidays = {}
        self.zone = ZoneInfo(catalog["timezone"])

    def is_business_day(self, day: date) -> bool:
        return day.weekday() in self.weekdays and day not in self.holidays

    def next_business_day(self, day: date) -> date:
        """The first business day strictly after `day`."""
        day = day + timedelta(days=1)
        while not self.is_business_day(day):
            day = day + timedelta(days=1)
        return day

    def add_business_days(self, day: date, n: int) -> date:
        for _ in range(n):
            day = self.next_business_day(day)
        return day

    def due_at(self, opened_at: datetime, n: int) -> datetime:
        """docs/scoring.md section 5: N business days of business time from opened_at."""
        local = opened_at.astimezone(self.zone)
        day, clock = local.date(), local.time().replace(tzinfo=None)
        inside = self.is_business_day(day) and self.opens <= clock < self.closes
        if inside:
            due_day = self.add_business_days(day, n)
            due_clock = clock
        else:
            # The clock starts at the next opening: today's, if it has not come yet on
            # a business day, otherwise the next business day's.
            if self.is_business_day(day) and clock < self.opens:
                start = day
            else:
                start = self.next_business_day(day)
            due_day = self.add_business_days(start, n)
            due_clock = self.opens
        return datetime.combine(due_day, due_clock).replace(tzinfo=self.zone)


def sla_for(metric: dict, attributes: dict | None) -> dict:
    rule = metric.get("sla_by_attribute")
    if rule and attributes:
        value = attributes.get(rule["attribute"])
        if value is not None and value in rule["values"]:
            return rule["values"][value]
    return metric["sla"]


def compute_due_at(opened_at: datetime, sla: dict, zone: ZoneInfo, business: BusinessDays) -> datetime:
    if "hours" in sla:
        # Elapsed time: work in UTC so no wall-clock arithmetic sneaks in.
        return opened_at.astimezone(timezone.utc) + timedelta(hours=sla["hours"])
    if "calendar_days" in sla:
        # Same local clock time N local days later.
        local = opened_at.astimezone(zone).replace(tzinfo=None)
        return (local + timedelta(days=sla["calendar_days"])).replace(tzinfo=zone)
    if "business_days" in sla:
        return business.due_at(opened_at, sla["business_days"])
    raise ValueError(f"unknown SLA {sla!r}")


# ---------------------------------------------------------------------- the reference


class Contribution:
    """What one surviving event adds, on which local date."""

    __slots__ = ("day", "numerator", "denominator", "value", "count")

    def __init__(self, day, numerator=None, denominator=None, value=None, count=None):
        self.day = day
        self.numerator = numerator
        self.denominator = denominator
        self.value = value
        self.count = count


def surviving_events(events: list[dict]) -> list[dict]:
    """Drop repeated event_ids (first wins); keep the last version of each case_id and
    of each (metric, date) tally, in the order received."""
    seen: set[str] = set()
    unique = []
    for event in events:
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        unique.append(event)
    last_case: dict[str, int] = {}
    last_tally: dict[tuple[str, str], int] = {}
    for index, event in enumerate(unique):
        if event["type"] == "case":
            last_case[event["case_id"]] = index
        elif event["type"] == "tally":
            last_tally[(event["metric"], event["date"])] = index
    survivors = []
    for index, event in enumerate(unique):
        if event["type"] == "case" and last_case[event["case_id"]] != index:
            continue
        if event["type"] == "tally" and last_tally[(event["metric"], event["date"])] != index:
            continue
        survivors.append(event)
    return survivors


class Reference:
    def __init__(self, events: list[dict], catalog: dict):
        self.catalog = catalog
        self.zone = ZoneInfo(catalog["timezone"])
        self.business = BusinessDays(catalog)
        self.windows = dict(catalog["windows"])
        self.metrics = {m["id"]: m for m in catalog["metrics"]}
        self.contributions: dict[str, list[Contribution]] = {m_id: [] for m_id in self.metrics}
        self._daily_counts: dict[str, dict[date, float]] = {}
        for event in surviving_events(events):
            contribution = self.contribution(event)
            if contribution is not None:
                self.contributions[event["metric"]].append(contribution)

    # -- what each event adds -----------------------------------------------------

    def contribution(self, event: dict) -> Contribution | None:
        metric = self.metrics[event["metric"]]
        kind, feed = metric["kind"], metric.get("feed")
        kind_is_trend = kind in TREND_KINDS
        etype = event["type"]
        if etype == "case":
            if event.get("closed_at") is None:
                return None  # open cases do not count
            opened = parse_time(event["opened_at"])
            closed = parse_time(event["closed_at"])
            if event.get("due_at") is not None:
                due = parse_time(event["due_at"])
            else:
                due = compute_due_at(opened, sla_for(metric, event.get("attributes")), self.zone, self.business)
            on_time = closed <= due
            return Contribution(local_date(closed, self.zone), numerator=1 if on_time else 0, denominator=1)
        if etype == "measurement":
            day = local_date(parse_time(event["occurred_at"]), self.zone)
            value = event["value"]
            if feed == "threshold":
                return Contribution(day, numerator=1 if value <= metric["threshold"] else 0, denominator=1)
            if feed == "rating":
                return Contribution(day, numerator=value, denominator=1)
            if feed == "values":
                return Contribution(day, value=value)
            raise ValueError(f"measurement for metric with feed {feed!r}")
        if etype == "incident":
            day = local_date(parse_time(event["occurred_at"]), self.zone)
            return Contribution(day, count=event.get("count", 1))
        if etype == "tally":
            day = date.fromisoformat(event["date"])
            if kind_is_trend:
                return Contribution(day, count=event["count"])
            return Contribution(day, numerator=event["numerator"], denominator=event["denominator"])
        raise ValueError(f"unknown event type {etype!r}")

    # -- windows -------------------------------------------------------------------

    def window_days(self, as_of: date, window: str) -> list[date]:
        """The spec's §3: N trailing days ending on the as-of date, or the last complete
        calendar period (day, week from its `starts` day, month; `count` of them) ending
        on or before it (the spec's §3b)."""
        spec = self.windows[window]
        if isinstance(spec, int):
            return days_from(as_of - timedelta(days=spec - 1), as_of)
        count = spec.get("count", 1)
        if spec["period"] == "day":
            return days_from(as_of - timedelta(days=count - 1), as_of)
        if spec["period"] == "week":
            first_weekday = WEEKDAY_NAMES.index(spec.get("starts", "monday")[:3])
            last = as_of
            while (last + ONE_DAY).weekday() != first_weekday:  # a week ends the day before one starts
                last -= ONE_DAY
            return days_from(last - timedelta(days=7 * count - 1), last)
        if spec["period"] == "month":
            last = as_of if (as_of + ONE_DAY).day == 1 else as_of.replace(day=1) - ONE_DAY
            first = last.replace(day=1)
            for _ in range(count - 1):
                first = (first - ONE_DAY).replace(day=1)
            return days_from(first, last)
        raise ValueError(f"unknown window {spec!r}")

    def window_in_past_year(self, as_of: date, window: str, years: int) -> list[date]:
        """The same calendar window `years` earlier: a calendar month is that year's whole
        month (a February of 28 or 29 days); other windows move each day back."""
        days = self.window_days(as_of, window)
        spec = self.windows[window]
        if isinstance(spec, dict) and spec["period"] == "month":
            first, last = days[0], days[-1]
            return days_from(date(first.year - years, first.month, 1), last_of_month(last.year - years, last.month))
        return [move_back(day, years) for day in days]  # a multiset: 28 Feb may appear twice

    def in_days(self, metric_id: str, days: list[date]) -> list[Contribution]:
        wanted = set(days)
        return [c for c in self.contributions[metric_id] if c.day in wanted]

    # -- scores ----------------------------------------------------------------------

    def scores(self, as_of: date) -> dict:
        metrics_out = {}
        for metric_id, metric in self.metrics.items():
            entry = {"name": metric["name"]}
            for window in WINDOW_ORDER:
                score, numerator, denominator = self.metric_score(metric, as_of, window)
                if score is None:
                    numerator = denominator = None
                days = self.window_days(as_of, window)
                entry[window] = {"score": score, "numerator": numerator, "denominator": denominator,
                                 "start": days[0].isoformat(), "end": days[-1].isoformat(),
                                 "target": target_on(metric, days[-1])}
            metrics_out[metric_id] = entry
        cityscore = {}
        for window in WINDOW_ORDER:
            present = [entry[window]["score"] for entry in metrics_out.values() if entry[window]["score"] is not None]
            cityscore[window] = mean(present) if present else None
        return {"as_of": as_of.isoformat(), "cityscore": cityscore, "metrics": metrics_out}

    def metric_score(self, metric: dict, as_of: date, window: str):
        kind = metric["kind"]
        if kind == "ratio":
            return self.ratio(metric, self.window_days(as_of, window))
        if kind == "mean_daily_ratio":
            return self.mean_daily_ratio(metric, self.window_days(as_of, window))
        if kind == "target_over_median":
            return self.target_over_median(metric, self.window_days(as_of, window))
        if kind in TREND_KINDS:
            return self.trend(metric, as_of, window)
        raise ValueError(f"unknown kind {kind!r}")

    def ratio(self, metric, days):
        contributions = self.in_days(metric["id"], days)
        num = sum(c.numerator for c in contributions if c.denominator is not None)
        den = sum(c.denominator for c in contributions if c.denominator is not None)
        if den == 0:
            return None, None, None
        return (num / den) / target_on(metric, days[-1]), num, den

    def mean_daily_ratio(self, metric, days):
        contributions = self.in_days(metric["id"], days)
        day_rates = []
        for day in days:
            of_day = [c for c in contributions if c.day == day and c.denominator is not None]
            den = sum(c.denominator for c in of_day)
            if den > 0:
                day_rates.append(sum(c.numerator for c in of_day) / den)
        if not day_rates:
            return None, None, None
        rate = mean(day_rates)
        target = target_on(metric, days[-1])
        return rate / target, rate, target

    def target_over_median(self, metric, days):
        values = [c.value for c in self.in_days(metric["id"], days) if c.value is not None]
        if not values:
            return None, None, None
        m = median(values)
        if m == 0:
            return None, None, None
        target = target_on(metric, days[-1])
        return target / m, target, m

    # -- trends ------------------------------------------------------------------------

    def first_day_with_data(self, metric_id: str) -> date | None:
        days = [c.day for c in self.contributions[metric_id] if c.count is not None]
        return min(days) if days else None

    def count_on(self, metric_id: str, day: date) -> float:
        """Σ counts of the metric's events on `day` (0 when none). The per-day sums are
        built once per metric, only because scanning every incident for every day of
        every moved window would be too slow even for a reference."""
        if metric_id not in self._daily_counts:
            daily: dict[date, float] = {}
            for c in self.contributions[metric_id]:
                if c.count is not None:
                    daily[c.day] = daily.get(c.day, 0) + c.count
            self._daily_counts[metric_id] = daily
        return self._daily_counts[metric_id].get(day, 0)

    def historical_mean(self, metric_id: str, as_of: date, window: str) -> float | None:
        """Mean daily count over the same calendar window of every prior year that counts,
        or None when no prior year counts ("no history"). Each year's days count: a past
        February of 29 days adds 29."""
        first = self.first_day_with_data(metric_id)
        if first is None:
            return None
        total, days_counted = 0, 0
        k = 1
        while True:
            moved = self.window_in_past_year(as_of, window, k)
            if first > min(moved):
                break  # moved further back only gets earlier: no more years count
            total += sum(self.count_on(metric_id, day) for day in moved)
            days_counted += len(moved)
            k += 1
        if days_counted == 0:
            return None
        return total / days_counted

    def trend(self, metric, as_of: date, window: str):
        metric_id = metric["id"]
        days = self.window_days(as_of, window)
        current = sum(self.count_on(metric_id, day) for day in days) / len(days)
        # The day score uses the week's historical mean as its baseline.
        historical = self.historical_mean(metric_id, as_of, "week" if window == "day" else window)
        if historical is None:
            return None, None, None
        if metric["kind"] == "trend_lower_better":
            if current == 0:
                return None, None, None
            return historical / current, historical, current
        if historical == 0:
            return None, None, None
        return current / historical, current, historical


def reference_scores(events: list[dict], catalog: dict, as_of: date) -> dict:
    """Scores as of `as_of` in the docs/contract.md "Scores" shape, computed the slow way."""
    return Reference(events, catalog).scores(as_of)
