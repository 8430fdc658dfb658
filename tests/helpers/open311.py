"""Real-shaped Open311 GeoReport v2 requests for the fake endpoint (tests/fakes/open311.py)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

TYPES = ["Illegal Dumping", "Street Light Outage", "Alley Light Outage", "Abandoned Vehicle", "Information Request",
         "Pothole Repair"]


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def city_requests(count: int, end: datetime, days: int, seed: int = 1) -> list[dict]:
    """`count` requests requested over the `days` before `end`: open and closed, some with an
    expected_datetime, some duplicates (extended_attributes.parent_service_request_id), some of
    types the catalog does not map, every one with a distinct id."""
    rng = random.Random(seed)
    out = []
    for number in range(count):
        requested = end - timedelta(seconds=rng.randrange(60, days * 86400 - 60))
        request = {
            "service_request_id": str(20_000_000 + number),
            "service_name": rng.choice(TYPES),
            "agency_responsible": "Streets Department",
            "requested_datetime": iso(requested),
            "zipcode": rng.choice(["19102", "19104", "19147"]),
        }
        hours = rng.randrange(1, 24 * 20)
        closed = requested + timedelta(hours=hours)
        if closed < end - timedelta(minutes=5) and rng.random() < 0.7:
            request.update(status="closed", updated_datetime=iso(closed), status_notes="Completed")
        else:
            request["status"] = "open"
            if rng.random() < 0.5:
                request["updated_datetime"] = iso(min(end - timedelta(minutes=1), requested + timedelta(hours=1)))
        if rng.random() < 0.3:
            request["expected_datetime"] = iso(requested + timedelta(days=7))
        if rng.random() < 0.05:
            request["extended_attributes"] = {"parent_service_request_id": str(20_000_000 + max(0, number - 1))}
        out.append(request)
    return out
