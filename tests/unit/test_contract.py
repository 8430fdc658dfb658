"""The event contract: what is accepted, and that every refusal names the field and the reason."""

import json

import pytest

from shared.core.catalog import load_catalog
from shared.core.contract import (
    CaseEvent,
    InvalidEvent,
    TallyEvent,
    event_json_schema,
    event_to_json,
    parse_event,
    validate_event,
)

BOSTON = load_catalog()

SPEC_EXAMPLES = [
    {"event_id": "311-101001240735-closed", "type": "case", "metric": "streetlight-on-time",
     "case_id": "101001240735", "opened_at": "2015-01-01T00:25:23-05:00",
     "closed_at": "2015-01-02T16:17:43-05:00", "due_at": "2015-01-16T08:30:00-05:00"},
    {"event_id": "ems-2026-07-22-0042", "type": "measurement", "metric": "ems-response-time",
     "occurred_at": "2026-07-22T14:03:00-04:00", "value": 5.4},
    {"event_id": "bpd-I26-004211", "type": "incident", "metric": "shootings",
     "occurred_at": "2026-07-22T23:40:00-04:00"},
    {"event_id": "bps-2026-03-02", "type": "tally", "metric": "bps-attendance",
     "date": "2026-03-02", "numerator": 43120, "denominator": 46012},
]


@pytest.mark.parametrize("example", SPEC_EXAMPLES, ids=lambda e: e["type"])
def test_the_spec_examples_are_valid_and_round_trip(example):
    event = validate_event(json.dumps(example), BOSTON)
    assert event.event_id == example["event_id"]
    again = validate_event(event_to_json(event), BOSTON)
    assert again == event
    assert validate_event(example, BOSTON) == event  # a decoded object validates the same way


def test_incident_count_defaults_to_one():
    assert parse_event(SPEC_EXAMPLES[2]).count == 1


def test_open_case_has_no_closed_at():
    event = parse_event({**SPEC_EXAMPLES[0], "closed_at": None})
    assert isinstance(event, CaseEvent) and event.closed_at is None


def problems(raw, catalog=BOSTON):
    with pytest.raises(InvalidEvent) as caught:
        validate_event(raw if isinstance(raw, (str, bytes)) else json.dumps(raw), catalog)
    return {p.field: p.reason for p in caught.value.problems}


def test_unknown_field_is_refused_by_name():
    found = problems({**SPEC_EXAMPLES[1], "vaule": 5.4})
    assert found == {"vaule": "unknown field (the contract does not have it)"}


def test_timestamp_without_offset_is_refused():
    found = problems({**SPEC_EXAMPLES[1], "occurred_at": "2026-07-22T14:03:00"})
    assert list(found) == ["occurred_at"] and "UTC offset" in found["occurred_at"]


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"occurred_at": 1753207380}, "occurred_at", "RFC 3339"),  # epoch numbers are not guessed at
        ({"occurred_at": "yesterday"}, "occurred_at", "RFC 3339"),
        ({"value": "5.4"}, "value", "number"),  # strict: no strings for numbers
        ({"value": float("nan")}, "value", "finite"),
        ({"event_id": ""}, "event_id", "at least 1"),
        ({"event_id": "x" * 129}, "event_id", "at most 128"),
        ({"type": "complaint"}, "type", "one of case, measurement, incident, tally"),
        ({"metric": "potholes"}, "metric", "unknown metric 'potholes'"),
        ({"metric": "shootings"}, "type", "does not accept 'measurement'"),
        ({"metric": "311-surveys", "value": 6}, "value", "at most 5"),
        ({"metric": "ems-response-time", "value": -1}, "value", "at least 0"),
    ],
)
def test_bad_measurements_name_the_field(change, field, words):
    found = problems({**SPEC_EXAMPLES[1], **change})  # json.dumps writes NaN, as a careless sender would
    assert field in found, found
    assert words in found[field]


@pytest.mark.parametrize(
    "example, field, value",
    [
        (0, "opened_at", "9999-12-30T00:00:00+00:00"),  # without due_at, its due date would be past 9999
        (0, "closed_at", "0001-01-01T01:00:00+00:00"),
        (0, "due_at", "2100-01-01T00:00:00Z"),
        (1, "occurred_at", "1999-12-31T23:59:59+00:00"),
        (1, "occurred_at", "2099-12-31T23:00:00-05:00"),  # already 2100 in UTC
        (3, "date", "1999-12-31"),
        (3, "date", "2100-01-01"),
    ],
)
def test_timestamps_and_dates_outside_2000_to_2099_are_refused_by_name(example, field, value):
    found = problems({**SPEC_EXAMPLES[example], field: value})
    assert list(found) == [field], found
    assert found[field].startswith("must fall between 2000-01-01 and 2099-12-31")


