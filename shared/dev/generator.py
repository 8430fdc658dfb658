"""A realistic stream of events for a city, for demos, tests and benchmarks.

Volumes follow Boston's: about 900 calls to 311 a day, 230 fire incidents, 20 to 60
cases a day for each on-time metric, daily tallies for school attendance and
library users, a few shootings and stabbings. Trend metrics get three years of
daily tallies first (a department's backfill), so their scores have a history to
compare with. Like real feeds, some events arrive late, some twice, and some cases
are sent when opened, then again when closed or reopened.

Deterministic: the same catalog, seed, days and end date give the same file.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterator

from shared.core.business_time import BusinessCalendar
from shared.core.catalog import SLA, Catalog, Feed, Kind, Metric


@dataclass(frozen=True)
class Volume:
    """A metric's daily volume and how its values are drawn."""

    per_day: float  # mean events a day
    quality: float = 0.85  # chance a case closes on time / a measurement meets its threshold


# Boston-like daily volumes. A city with its own catalog gets `DEFAULT_VOLUME`
# for metrics not named here (by feed), so any catalog generates something.
BOSTON_VOLUMES: dict[str, Volume] = {
    "311-call-center": Volume(900, 0.80),
    "311-surveys": Volume(25),
    "city-services-surveys": Volume(15),
    "bfd-incidents": Volume(230),
    "bfd-response-time": Volume(100, 0.87),
    "code-enforcement-on-time": Volume(30, 0.82),
    "code-enforcement-trash": Volume(25, 0.78),
    "ems-response-time": Volume(120),
    "graffiti-on-time": Volume(20, 0.85),
    "homicides": Volume(0.15),
    "missed-trash-on-time": Volume(45, 0.80),
    "permit-reviews-on-time": Volume(20, 0.95),
    "parks-maintenance-on-time": Volume(20, 0.82),
    "part-1-crimes": Volume(55),
    "pothole-on-time": Volume(50, 0.85),
    "shootings": Volume(0.6),
    "sign-installation-on-time": Volume(20, 0.83),
    "signal-repair-on-time": Volume(20, 0.80),
    "stabbings": Volume(0.7),
    "streetlight-on-time": Volume(40, 0.82),
    "tree-maintenance-on-time": Volume(25, 0.90),
}
DEFAULT_VOLUME = {
    Feed.CASES: Volume(30, 0.82),
    Feed.THRESHOLD: Volume(100, 0.85),
    Feed.RATING: Volume(20),
    Feed.VALUES: Volume(100),
    Feed.INCIDENTS: Volume(20),
    Feed.TALLIES: Volume(1),
}

LATE_SHARE = 0.01  # events that reach us one to five days after they happened
DUPLICATE_SHARE = 0.005  # events a department sends twice
OPENED_SHARE = 0.15  # cases also sent when opened, before they close
REOPENED_SHARE = 0.02  # closed cases reopened and closed again
DUE_AT_SHARE = 0.5  # cases whose system exports its own due time
# The due time generated for a metric that takes each case's own (due_from_case).
_GENERATED_SLA = SLA(business_days=5)
HISTORY_YEARS = 3
MORNING_RUN = time(8, 0)


def _poisson(rng: random.Random, mean: float) -> int:
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    # Knuth's method: fine for the small means of rare incidents.
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


