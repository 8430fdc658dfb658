"""Cabinets and the near-target band in a catalog: validated naming the field, and the band's standing."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from shared.core import wording
from shared.core.catalog import CatalogError, load_catalog, parse_catalog
from shared.core.scoring import standing


def boston_data() -> dict:
    return yaml.safe_load(resources.files("shared.catalogs").joinpath("boston.yaml").read_text())


def problems(change) -> list[str]:
    """The catalog's problems, without the "(top level): " a check across fields starts with."""
    data = boston_data()
    change(data)
    with pytest.raises(CatalogError) as caught:
        parse_catalog(data)
    return [problem.removeprefix("(top level): ") for problem in caught.value.problems]


def test_boston_groups_every_department_in_an_example_cabinet_once():
    catalog = load_catalog()
    members = [department for cabinet in catalog.cabinets for department in cabinet.departments]
    assert sorted(members) == sorted(d.id for d in catalog.departments)
    assert all("(example)" in cabinet.name for cabinet in catalog.cabinets)  # not Boston's real chart
    assert catalog.cabinet_of("ems").id == "public-safety"
    assert catalog.cabinets_by_id["streets"].departments == ("public-works", "transportation")
    # The calendar catalog extends Boston's, cabinets included.
    assert load_catalog("boston-calendar.yaml").cabinets == catalog.cabinets


def test_a_catalog_extending_boston_with_its_own_departments_has_no_boston_cabinets(tmp_path):
    own = tmp_path / "own.yaml"
    own.write_text("extends: boston.yaml\ncity: Own\ndepartments: [{id: boston-311, name: Own 311}]\n"
                   "metrics: [{id: calls, name: CALLS, kind: ratio, target: 0.9, department: boston-311, "
                   "feed: threshold, threshold: 30}]\n")
    assert load_catalog(own).cabinets == ()
    own.write_text(own.read_text() + "cabinets: [{id: all, name: All, departments: [boston-311]}]\n")
    assert [c.id for c in load_catalog(own).cabinets] == ["all"]


def test_a_catalog_without_cabinets_or_band_is_valid():
    data = boston_data()
    data.pop("cabinets")
    catalog = parse_catalog(data)
    assert catalog.cabinets == () and catalog.near_target is None and catalog.cabinet_of("ems") is None


def test_cabinet_errors_name_the_cabinet_and_field():
    assert problems(lambda d: d["cabinets"][1]["departments"].append("sanitation")) == [
        "cabinets[1] (streets).departments: unknown department 'sanitation'"]
    assert problems(lambda d: d["cabinets"][1]["departments"].append("fire")) == [
        "cabinets[1] (streets).departments: 'fire' is already in cabinet 'public-safety' "
        "(a department belongs to one cabinet)"]
    # Every problem at once: the id, and the department already in another cabinet.
    assert problems(lambda d: d["cabinets"].append(dict(d["cabinets"][0], departments=["library"]))) == [
        "cabinets[4] (public-safety).id: used twice; cabinets[4] (public-safety).departments: 'library' is "
        "already in cabinet 'community' (a department belongs to one cabinet)"]
    assert problems(lambda d: d["cabinets"][0].update(departments=[]))[0].startswith(
        "cabinets[0] (public-safety).departments:")
    assert problems(lambda d: d["cabinets"][0].update(id="Public Safety"))[0].startswith(
        "cabinets[0] (Public Safety).id: String should match pattern")
    assert problems(lambda d: d["cabinets"][0].update(chief="someone"))[0].startswith(
        "cabinets[0] (public-safety).chief:")


@pytest.mark.parametrize("band, reason", [(1, "less than 1"), (0, "greater than 0"), (1.5, "less than 1"),
                                          (0.905, "at most two decimals"), ("high", "valid number")])
def test_a_band_outside_0_to_1_or_finer_than_shown_is_refused(band, reason):
    found = problems(lambda d: d.update(near_target=band))
    assert len(found) == 1 and found[0].startswith("near_target:") and reason in found[0], found


def test_the_band_marks_shown_scores_from_it_up_to_below_1_as_near():
    band = 0.9
    shown = [0.5, 0.894, 0.896, 0.9, 0.95, 0.994, 0.996, 1.0, 1.2, None]
    assert [standing(score, band) for score in shown] == [
        "below", "below", "near", "near", "near", "near", "at", "at", "above", "none"]
    # Without a band, nothing changes: the same scores are below, at or above.
    assert [standing(score) for score in shown] == [
        "below", "below", "below", "below", "below", "below", "at", "at", "above", "none"]


def test_the_band_has_its_mark_and_words():
    assert wording.MARKS["near"] == "▽" and wording.STANDING_WORDS["near"] == "near target"
    assert wording.near_band_words(0.9) == "near target (0.90 to 0.99)"
    assert "▽ near target (0.90 to 0.99)" in wording.legend(0.9)
    assert "near" not in wording.legend()
