"""`cityscore cases` (the cases behind a score) and the backlog in `cityscore score`'s JSON."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner

from services.cli.commands import main

METRIC = "signal-repair-on-time"  # 24-hour SLA, target 0.8


def case(event_id, case_id, opened, closed=None, **extra):
    return {"event_id": event_id, "type": "case", "metric": METRIC, "case_id": case_id,
            "opened_at": opened, "closed_at": closed, **extra}


EVENTS = [
    case("e1", "on-time", "2026-07-20T08:00:00-04:00", "2026-07-21T08:00:00-04:00"),  # exactly at its due time
    case("e2", "late", "2026-07-19T08:00:00-04:00", "2026-07-21T10:30:00-04:00",
         attributes={"neighborhood": "Roxbury", "caller": "Jane Doe"}),
    case("e3", "overdue", "2026-07-20T09:00:00-04:00", attributes={"neighborhood": "Dorchester"}),
    case("e4", "due-soon", "2026-07-22T12:00:00-04:00"),
    case("e5", "closed-later", "2026-07-20T08:30:00-04:00", "2026-07-23T09:00:00-04:00"),  # after the as-of day
]


def events_file(tmp_path, events=EVENTS, extra_lines=()):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([json.dumps(e) for e in events] + list(extra_lines)) + "\n")
    return path


def public_catalog(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text(f"extends: boston.yaml\nmetric_overrides:\n  {METRIC}: {{public_attributes: [neighborhood]}}\n")
    return path


def run(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def cases_of(tmp_path, status, *extra):
    return run("cases", "--events", events_file(tmp_path), "--metric", METRIC, "--as-of", "2026-07-22",
               "--status", status, *extra)


def test_cases_json_lists_the_late_cases_of_the_week_with_their_times_in_local_time(tmp_path):
    result = cases_of(tmp_path, "late")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "metric": METRIC, "as_of": "2026-07-22", "status": "late",
        "window": "week", "start": "2026-07-16", "end": "2026-07-22",
        "cases": [{"case_id": "late", "opened_at": "2026-07-19T08:00:00-04:00", "due_at": "2026-07-20T08:00:00-04:00",
                   "closed_at": "2026-07-21T10:30:00-04:00", "status": "late", "hours_late": 26.5,
                   "attributes": {}}],
    }


def test_cases_json_on_time_open_and_overdue(tmp_path):
    on_time = json.loads(cases_of(tmp_path, "on_time").stdout)["cases"]
    assert [(c["case_id"], c["hours_late"]) for c in on_time] == [("on-time", 0.0)]
    overdue = json.loads(cases_of(tmp_path, "overdue").stdout)
    assert "window" not in overdue  # a backlog is the end of the as-of day, not a window
    # Open at the end of 22 July, the case closed the next day is overdue then, and shown open.
    assert [(c["case_id"], c["closed_at"], c["hours_late"]) for c in overdue["cases"]] == [
        ("overdue", None, 39.0), ("closed-later", None, 39.5)]
    assert [c["case_id"] for c in json.loads(cases_of(tmp_path, "open").stdout)["cases"]] == ["due-soon"]


def test_cases_csv_and_table_show_only_the_public_attributes(tmp_path):
    catalog = public_catalog(tmp_path)
    result = cases_of(tmp_path, "late", "--format", "csv", "--catalog", catalog)
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows == [["case_id", "opened_at", "due_at", "closed_at", "status", "hours_late", "neighborhood"],
                    ["late", "2026-07-19T08:00:00-04:00", "2026-07-20T08:00:00-04:00", "2026-07-21T10:30:00-04:00",
                     "late", "26.5", "Roxbury"]]
    assert "Jane Doe" not in result.stdout
    overdue = list(csv.reader(io.StringIO(cases_of(tmp_path, "overdue", "--format", "csv", "--catalog", catalog).stdout)))
    assert overdue[1][3] == "" and overdue[1][6] == "Dorchester"  # open: no closed time
    assert overdue[2][0] == "closed-later" and overdue[2][3] == ""

    table = cases_of(tmp_path, "late", "--format", "table", "--catalog", catalog)
    assert table.exit_code == 0, table.output
    header, row = table.stdout.splitlines()
    assert header.split() == ["case_id", "opened_at", "due_at", "closed_at", "status", "hours_late", "neighborhood"]
    assert row.split() == ["late", "2026-07-19T08:00:00-04:00", "2026-07-20T08:00:00-04:00",
                           "2026-07-21T10:30:00-04:00", "late", "26.5", "Roxbury"]
    empty = cases_of(tmp_path, "late", "--format", "table", "--window", "day")
    assert empty.stdout.splitlines()[-1] == "(no late cases)"


def test_cases_refusals_name_the_field(tmp_path):
    unknown = cases_of(tmp_path, "late", "--window", "year")
    assert unknown.exit_code == 2 and "'--window'" in unknown.output and "'year' is not one of" in unknown.output
    status = cases_of(tmp_path, "closed")
    assert status.exit_code == 2 and "'--status'" in status.output
    for metric, reason in (("no-such-metric", "no metric 'no-such-metric'"), ("shootings", "not cases")):
        result = run("cases", "--events", events_file(tmp_path), "--metric", metric, "--as-of", "2026-07-22",
                     "--status", "late")
        assert result.exit_code == 2 and "'--metric'" in result.output and reason in result.output
    bad = run("cases", "--events", events_file(tmp_path, extra_lines=["not json"]), "--metric", METRIC,
              "--as-of", "2026-07-22", "--status", "late")
    assert bad.exit_code == 1 and "not valid JSON" in bad.stderr and bad.stdout == ""


def test_score_json_shows_each_case_metrics_backlog_and_projected_week(tmp_path):
    result = run("score", "--events", events_file(tmp_path), "--as-of", "2026-07-22", "--no-percentile")
    assert result.exit_code == 0, result.output
    board = json.loads(result.stdout)
    signals = board["metrics"][METRIC]
    assert signals["week"]["numerator"] == 1 and signals["week"]["denominator"] == 2
    assert signals["open"] == {"overdue": 2, "due_soon": 1}
    assert signals["projected"] == {"week": {"score": 1 / 4 / 0.8, "numerator": 1.0, "denominator": 4.0}}
    assert board["metrics"]["pothole-on-time"]["open"] == {"overdue": 0, "due_soon": 0}
    assert "open" not in board["metrics"]["shootings"] and "projected" not in board["metrics"]["shootings"]


def test_score_json_projects_the_alert_windows_asked_for(tmp_path):
    result = run("score", "--events", events_file(tmp_path), "--as-of", "2026-07-22", "--no-percentile",
                 "--alert-window", "week", "--alert-window", "month")
    assert set(json.loads(result.stdout)["metrics"][METRIC]["projected"]) == {"week", "month"}
    refused = run("score", "--events", events_file(tmp_path), "--as-of", "2026-07-22", "--alert-window", "year")
    assert refused.exit_code == 2 and "'--alert-window'" in refused.output
