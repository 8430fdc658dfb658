"""A catalog that extends another (`extends: boston.yaml`) and the shipped Boston calendar catalog.

Boston publishes its CityScore over calendar periods today; the shipped boston.yaml keeps the
rolling (trailing) windows, and boston-calendar.yaml is the same 23 metrics with Boston's
calendar windows, without a copy of them (docs/scoring.md §3).
"""

from __future__ import annotations

from datetime import date

import pytest
import yaml
from click.testing import CliRunner

from services.cli.commands import main
from shared.core.catalog import CatalogError, load_catalog
from shared.core.windows import Period, Window

BOSTON = load_catalog()
CALENDAR_WINDOWS = {
    "day": Window(period=Period.DAY),
    "week": Window(period=Period.WEEK, starts="monday"),
    "month": Window(period=Period.MONTH),
    "quarter": Window(period=Period.MONTH, count=3),
}


def write(path, data):
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def refusal(path) -> CatalogError:
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    return caught.value


def test_an_extending_catalog_overrides_windows_and_keeps_the_rest(tmp_path):
    child = write(tmp_path / "boston-calendar.yaml", {
        "extends": "boston.yaml",
        "windows": {"day": {"period": "day"}, "week": {"period": "week", "starts": "monday"},
                    "month": {"period": "month"}, "quarter": {"period": "month", "count": 3}},
    })
    catalog = load_catalog(child)
    assert catalog.windows == CALENDAR_WINDOWS
    assert catalog.metrics == BOSTON.metrics
    assert catalog.departments == BOSTON.departments
    assert (catalog.city, catalog.timezone, catalog.history_start) == ("Boston", "America/New_York", date(2010, 1, 1))
    assert catalog.business_hours == BOSTON.business_hours and catalog.holidays == BOSTON.holidays


def test_every_top_level_key_replaces_the_base_value_as_a_whole(tmp_path):
    # Windows are not merged name by name: the extending file's windows are all the windows.
    child = write(tmp_path / "weekly.yaml", {"extends": "boston.yaml", "city": "Boston (weeks)",
                                             "history_start": date(2015, 1, 1), "windows": {"week": 14}})
    catalog = load_catalog(child)
    assert catalog.windows == {"week": Window(days=14)}
    assert catalog.city == "Boston (weeks)" and catalog.history_start == date(2015, 1, 1)
    departments = [{"id": "boston-311", "name": "Boston 311"}]
    metrics = [BOSTON.metric("311-call-center").model_dump(mode="json", by_alias=True, exclude_none=True)]
    only = write(tmp_path / "only-311.yaml", {"extends": "boston.yaml", "departments": departments,
                                              "metrics": metrics})
    catalog = load_catalog(only)
    assert [m.id for m in catalog.metrics] == ["311-call-center"]
    assert catalog.metric("311-call-center") == BOSTON.metric("311-call-center")
    assert catalog.windows == BOSTON.windows


def test_extends_a_path_relative_to_the_extending_file(tmp_path):
    (tmp_path / "city").mkdir()
    (tmp_path / "local").mkdir()
    write(tmp_path / "city" / "base.yaml", {
        "city": "Somerville", "timezone": "America/New_York",
        "departments": [{"id": "dpw", "name": "Public Works"}],
        "metrics": [{"id": "snow-on-time", "name": "SNOW REMOVAL", "kind": "ratio", "target": 0.9,
                     "department": "dpw", "feed": "cases", "sla": {"hours": 12}}],
    })
    write(tmp_path / "city" / "middle.yaml", {"extends": "base.yaml", "windows": {"week": 7, "month": 28}})
    child = write(tmp_path / "local" / "calendar.yaml", {"extends": "../city/middle.yaml",
                                                        "timezone": "America/Chicago"})
    catalog = load_catalog(child)
    assert catalog.city == "Somerville" and catalog.timezone == "America/Chicago"
    assert catalog.windows == {"week": Window(days=7), "month": Window(days=28)}
    assert [m.id for m in catalog.metrics] == ["snow-on-time"]


def test_a_file_beside_the_extending_one_wins_over_the_shipped_catalog_of_that_name(tmp_path):
    base = BOSTON.model_dump(mode="json", by_alias=True, exclude_none=True)
    base["city"] = "Boston, edited copy"
    write(tmp_path / "boston.yaml", base)
    child = write(tmp_path / "child.yaml", {"extends": "boston.yaml", "windows": {"week": 7}})
    assert load_catalog(child).city == "Boston, edited copy"


