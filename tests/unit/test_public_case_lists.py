"""The catalog's public_case_lists (whether a case-fed metric's case lists reach the public read API),
and the read API's projected windows (NOTIFIER_ALERT_WINDOWS, read as the notifier reads it)."""

from __future__ import annotations

import pytest

from services.scorer.settings import ScorerSettings
from shared.core.catalog import CatalogError, load_catalog
from tests.helpers.catalogs import boston_with


def test_case_lists_are_public_unless_the_catalog_says_otherwise():
    assert all(metric.public_case_lists for metric in load_catalog().metrics)
    kept = boston_with("pothole-on-time", public_case_lists=False)
    assert kept.by_id["pothole-on-time"].public_case_lists is False
    assert kept.by_id["graffiti-on-time"].public_case_lists is True


def test_public_case_lists_is_refused_on_a_metric_without_cases():
    with pytest.raises(CatalogError, match=r"metrics\[\d+\] \(shootings\): public_case_lists only applies to "
                                           r"feed 'cases' \(whether its case lists are public\)"):
        boston_with("shootings", public_case_lists=False)
    with pytest.raises(CatalogError, match=r"\(pothole-on-time\)\.public_case_lists: Input should be a valid boolean"):
        boston_with("pothole-on-time", public_case_lists="sometimes")


def test_the_read_api_projects_the_notifier_s_alert_windows(monkeypatch):
    assert ScorerSettings().projected_windows == ("week",)
    monkeypatch.setenv("NOTIFIER_ALERT_WINDOWS", " week, month ,")
    assert ScorerSettings().projected_windows == ("week", "month")
    monkeypatch.setenv("NOTIFIER_ALERT_WINDOWS", "")
    assert ScorerSettings().projected_windows == ()
