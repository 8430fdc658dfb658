"""`cityscore import open311 URL`: a real (fake) Open311 endpoint over HTTP, paging or not, with its 90-day limit."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli.commands import main
from shared.core.catalog import load_catalog

from tests.fakes.open311 import FakeOpen311
from tests.helpers.open311 import city_requests

FEEDS = Path(__file__).resolve().parents[1] / "data" / "feeds"
CATALOG_FILE = FEEDS / "philadelphia_open311.yaml"
CATALOG = load_catalog(CATALOG_FILE)
END = datetime(2024, 6, 30, 12, tzinfo=timezone.utc)
# Enough that a 90-day window holds more closed requests than a page (500) and than the spec's limit (1,000).
REQUESTS = city_requests(4000, END, days=200)


@pytest.fixture
def endpoint(request):
    fake = FakeOpen311(REQUESTS, **request.param)
    url = fake.start()
    yield fake, url
    fake.stop()


def imported(url: str, tmp_path, *extra) -> tuple[list[dict], str]:
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(main, ["import", "open311", url, "--feed", "open311", "--catalog", str(CATALOG_FILE),
                                       "--start", "2023-12-01", "--end", "2024-06-30", "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()], result.stderr


def saved_answer_events(tmp_path) -> list[dict]:
    saved = tmp_path / "requests.json"
    saved.write_text(json.dumps(REQUESTS))
    out = tmp_path / "saved.jsonl"
    result = CliRunner().invoke(main, ["import", "open311", str(saved), "--feed", "open311", "--catalog",
                                       str(CATALOG_FILE), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def assert_windows_within_90_days(fake: FakeOpen311) -> None:
    assert fake.refused_windows == []
    for call in fake.calls:
        start = datetime.fromisoformat(call.params["start_date"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(call.params["end_date"].replace("Z", "+00:00"))
        assert timedelta(0) < end - start <= timedelta(days=90)
        assert call.params["status"] in ("open", "closed")


@pytest.mark.parametrize("endpoint", [{"paging": True}], indirect=True)
def test_an_endpoint_that_pages_is_read_page_by_page_every_request_once(endpoint, tmp_path):
    fake, url = endpoint
    events, stderr = imported(url, tmp_path)
    assert_windows_within_90_days(fake)
    served = Counter(rid for call in fake.calls for rid in call.ids)
    assert set(served) == {r["service_request_id"] for r in REQUESTS}  # every request was read
    assert any(call.params["page"] == "2" and call.ids for call in fake.calls)  # more than a page in a window
    assert Counter(e["case_id"] for e in events).most_common(1)[0][1] == 1  # each once
    # The same events as the saved answer of every request: one row rule.
    assert sorted(map(json.dumps, events)) == sorted(map(json.dumps, saved_answer_events(tmp_path)))
    assert "(the endpoint pages with page/page_size)" in stderr
    assert "4000 distinct requests requested 2023-12-01 to 2024-06-30" in stderr


@pytest.mark.parametrize("endpoint", [{"paging": True, "max_page_size": 100}], indirect=True)
def test_an_endpoint_capping_page_size_below_ours_is_read_to_its_last_page(endpoint, tmp_path):
    # Asked for 500 a page, it answers 100: a short first page is not the whole window.
    fake, url = endpoint
    events, stderr = imported(url, tmp_path)
    assert_windows_within_90_days(fake)
    served = Counter(rid for call in fake.calls for rid in call.ids)
    assert set(served) == {r["service_request_id"] for r in REQUESTS}
    assert max(int(call.params["page"]) for call in fake.calls) > 5
    assert sorted(map(json.dumps, events)) == sorted(map(json.dumps, saved_answer_events(tmp_path)))
    assert "(the endpoint pages with page/page_size)" in stderr
    # Read with the endpoint's own page size, each window ends at its first empty page.
    fake.calls.clear()
    again, _ = imported(url, tmp_path, "--page-size", "100", "--limit", "100")
    assert sorted(map(json.dumps, again)) == sorted(map(json.dumps, events))
    assert all(call.params["page_size"] == "100" for call in fake.calls)
    last_pages = [call for call in fake.calls if not call.ids]
    assert len(last_pages) == len({(c.params["start_date"], c.params["status"]) for c in fake.calls})


@pytest.mark.parametrize("endpoint", [{"paging": False}], indirect=True)
def test_an_endpoint_that_does_not_page_is_asked_in_halves_until_nothing_is_cut(endpoint, tmp_path):
    fake, url = endpoint
    events, stderr = imported(url, tmp_path)
    assert_windows_within_90_days(fake)
    # An answer of the whole limit may have been cut: its window was asked again in halves.
    cut = [call for call in fake.calls if len(call.ids) == 1000]
    assert cut
    for call in cut:
        assert any(other.params["start_date"] == call.params["start_date"] and other.params["status"] ==
                   call.params["status"] and other.params["end_date"] < call.params["end_date"] for other in fake.calls)
    assert sorted(map(json.dumps, events)) == sorted(map(json.dumps, saved_answer_events(tmp_path)))
    assert "(the endpoint does not page)" in stderr and "halved" in stderr


@pytest.mark.parametrize("endpoint", [{"paging": True}], indirect=True)
def test_an_endpoint_failing_past_its_retries_stops_the_import_naming_it(endpoint, tmp_path):
    fake, url = endpoint
    fake.fail_next(100)
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(main, ["import", "open311", url, "--feed", "open311", "--catalog", str(CATALOG_FILE),
                                       "--start", "2024-06-01", "--end", "2024-06-30", "--out", str(out)])
    assert result.exit_code == 1
    assert "answered HTTP 500" in result.output and "requests.json" in result.output
    assert len(fake.calls) == 5  # the first call and its 4 retries
    assert not out.exists()
