"""Routing of follow-up alerts: catalog metric -> department -> Slack channel and owners.

The routing file (YAML or JSON) names, per department, the channel (a Slack channel
id such as C0123ABCD) and the owners' Slack user ids; a metric may override its
department's owners. Departments it does not name go to the default channel.

A department may also name its `responders`: then only they and the owners of the
alert's metric may acknowledge, take ownership of or add notes to its alerts. Without
the list anyone who can click the buttons in the channel may (who did is recorded).

    default_channel: C0DEFAULT
    departments:
      public-works: {channel: C0PWD, owners: [U0AAA, U0BBB], responders: [U0DDD]}
    metrics:
      pothole-on-time: {owners: [U0CCC]}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from shared.core.catalog import Catalog


class RoutingError(ValueError):
    pass


@dataclass(frozen=True)
class Route:
    channel: str
    owners: tuple[str, ...]
    # Who besides the owners may act on its alerts; None: anyone (the default).
    responders: tuple[str, ...] | None = None

    def mentions(self) -> str:
        return " ".join(f"<@{owner}>" for owner in self.owners)


@dataclass(frozen=True)
class Routing:
    default_channel: str
    departments: dict[str, Route]
    metric_owners: dict[str, tuple[str, ...]]

    def channel_of(self, department: str) -> str:
        """The department's channel: the routing file's, else the default channel. Its alerts, its
        digest, its packet and the reminders of its actions owned by name all go there."""
        route = self.departments.get(department)
        return route.channel if route is not None else self.default_channel

    def route(self, catalog: Catalog, metric_id: str) -> Route:
        department = catalog.by_id[metric_id].department
        base = self.departments.get(department, Route(self.default_channel, ()))
        owners = self.metric_owners.get(metric_id, base.owners)
        return Route(base.channel, owners, base.responders)

    def owners_of(self, catalog: Catalog, metric_id: str) -> tuple[str, ...]:
        return self.route(catalog, metric_id).owners

    def may_act(self, catalog: Catalog, metric_id: str, user: str) -> bool:
        """Whether `user` may acknowledge, own or add a note to an alert on this metric."""
        if metric_id not in catalog.by_id:
            return True  # a metric gone from the catalog has no department to restrict it
        route = self.route(catalog, metric_id)
        return route.responders is None or user in route.responders or user in route.owners


def _owners(value, where: str, key: str = "owners") -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RoutingError(f"{where}.{key}: give a list of Slack user ids")
    return tuple(value)


def parse_routing(data: dict | None, catalog: Catalog, default_channel: str) -> Routing:
    """Check a routing document against the catalog; every error names where it is."""
    data = data or {}
    if not isinstance(data, dict):
        raise RoutingError("routing: expected a mapping")
    unknown = set(data) - {"default_channel", "departments", "metrics"}
    if unknown:
        raise RoutingError(f"routing: unknown keys {sorted(unknown)}")
    default = data.get("default_channel") or default_channel
    known_departments = {d.id for d in catalog.departments}
    departments: dict[str, Route] = {}
    for department, entry in (data.get("departments") or {}).items():
        where = f"departments.{department}"
        if department not in known_departments:
            raise RoutingError(f"{where}: not a department of the catalog")
        entry = entry or {}
        if not isinstance(entry, dict) or set(entry) - {"channel", "owners", "responders"}:
            raise RoutingError(f"{where}: give channel, owners and (optionally) responders")
        responders = None
        if "responders" in entry:
            responders = _owners(entry["responders"], where, "responders")
        departments[department] = Route(str(entry.get("channel") or default), _owners(entry.get("owners"), where),
                                        responders)
    metric_owners: dict[str, tuple[str, ...]] = {}
    for metric_id, entry in (data.get("metrics") or {}).items():
        where = f"metrics.{metric_id}"
        if metric_id not in catalog.by_id:
            raise RoutingError(f"{where}: not a metric of the catalog")
        if not isinstance(entry, dict) or set(entry) - {"owners"}:
            raise RoutingError(f"{where}: only owners may be set per metric")
        metric_owners[metric_id] = _owners(entry.get("owners"), where)
    return Routing(default, departments, metric_owners)


def load_routing(path: str | None, catalog: Catalog, default_channel: str) -> Routing:
    """The routing file (YAML is a superset of JSON), or everything to the default channel."""
    if not path:
        return parse_routing(None, catalog, default_channel)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RoutingError(f"{path}: {exc}") from None
    return parse_routing(data, catalog, default_channel)
