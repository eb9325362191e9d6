"""The validator and the published JSON Schema files say the same thing."""

import json
from importlib import resources

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from schemas.events import InvalidEvent, decode_event, validate_event
from schemas.outputs import dead_letter_record, output_record, snapshot_record
from scoring.engine import HotLead, StageChange, apply, new_state, snapshot
from tests.factories import DEFAULT_RULES, T0, event, raw_event


def schema(name):
    text = resources.files("schemas").joinpath("json", f"{name}.schema.json").read_text()
    document = json.loads(text)
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document, format_checker=FormatChecker())


EVENT_SCHEMA = schema("event")


def test_a_valid_event_is_decoded_with_its_key_and_time():
    decoded = decode_event(orjson.dumps(raw_event("form_submitted", properties={"form": "contact"})))
    assert (decoded.contact_id, decoded.type, decoded.identified) == ("c-1", "form_submitted", True)
    assert decoded.occurred_ms == T0
    assert decoded.properties == {"form": "contact"}


def test_an_anonymous_event_is_keyed_by_its_anonymous_id_and_not_identified():
    document = raw_event(anonymous_id="anon-9")
    del document["contact_id"]
    decoded = validate_event(document)
    assert (decoded.contact_id, decoded.identified) == ("anon-9", False)


def test_an_email_in_the_properties_identifies_an_anonymous_contact():
    document = raw_event("newsletter_subscribed", anonymous_id="anon-9", properties={"email": "a@b.c"})
    del document["contact_id"]
    assert validate_event(document).identified


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        (b"{not json", "", "not valid JSON"),
        (b"[1, 2]", "", "expected a JSON object, got array"),
        (orjson.dumps({k: v for k, v in raw_event().items() if k != "event_id"}), "event_id", "required"),
        (orjson.dumps(raw_event(event_id="")), "event_id", "non-empty string"),
        (orjson.dumps(raw_event(type="Page Viewed")), "type", "lower-case"),
        (orjson.dumps({k: v for k, v in raw_event().items() if k != "contact_id"}), "contact_id", "one of contact_id"),
        (orjson.dumps(raw_event(occurred_at="yesterday")), "occurred_at", "RFC 3339"),
        (orjson.dumps(raw_event(occurred_at="2026-10-01T09:00:00")), "occurred_at", "no UTC offset"),
        (orjson.dumps(raw_event(occurred_at=1764149400)), "occurred_at", "required"),
        (orjson.dumps(raw_event(properties=[1])), "properties", "expected an object, got array"),
        (orjson.dumps(raw_event(source=3)), "source", "expected a string"),
    ],
)
def test_every_rejection_names_the_field_and_the_reason(raw, field, reason):
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw)
    assert caught.value.field == field
    assert reason in caught.value.reason


JSON_VALUES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(alphabet="aZ0-_ é", max_size=3)
    | st.sampled_from([[], [1], {}, {"a": 1}])
)
MUTATIONS = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.one_of(JSON_VALUES, st.just("e-7")),
        "type": st.one_of(JSON_VALUES, st.sampled_from(["demo_requested", "Demo", "x.y_1"])),
        "contact_id": st.one_of(JSON_VALUES, st.just("c-9")),
        "anonymous_id": st.one_of(JSON_VALUES, st.just("a-9")),
        "occurred_at": st.one_of(
            JSON_VALUES, st.sampled_from(["2026-01-01T00:00:00+01:00", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z"])
        ),
        "properties": JSON_VALUES,
        "source": JSON_VALUES,
    },
)


@given(MUTATIONS, st.sets(st.sampled_from(["event_id", "type", "contact_id", "occurred_at"])))
def test_the_json_schema_accepts_exactly_what_the_validator_accepts(changes, removed):
    document = {k: v for k, v in {**raw_event(), **changes}.items() if k not in removed}
    document = {
        k: v
        for k, v in document.items()
        if not (k in ("source", "properties", "contact_id", "anonymous_id") and v is None)
    }
    try:
        validate_event(document)
        accepted = True
    except InvalidEvent:
        accepted = False
    assert EVENT_SCHEMA.is_valid(document) == accepted


def test_every_output_record_matches_its_published_schema():
    state = new_state("c-1")
    outputs = []
    for item in [
        event("profile_updated", T0, seniority="c_level", budget=60_000, company_size=300, industry="saas"),
        event("demo_requested", T0),
        event("webinar_attended", T0),
        event("deal_lost", T0),
    ]:
        state, produced, _ = apply(state, item, DEFAULT_RULES)
        outputs.extend(produced)
    assert {type(o) for o in outputs} == {StageChange, HotLead}
    for output in outputs:
        name = "stage-change" if isinstance(output, StageChange) else "hot-lead"
        schema(name).validate(output_record(output))
    schema("contact-score").validate(snapshot_record(snapshot(state, T0, DEFAULT_RULES)))
    letter = dead_letter_record(
        "not valid JSON", "", b"\xff{", topic="events", partition=3, offset=17, key=b"c-1", received_ms=T0
    )
    schema("dead-letter").validate(letter)
    assert letter["value"] == {"base64": "/3s="}
