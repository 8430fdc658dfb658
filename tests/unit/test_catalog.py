"""Catalog files: Boston's default, another city's own, and clear errors for broken ones."""

import copy

import pytest
import yaml
from click.testing import CliRunner

from services.cli.commands import main
from shared.core.catalog import CatalogError, Kind, load_catalog, parse_catalog

BOSTON = load_catalog()


def boston_data():
    from importlib import resources

    return yaml.safe_load(resources.files("shared.catalogs").joinpath("boston.yaml").read_text())


def test_boston_has_its_23_metrics_with_published_targets():
    assert len(BOSTON.metrics) == 23
    assert BOSTON.timezone == "America/New_York"
    assert {name: w.days for name, w in BOSTON.windows.items()} == {"day": 1, "week": 7, "month": 30, "quarter": 90}
    assert not any(w.is_calendar for w in BOSTON.windows.values())
    assert BOSTON.metric("311-call-center").target == 0.95
    assert BOSTON.metric("ems-response-time").kind is Kind.TARGET_OVER_MEDIAN
    assert BOSTON.metric("library-users").kind is Kind.TREND_HIGHER_BETTER
    assert BOSTON.metric("bps-attendance").kind is Kind.MEAN_DAILY_RATIO
    trends = {m.id for m in BOSTON.metrics if m.kind is Kind.TREND_LOWER_BETTER}
    assert trends == {"bfd-incidents", "homicides", "part-1-crimes", "shootings", "stabbings"}


def test_boston_311_case_types_map_to_metrics():
    mapping = BOSTON.case_type_map
    assert mapping["Request for Pothole Repair"] == mapping["Pothole Repair (Internal)"] == "pothole-on-time"
    assert mapping["Street Light Outages"] == "streetlight-on-time"
    assert mapping["New Sign, Crosswalk or Pavement Marking"] == "sign-installation-on-time"
    assert mapping["Missed Trash/Recycling/Yard Waste/Bulk Item"] == "missed-trash-on-time"
    assert len(mapping) == 9


def test_event_types_follow_the_feed():
    assert BOSTON.metric("pothole-on-time").event_types == ("case", "tally")
    assert BOSTON.metric("ems-response-time").event_types == ("measurement",)  # a median cannot be tallied
    assert BOSTON.metric("shootings").event_types == ("incident", "tally")


def test_another_city_uses_its_own_file(tmp_path):
    data = {
        "city": "Somerville",
        "timezone": "America/New_York",
        "windows": {"day": 1, "week": 7, "month": 28},
        "departments": [{"id": "dpw", "name": "Public Works"}],
        "metrics": [{"id": "snow-on-time", "name": "SNOW REMOVAL", "kind": "ratio", "target": 0.9,
                     "department": "dpw", "feed": "cases", "sla": {"hours": 12}}],
    }
    path = tmp_path / "somerville.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    catalog = load_catalog(path)
    assert catalog.city == "Somerville" and list(catalog.windows) == ["day", "week", "month"]
    assert catalog.metric("snow-on-time").sla.hours == 12


def broken(mutate):
    data = boston_data()
    mutate(data)
    with pytest.raises(CatalogError) as caught:
        parse_catalog(data, "test.yaml")
    return caught.value.problems


def test_errors_name_the_metric_and_field():
    problems = broken(lambda d: d["metrics"][3].update(kind="ratio_of_ratios"))
    assert len(problems) == 1
    assert problems[0].startswith("metrics[3] (bfd-incidents).kind:")


def test_missing_target_is_named():
    problems = broken(lambda d: d["metrics"][0].pop("target"))
    assert problems == ["metrics[0] (311-call-center): target is required for kind 'ratio'"]


def test_unknown_department_and_duplicate_id():
    assert "unknown department 'sanitation'" in broken(lambda d: d["metrics"][5].update(department="sanitation"))[0]
    assert "id is used twice" in broken(lambda d: d["metrics"].append(copy.deepcopy(d["metrics"][0])))[0]


def test_feed_must_fit_kind_and_cases_need_an_sla():
    assert "does not fit kind" in broken(lambda d: d["metrics"][8].update(feed="tallies"))[0]
    assert "sla is required" in broken(lambda d: d["metrics"][6].pop("sla"))[0]
    assert "exactly one of" in broken(lambda d: d["metrics"][6].update(sla={"hours": 2, "business_days": 1}))[0]


def test_unknown_time_zone_and_unknown_field():
    assert "unknown time zone" in broken(lambda d: d.update(timezone="Boston/Harbor"))[0]
    assert broken(lambda d: d["metrics"][0].update(trget=0.9))[0].startswith("metrics[0] (311-call-center).trget")


def test_case_type_mapped_twice_is_refused():
    def mutate(d):
        d["metrics"][9]["case_types"] = ["Street Light Outages"]

    assert "already maps to" in broken(mutate)[0]


def test_catalog_check_command(tmp_path):
    runner = CliRunner()
    from importlib import resources

    good = tmp_path / "boston.yaml"
    good.write_text(resources.files("shared.catalogs").joinpath("boston.yaml").read_text())
    result = runner.invoke(main, ["catalog", "check", str(good)])
    assert result.exit_code == 0, result.output
    assert "23 metrics" in result.output

    bad = tmp_path / "bad.yaml"
    data = boston_data()
    data["metrics"][0]["target"] = -1
    bad.write_text(yaml.safe_dump(data))
    result = runner.invoke(main, ["catalog", "check", str(bad)])
    assert result.exit_code == 1
    assert "metrics[0] (311-call-center).target" in result.output

    result = runner.invoke(main, ["catalog", "check", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1 and "cannot read" in result.output