def test_a_cycle_of_extends_is_refused(tmp_path):
    write(tmp_path / "a.yaml", {"extends": "b.yaml", "city": "A"})
    write(tmp_path / "b.yaml", {"extends": "a.yaml", "city": "B"})
    error = refusal(tmp_path / "a.yaml")
    assert error.source == str(tmp_path / "b.yaml")
    assert len(error.problems) == 1
    problem = error.problems[0]
    assert problem.startswith("extends: 'a.yaml' leads back to")
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert f"(a cycle: {a} -> {b} -> {a})" in problem

    write(tmp_path / "self.yaml", {"extends": "./self.yaml"})
    assert refusal(tmp_path / "self.yaml").problems[0].startswith("extends: './self.yaml' leads back to")


def test_an_unknown_base_is_refused_naming_the_file_and_field(tmp_path):
    child = write(tmp_path / "child.yaml", {"extends": "bostn.yaml", "windows": {"week": 7}})
    error = refusal(child)
    assert error.source == str(child)
    assert len(error.problems) == 1
    problem = error.problems[0]
    assert problem.startswith("extends: 'bostn.yaml' is neither a file")
    assert "boston.yaml" in problem and "boston-calendar.yaml" in problem  # the shipped names, to choose from

    missing = write(tmp_path / "missing.yaml", {"extends": "sub/nowhere.yaml"})
    problem = refusal(missing).problems[0]
    assert problem.startswith("extends: 'sub/nowhere.yaml'") and "cannot read" in problem


@pytest.mark.parametrize("value", [None, 7, "", ["boston.yaml"]])
def test_extends_must_name_one_catalog(tmp_path, value):
    child = write(tmp_path / "child.yaml", {"extends": value, "windows": {"week": 7}})
    error = refusal(child)
    assert error.source == str(child)
    assert error.problems[0].startswith("extends: give the name of a shipped catalog")


def test_a_broken_base_is_named_as_the_base(tmp_path):
    (tmp_path / "broken.yaml").write_text("city: [unclosed", encoding="utf-8")
    child = write(tmp_path / "child.yaml", {"extends": "broken.yaml"})
    error = refusal(child)
    assert error.source == str(tmp_path / "broken.yaml") and error.problems[0].startswith("not valid YAML")


def test_an_invalid_result_names_the_extending_file_and_its_base(tmp_path):
    child = write(tmp_path / "child.yaml", {"extends": "boston.yaml", "windows": {"day": 1, "month": 30}})
    error = refusal(child)
    assert error.source == f"{child} (extends boston.yaml)"
    assert error.problems == ["windows: a 'week' window is required"]

    unknown = write(tmp_path / "unknown.yaml", {"extends": "boston.yaml", "widnows": {"week": 7}})
    assert refusal(unknown).problems[0].startswith("widnows:")


def test_the_shipped_calendar_catalog_is_boston_with_calendar_windows():
    catalog = load_catalog("boston-calendar.yaml")  # a shipped catalog's name needs no path
    assert len(catalog.metrics) == 23
    assert catalog.metrics == BOSTON.metrics and catalog.departments == BOSTON.departments
    assert catalog.windows == CALENDAR_WINDOWS
    assert list(catalog.windows) == ["day", "week", "month", "quarter"]
    # The shipped default keeps its trailing windows (the rolling board).
    assert BOSTON.windows == {"day": Window(days=1), "week": Window(days=7),
                              "month": Window(days=30), "quarter": Window(days=90)}
    # As of Wednesday 12 February 2025 the week is the Monday-Sunday week before.
    assert catalog.windows["week"].span(date(2025, 2, 12)) == (date(2025, 2, 3), date(2025, 2, 9))
    assert catalog.windows["quarter"].span(date(2026, 5, 15)) == (date(2026, 2, 1), date(2026, 4, 30))


def test_a_shipped_name_is_found_wherever_the_command_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_catalog("boston.yaml").metrics == BOSTON.metrics
    error = refusal("bostn-calendar.yaml")
    assert error.source == "bostn-calendar.yaml"
    assert error.problems[0].startswith("cannot read: no such file")
    assert "boston-calendar.yaml" in error.problems[0]


def test_catalog_check_explains_the_calendar_windows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["catalog", "check", "boston-calendar.yaml"])
    assert result.exit_code == 0, result.output
    assert "boston-calendar.yaml: OK. Boston (America/New_York): 23 metrics, 11 departments" in result.output
    assert "    day: the as-of day\n" in result.output
    assert ("    week: the last complete week (Monday to Sunday) ending on or before the as-of day\n"
            in result.output)
    assert "    month: the last complete calendar month ending on or before the as-of day\n" in result.output
    assert "    quarter: the last complete 3 calendar months ending on or before the as-of day\n" in result.output

    result = CliRunner().invoke(main, ["catalog", "check", "bostn-calendar.yaml"])
    assert result.exit_code == 1
    assert "catalog bostn-calendar.yaml is not valid" in result.output and "cannot read" in result.output