@pytest.mark.parametrize("example, field, value", [(1, "occurred_at", "2000-01-01T00:00:00Z"),
                                                   (1, "occurred_at", "2099-12-31T23:59:59Z"),
                                                   (3, "date", "2000-01-01"), (3, "date", "2099-12-31")])
def test_the_first_and_last_instants_of_the_range_are_accepted(example, field, value):
    # The contract's own range; a catalog narrows it to each metric's history (tests below).
    event = parse_event(json.dumps({**SPEC_EXAMPLES[example], field: value}))
    assert getattr(event, field).isoformat().startswith(value[:10])


def test_missing_fields_are_each_named():
    found = problems({"event_id": "x", "type": "case", "metric": "pothole-on-time"})
    assert found == {"case_id": "required field is missing", "opened_at": "required field is missing"}


def test_missing_type_is_named():
    assert problems({"event_id": "x", "metric": "pothole-on-time"}) == {"type": "required field is missing"}


def test_case_closed_before_it_opened():
    found = problems({**SPEC_EXAMPLES[0], "closed_at": "2014-12-31T10:00:00-05:00"})
    assert found == {"closed_at": "is before opened_at"}


def test_case_attributes_must_be_strings():
    assert "attributes.subtype" in problems({**SPEC_EXAMPLES[0], "attributes": {"subtype": 7}})


