"""Boston's catalog with other windows, targets or metric fields, for tests of what follows the catalog
(pure: the shipped catalog is read from the package, nothing else)."""

from __future__ import annotations

from importlib import resources
from typing import Mapping, Sequence

import yaml

from shared.core.catalog import Catalog, parse_catalog

# Boston's published windows of 2025-2026 (docs/scoring.md §3b), as a catalog writes them.
CALENDAR_WINDOWS = {
    "day": {"period": "day"},
    "week": {"period": "week", "starts": "monday"},
    "month": {"period": "month"},
    "quarter": {"period": "month", "count": 3},
}


def variant(catalog: Catalog, windows: Mapping[str, object] | None = None,
            targets: Mapping[str, Sequence[Mapping[str, object]]] | None = None) -> Catalog:
    """`catalog` with other `windows` and, per metric id, a target history ([{from, target}, …]).

    Parsed again from its data, as a catalog file would be, so every rule of the catalog applies.
    """
    data = catalog.model_dump(by_alias=True, exclude_none=True)
    if windows is not None:
        data["windows"] = dict(windows)
    for metric in data["metrics"]:
        if targets and metric["id"] in targets:
            metric["target"] = [dict(change) for change in targets[metric["id"]]]
    return parse_catalog(data, "test catalog")


def boston_with(metric_id: str, **fields) -> Catalog:
    """Boston's shipped catalog with these fields of one metric replaced, parsed (and so checked) as a file is."""
    data = yaml.safe_load(resources.files("shared.catalogs").joinpath("boston.yaml").read_text())
    for metric in data["metrics"]:
        if metric["id"] == metric_id:
            metric.update(fields)
    return parse_catalog(data)