def test_rebuild_takes_a_catalog_as_score_does_and_refuses_one_that_does_not_load(tmp_path, monkeypatch):
    # Refused before it asks to go on or reaches the database or the broker (neither is there).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:9/none")
    monkeypatch.setenv("CITYSCORE_CATALOG", "boston.yaml")
    result = CliRunner().invoke(main, ["rebuild", "--catalog", "bostn-calendar.yaml"])
    assert result.exit_code == 1, result.output
    assert "catalog bostn-calendar.yaml is not valid" in result.output and "cannot read" in result.output


# -- metric_overrides: change a few fields of a few metrics, by id, without copying them --------


def test_metric_overrides_change_the_named_fields_of_the_named_metrics(tmp_path):
    child = write(tmp_path / "targets.yaml", {
        "extends": "boston-calendar.yaml",
        "metric_overrides": {
            "311-call-center": {"target": [{"from": date(2016, 1, 1), "target": 0.9},
                                           {"from": date(2019, 7, 1), "target": 0.95}]},
            "pothole-on-time": {"sla": {"business_days": 2}, "name": "POTHOLES"},
        },
    })
    catalog = load_catalog(child)
    assert catalog.windows == CALENDAR_WINDOWS
    call_center = catalog.metric("311-call-center")
    assert call_center.model_copy(update={"target": 0.95}) == BOSTON.metric("311-call-center")
    assert (call_center.target_on(date(2019, 6, 30)), call_center.target_on(date(2019, 7, 1))) == (0.9, 0.95)
    pothole = catalog.metric("pothole-on-time")
    assert (pothole.name, pothole.sla.business_days, pothole.case_types) == (
        "POTHOLES", 2, BOSTON.metric("pothole-on-time").case_types)
    assert [m.id for m in catalog.metrics] == [m.id for m in BOSTON.metrics]
    untouched = [m for m in catalog.metrics if m.id not in ("311-call-center", "pothole-on-time")]
    assert untouched == [m for m in BOSTON.metrics if m.id not in ("311-call-center", "pothole-on-time")]


def test_metric_overrides_of_an_unknown_metric_or_of_an_id_are_refused(tmp_path):
    unknown = write(tmp_path / "unknown.yaml", {"extends": "boston.yaml",
                                                "metric_overrides": {"311-call-centre": {"target": 0.9}}})
    error = refusal(unknown)
    assert error.source == str(unknown)
    assert error.problems == ["metric_overrides.311-call-centre: no metric has this id"]

    renamed = write(tmp_path / "renamed.yaml", {"extends": "boston.yaml",
                                                "metric_overrides": {"homicides": {"id": "murders"}}})
    assert refusal(renamed).problems == ["metric_overrides.homicides.id: a metric's id cannot be overridden "
                                         "(give the whole metric under metrics: instead)"]

    for value in (["311-call-center"], {"311-call-center": 0.9}):
        shapeless = write(tmp_path / "shapeless.yaml", {"extends": "boston.yaml", "metric_overrides": value})
        assert refusal(shapeless).problems[0].startswith("metric_overrides")
        assert "give a mapping" in refusal(shapeless).problems[0]


def test_an_invalid_override_names_the_metric_the_field_and_the_files(tmp_path):
    child = write(tmp_path / "child.yaml", {"extends": "boston.yaml",
                                            "metric_overrides": {"homicides": {"target": 0.9}}})
    error = refusal(child)
    assert error.source == f"{child} (extends boston.yaml)"
    assert error.problems == ["metrics[10] (homicides): trend metrics compare with past years and take no target"]


def test_a_path_never_falls_back_to_a_shipped_catalog(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    error = refusal("./boston-calendar.yaml")
    assert error.problems == ["cannot read: No such file or directory"]
    child = write(tmp_path / "child.yaml", {"extends": "./boston.yaml"})
    assert refusal(child).problems[0].startswith("extends: './boston.yaml': cannot read")


def test_metric_overrides_null_is_refused(tmp_path):
    child = write(tmp_path / "child.yaml", {"extends": "boston.yaml", "metric_overrides": None})
    assert refusal(child).problems[0].startswith("metric_overrides: give a mapping of metric id")