class _Stream:
    """Events ordered by when the city's systems send them."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, dict]] = []
        self._seq = 0

    def send(self, at: datetime, event: dict) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, event))

    def until(self, moment: datetime) -> Iterator[dict]:
        while self._heap and self._heap[0][0] < moment:
            yield heapq.heappop(self._heap)[2]


class Generator:
    def __init__(self, catalog: Catalog, seed: int = 0):
        self.catalog = catalog
        self.rng = random.Random(seed)
        self.zone = catalog.zone
        self.calendar = BusinessCalendar(catalog)
        # Each metric's performance drifts from day to day so scores move around 1.
        self.drift = {m.id: 0.0 for m in catalog.metrics}
        self.metric_number = {m.id: number for number, m in enumerate(catalog.metrics)}

    def volume(self, metric: Metric) -> Volume:
        return BOSTON_VOLUMES.get(metric.id) or DEFAULT_VOLUME[metric.feed]

    # Instants are kept in UTC: Python does wall-clock arithmetic and comparison on
    # datetimes sharing a ZoneInfo, which would be an hour off around DST changes.
    def at(self, day: date, seconds: float) -> datetime:
        return self.midnight(day) + timedelta(seconds=seconds)

    def midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=self.zone).astimezone(timezone.utc)

    def moment_in(self, day: date) -> datetime:
        local = datetime.combine(day, time(0)) + timedelta(seconds=self.rng.uniform(0, 86399))
        return local.replace(tzinfo=self.zone).astimezone(timezone.utc)

    def iso(self, moment: datetime) -> str:
        """Local time with its offset, as a city's systems write it."""
        return moment.astimezone(self.zone).replace(microsecond=0).isoformat()

    # -- the stream ------------------------------------------------------------

    def events(self, days: int, end: date) -> Iterator[dict]:
        start = end - timedelta(days=days - 1)
        yield from self.history(start)
        stream = _Stream()
        for offset in range(days):
            day = start + timedelta(days=offset)
            for metric in self.catalog.metrics:
                self.drift[metric.id] = max(-0.25, min(0.15, self.drift[metric.id] * 0.9 + self.rng.gauss(0, 0.03)))
                self.day_of(metric, day, stream)
            yield from stream.until(self.midnight(day + timedelta(days=1)))
        # The file is what the city knows by the morning after `end` (when yesterday is
        # scored): the night's tallies are in; later closings and late events are not.
        morning = datetime.combine(end + timedelta(days=1), MORNING_RUN, tzinfo=self.zone)
        yield from stream.until(morning.astimezone(timezone.utc))

    def history(self, start: date) -> Iterator[dict]:
        """Backfilled daily tallies for trend metrics, so they have past years to compare with."""
        for metric in self.catalog.metrics:
            if not metric.kind.is_trend or metric.feed is Feed.TALLIES:
                continue  # tally-fed trends get their history from day_of's backfill below
            per_day = self.volume(metric).per_day
            for offset in range(HISTORY_YEARS * 365, 0, -1):
                day = start - timedelta(days=offset)
                yield {
                    "event_id": f"{metric.id}-history-{day.isoformat()}",
                    "type": "tally",
                    "metric": metric.id,
                    "date": day.isoformat(),
                    "count": _poisson(self.rng, per_day * self.seasonal(day)),
                }
        for metric in self.catalog.metrics:
            if metric.feed is Feed.TALLIES and metric.kind.is_trend:
                for offset in range(HISTORY_YEARS * 365, 0, -1):
                    yield self.tally(metric, start - timedelta(days=offset))

    def seasonal(self, day: date) -> float:
        # More incidents in summer, fewer on winter weekends: enough shape for trends to move.
        summer = 1 + 0.15 * math.sin((day.timetuple().tm_yday - 100) / 365 * 2 * math.pi)
        return summer * (0.9 if day.weekday() >= 5 else 1.03)

    def day_of(self, metric: Metric, day: date, stream: _Stream) -> None:
        volume = self.volume(metric)
        quality = min(0.99, volume.quality + self.drift[metric.id])
        if metric.feed is Feed.TALLIES:
            event = self.tally(metric, day)
            if event is not None:
                stream.send(self.at(day + timedelta(days=1), self.rng.uniform(3600, 7200)), event)
            return
        count = _poisson(self.rng, volume.per_day * (self.seasonal(day) if metric.kind.is_trend else 1.0))
        for n in range(count):
            event_id = f"{metric.id}-{day:%Y%m%d}-{n}"
            if metric.feed is Feed.CASES:
                self.case(metric, day, event_id, quality, stream)
                continue
            occurred = self.moment_in(day)
            event: dict = {"event_id": event_id, "metric": metric.id}
            if metric.feed is Feed.INCIDENTS:
                event.update(type="incident", occurred_at=self.iso(occurred))
            else:
                event.update(type="measurement", occurred_at=self.iso(occurred), value=self.value(metric, quality))
            self.send(stream, occurred + timedelta(seconds=self.rng.uniform(1, 120)), event)

    def send(self, stream: _Stream, at: datetime, event: dict) -> None:
        if self.rng.random() < LATE_SHARE:
            at += timedelta(days=self.rng.uniform(1, 5))
        stream.send(at, event)
        if self.rng.random() < DUPLICATE_SHARE:
            stream.send(at + timedelta(minutes=self.rng.uniform(1, 600)), event)

    def value(self, metric: Metric, quality: float) -> float:
        rng = self.rng
        if metric.feed is Feed.THRESHOLD:
            assert metric.threshold is not None
            if rng.random() < quality:
                return round(rng.uniform(0.1, 1.0) * metric.threshold, 2)
            return round(metric.threshold * rng.uniform(1.01, 3.0), 2)
        if metric.feed is Feed.RATING:
            low = metric.min_value if metric.min_value is not None else 1
            high = metric.max_value if metric.max_value is not None else 5
            # Ratings lean high, as Boston's 311 surveys do (around 4 of 5).
            return float(min(high, max(low, round(rng.triangular(low, high, high) + self.drift[metric.id] * 4))))
        # Response times: median near the target, longer on a bad week.
        target = metric.latest_target or 1.0
        return round(rng.lognormvariate(math.log(target * (0.95 - self.drift[metric.id])), 0.35), 2)

    def tally(self, metric: Metric, day: date) -> dict | None:
        event: dict = {"event_id": f"{metric.id}-tally-{day.isoformat()}", "type": "tally", "metric": metric.id,
                       "date": day.isoformat()}
        if metric.kind.is_trend:
            # Daily active library users: about 15,000 on weekdays, fewer at weekends.
            base = 15000 if day.weekday() < 5 else 9000
            event["count"] = max(0, round(self.rng.gauss(base * self.seasonal(day), base * 0.05)))
            return event
        # School attendance: school days only (weekdays, September to June, no holidays).
        if metric.kind is Kind.MEAN_DAILY_RATIO and (day.month in (7, 8) or not self.calendar.is_business_day(day)):
            return None
        enrolled = 46000
        rate = min(0.99, max(0.7, self.rng.gauss(0.93 + self.drift[metric.id] / 3, 0.01)))
        event.update(numerator=round(enrolled * rate), denominator=enrolled)
        return event

    def case(self, metric: Metric, day: date, event_id: str, quality: float, stream: _Stream) -> None:
        rng = self.rng
        opened = self.moment_in(day)
        attributes = None
        if metric.sla_by_attribute is not None:
            choices = sorted(metric.sla_by_attribute.values) + ["other"]
            attributes = {metric.sla_by_attribute.attribute: rng.choice(choices)}
        if metric.due_from_case:
            # No SLA in the catalog: each case carries its own due time, here a plausible one.
            due = self.calendar.due_at(_GENERATED_SLA, opened).astimezone(timezone.utc)
        else:
            due = self.calendar.case_due_at(metric, opened, attributes).astimezone(timezone.utc)
        span = (due - opened).total_seconds()
        if rng.random() < quality:
            closed = opened + timedelta(seconds=span * rng.uniform(0.05, 0.98))
        else:
            closed = due + timedelta(seconds=max(60.0, span * rng.uniform(0.05, 1.0)))
        # Numeric like Boston's case enquiry ids, and unique across metrics.
        case_id = f"1{day:%y%m%d}{self.metric_number[metric.id]:02d}{int(event_id.rsplit('-', 1)[1]):04d}"
        base = {"type": "case", "metric": metric.id, "case_id": case_id, "opened_at": self.iso(opened)}
        # (the draw comes first, so a catalog's other metrics generate the same cases as ever)
        if rng.random() < DUE_AT_SHARE or metric.due_from_case:
            base["due_at"] = self.iso(due)
        if attributes:
            base["attributes"] = attributes
        if rng.random() < OPENED_SHARE:
            stream.send(opened + timedelta(seconds=30), {"event_id": f"{event_id}-opened", **base, "closed_at": None})
        closed_event = {"event_id": f"{event_id}-closed", **base, "closed_at": self.iso(closed)}
        self.send(stream, closed + timedelta(seconds=rng.uniform(1, 300)), closed_event)
        if rng.random() < REOPENED_SHARE:
            reopened = closed + timedelta(hours=rng.uniform(1, 48))
            stream.send(reopened, {"event_id": f"{event_id}-reopened", **base, "closed_at": None})
            closed_again = reopened + timedelta(hours=rng.uniform(1, 96))
            stream.send(closed_again, {"event_id": f"{event_id}-reclosed", **base, "closed_at": self.iso(closed_again)})


def generate(catalog: Catalog, days: int, seed: int, end: date) -> Iterator[dict]:
    """Events for `days` local days ending on `end`, preceded by the trend metrics' history."""
    if days < 1:
        raise ValueError("days must be at least 1")
    return Generator(catalog, seed).events(days, end)
