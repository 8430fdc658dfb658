"""`cityscore breakdown`: who waits longer, from a file of events (Boston's catalog breaks its case
metrics down by neighborhood)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from services.cli.commands import main

METRIC = "signal-repair-on-time"  # 24-hour SLA, target 0.8


def case(event_id, case_id, opened, closed=None, where=None):
    event = {"event_id": event_id, "type": "case", "metric": METRIC, "case_id": case_id,
             "opened_at": opened, "closed_at": closed}
    if where is not None:
        event["attributes"] = {"neighborhood": where, "caller": "Jane Doe"}
    return event


EVENTS = [
    case("e1", "c1", "2026-07-20T08:00:00-04:00", "2026-07-21T08:00:00-04:00", "Roxbury"),  # exactly at its due time
    case("e2", "c2", "2026-07-19T08:00:00-04:00", "2026-07-21T10:30:00-04:00", "Roxbury"),  # late
    case("e3", "c3", "2026-07-20T09:00:00-04:00", "2026-07-23T09:00:00-04:00", "Dorchester"),  # after the as-of day
    case("e4", "c4", "2026-07-20T09:00:00-04:00", "2026-07-22T09:00:00-04:00", "Dorchester"),  # late
    case("e5", "c5", "2026-07-10T09:00:00-04:00", "2026-07-10T10:00:00-04:00", "Dorchester"),  # before the week
    case("e6", "c6", "2026-07-20T09:00:00-04:00", "2026-07-20T10:00:00-04:00"),  # no neighbourhood
    case("e7", "c7", "2026-07-20T09:00:00-04:00", "2026-07-20T10:00:00-04:00", "Allston"),
    case("e8", "c7", "2026-07-20T09:00:00-04:00", None, "Allston"),  # reopened: not counted while open
]


def run(tmp_path, *args, events=EVENTS):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return CliRunner().invoke(main, ["breakdown", "--events", str(path), "--as-of", "2026-07-22", *args])


def test_json_worst_first_with_the_window_and_target(tmp_path):
    result = run(tmp_path, "--metric", METRIC, "--by", "neighborhood")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown == {
        "metric": METRIC, "by": "neighborhood", "as_of": "2026-07-22", "window": "week",
        "start": "2026-07-16", "end": "2026-07-22", "target": 0.8,
        "groups": [
            {"group": "Dorchester", "numerator": 0, "denominator": 1, "share": 0.0},
            {"group": "Roxbury", "numerator": 1, "denominator": 2, "share": 0.5},
            {"group": "(not given)", "numerator": 1, "denominator": 1, "share": 1.0},
        ],
    }
    assert "Jane Doe" not in result.stdout


def test_csv_and_table(tmp_path):
    result = run(tmp_path, "--metric", METRIC, "--by", "neighborhood", "--format", "csv", "--window", "month")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "group,numerator,denominator,share",
        "Dorchester,1,2,0.5",
        "Roxbury,1,2,0.5",
        "(not given),1,1,1.0",
    ]
    table = run(tmp_path, "--metric", METRIC, "--by", "neighborhood", "--format", "table")
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines() == [
        "neighborhood  on time  closed  share",
        "Dorchester    0        1       0%",
        "Roxbury       1        2       50%",
        "(not given)   1        1       100%",
    ]
    empty = run(tmp_path, "--metric", "pothole-on-time", "--by", "neighborhood", "--format", "table")
    assert empty.stdout.splitlines()[-1] == "(no cases closed in the week)"


def test_refusals_name_the_option(tmp_path):
    unknown = run(tmp_path, "--metric", "nope", "--by", "neighborhood")
    assert unknown.exit_code == 2 and "'--metric'" in unknown.output and "no metric 'nope'" in unknown.output
    shootings = run(tmp_path, "--metric", "shootings", "--by", "neighborhood")
    assert shootings.exit_code == 2 and "'shootings' is fed incidents, not cases" in shootings.output
    caller = run(tmp_path, "--metric", METRIC, "--by", "caller")
    assert caller.exit_code == 2 and "'--by'" in caller.output
    assert "'caller' is not one of signal-repair-on-time's breakdowns in the catalog (neighborhood)" in caller.output
    window = run(tmp_path, "--metric", METRIC, "--by", "neighborhood", "--window", "year")
    assert window.exit_code == 2 and "'--window'" in window.output and "'year' is not one of" in window.output