@pytest.mark.parametrize(
    "change, field",
    [
        ({"numerator": 5, "denominator": None}, "denominator"),
        ({"numerator": -1}, "numerator"),
        ({"count": 3}, "count"),  # both shapes at once
        ({"date": "2026-02-30"}, "date"),
        ({"date": "03/02/2026"}, "date"),
    ],
)
def test_bad_tallies(change, field):
    raw = {**SPEC_EXAMPLES[3], **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    assert field in problems(raw)


def test_tally_shape_must_fit_the_metric_kind():
    ratio_for_trend = {"event_id": "t", "type": "tally", "metric": "library-users", "date": "2026-03-02",
                       "numerator": 1, "denominator": 2}
    assert "count" in problems(ratio_for_trend)
    count_for_ratio = {**SPEC_EXAMPLES[3]}
    del count_for_ratio["numerator"], count_for_ratio["denominator"]
    count_for_ratio["count"] = 4
    assert "numerator" in problems(count_for_ratio)


def test_a_survey_tally_cannot_average_above_the_top_rating():
    raw = {"event_id": "t", "type": "tally", "metric": "311-surveys", "date": "2026-03-02",
           "numerator": 60, "denominator": 10}
    assert "numerator" in problems(raw)


def test_not_json_and_not_an_object():
    assert "not valid JSON" in problems(b"{nope")[""]
    assert list(problems(b"[1, 2]")) == [""]


def test_a_count_tally_parses():
    event = parse_event({"event_id": "t", "type": "tally", "metric": "library-users", "date": "2026-03-02",
                         "count": 15000})
    assert isinstance(event, TallyEvent) and event.count == 15000


def test_json_schema_describes_all_five_types_and_forbids_unknown_fields():
    schema = event_json_schema()
    assert set(schema["discriminator"]["mapping"]) == {"case", "measurement", "incident", "tally", "withdrawal"}
    assert "withdraws" in schema["$defs"]["WithdrawalEvent"]["required"]
    assert "replaces" in schema["$defs"]["IncidentEvent"]["properties"]
    for definition in schema["$defs"].values():
        assert definition.get("additionalProperties") is False
    assert "opened_at" in schema["$defs"]["CaseEvent"]["required"]


# -- control characters and bounds: one event must not be able to stop the scorer ------------------

CONTROL_CHARACTERS = ["\x00", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f"]


@pytest.mark.parametrize("char", CONTROL_CHARACTERS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize(
    "example, change, field",
    [
        (1, lambda c: {"event_id": f"ems{c}1"}, "event_id"),
        (1, lambda c: {"metric": f"ems-response-time{c}"}, "metric"),
        (1, lambda c: {"department": f"ems{c}"}, "department"),
        (0, lambda c: {"case_id": f"1010{c}"}, "case_id"),
        (0, lambda c: {"attributes": {"subtype": f"light{c}ing"}}, "attributes.subtype"),
        (0, lambda c: {"attributes": {f"sub{c}type": "lighting"}}, "attributes"),
    ],
)
def test_control_characters_are_refused_in_every_string_by_name(example, change, field, char):
    # A NUL is what PostgreSQL refuses (SQLSTATE 22P05) when the scorer folds the batch.
    found = problems(json.dumps({**SPEC_EXAMPLES[example], **change(char)}))
    assert list(found) == [field], found
    assert found[field].startswith("must not contain control characters"), found
    assert f"U+{ord(char):04X}" in found[field]
    assert char not in "".join(found) + "".join(found.values())  # the reason itself is printable


def test_a_nul_written_as_raw_json_is_refused():
    raw = (b'{"event_id": "bpd-\\u0000-1", "type": "incident", "metric": "shootings",'
           b' "occurred_at": "2026-07-22T23:40:00-04:00"}')
    assert problems(raw) == {"event_id": "must not contain control characters (U+0000 at character 5)"}


@pytest.mark.parametrize("text", ["Sjöström", "Dorchester – Fields Corner", "\u00a0no-break", "caf\u00e9 ☕", "路灯"])
def test_printable_text_in_any_language_is_accepted(text):
    event = validate_event(json.dumps({**SPEC_EXAMPLES[0], "case_id": text, "attributes": {text: text}}), BOSTON)
    assert event.case_id == text and event.attributes == {text: text}


def test_every_string_field_of_the_schema_refuses_control_characters():
    """A string field added later without the rule would let a NUL reach the database again."""
    schema = event_json_schema()
    unguarded = []

    def visit(node, where):
        if isinstance(node, dict):
            if node.get("type") == "string" and "format" not in node and "const" not in node and "enum" not in node:
                if node.get("pattern") != r"^[^\x00-\x1f\x7f-\x9f]*$":
                    unguarded.append(where)
            if isinstance(node.get("patternProperties"), dict):
                assert list(node["patternProperties"]) == [r"^[^\x00-\x1f\x7f-\x9f]*$"], where
            for key, value in node.items():
                visit(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                visit(value, f"{where}[{index}]")

    visit(schema["$defs"], "$defs")
    assert unguarded == []


@pytest.mark.parametrize(
    "example, change, field",
    [
        (2, {"count": 10 ** 308}, "count"),  # two of these made a day's total infinite
        (2, {"count": 1_000_000_001}, "count"),
        (3, {"numerator": 1e12, "denominator": 2e12}, "denominator"),
        (3, {"numerator": 1e308, "denominator": 1e308}, "denominator"),
        (1, {"value": 1e300}, "value"),  # ems-response-time has no max_value in the catalog
        (1, {"value": -1e300}, "value"),
    ],
)
def test_numbers_beyond_what_any_feed_can_mean_are_refused_by_name(example, change, field):
    found = problems({**SPEC_EXAMPLES[example], **change})
    assert field in found, found
    assert "1,000,000,000" in found[field], found


def test_library_users_tally_count_is_bounded_too():
    raw = {"event_id": "t", "type": "tally", "metric": "library-users", "date": "2026-03-02", "count": 5e9}
    assert problems(raw) == {"count": "must be at most 1,000,000,000 (the contract's bound on any one number)"}


@pytest.mark.parametrize("example, change", [(2, {"count": 1_000_000_000}),
                                             (3, {"numerator": 1e9, "denominator": 1e9})])
def test_the_bound_itself_is_accepted(example, change):
    validate_event(json.dumps({**SPEC_EXAMPLES[example], **change}), BOSTON)


@pytest.mark.parametrize("metric", ["pothole-on-time", "311-call-center", "bps-attendance"])
def test_a_share_tally_cannot_count_more_than_its_denominator(metric):
    raw = {"event_id": "t", "type": "tally", "metric": metric, "date": "2026-03-02", "numerator": 11,
           "denominator": 10}
    found = problems(raw)
    assert list(found) == ["numerator"], found
    assert found["numerator"].startswith("must be at most the denominator"), found
    validate_event(json.dumps({**raw, "numerator": 10}), BOSTON)  # all of them is fine


def test_a_share_tally_with_nothing_to_count_cannot_count_something():
    raw = {"event_id": "t", "type": "tally", "metric": "pothole-on-time", "date": "2026-03-02", "numerator": 1,
           "denominator": 0}
    assert list(problems(raw)) == ["numerator"]


def test_a_survey_tally_cannot_average_below_the_lowest_rating():
    raw = {"event_id": "t", "type": "tally", "metric": "311-surveys", "date": "2026-03-02",
           "numerator": 5, "denominator": 10}
    assert problems(raw) == {"numerator": "below 1 per unit of denominator"}


@pytest.mark.parametrize("metric", ["311-call-center", "bfd-response-time"])
def test_threshold_measurements_cannot_be_negative(metric):
    found = problems({**SPEC_EXAMPLES[1], "metric": metric, "value": -0.5})
    assert found == {"value": f"must be at least 0 for {metric}"}
    validate_event(json.dumps({**SPEC_EXAMPLES[1], "metric": metric, "value": 0}), BOSTON)
