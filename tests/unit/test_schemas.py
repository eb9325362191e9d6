"""The validator and the published JSON Schema files say the same thing."""

import base64
import hashlib
import json
from importlib import resources

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from leadpulse.schemas.events import InvalidEvent, decode_event, validate_event
from leadpulse.schemas.limits import DEFAULT_LIMITS, InputLimits
from leadpulse.schemas.outputs import dead_letter_record, dumps, nurture_record, output_record, snapshot_record
from leadpulse.scoring.engine import HotLead, StageChange, apply, new_state, snapshot
from leadpulse.scoring.nurture import nurtures_at
from tests.factories import DAY_MS, DEFAULT_RULES, T0, event, raw_event


def schema(name):
    text = resources.files("leadpulse.schemas").joinpath("json", f"{name}.schema.json").read_text()
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
        (orjson.dumps(raw_event(type="Page Viewed")), "type", "not a native event type (lower case"),
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
        state, produced, *_ = apply(state, item, DEFAULT_RULES)
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
    assert (letter["size"], letter["truncated"]) == (2, False)


def test_nurture_records_of_every_track_match_their_schema():
    """Content chosen for an interest, and a contact in segments, as the schema describes."""
    reader = new_state("r-1")
    for item in [
        event("profile_updated", T0, "r-1", seniority="vp", budget=60_000, company_size=300, industry="saas"),
        event("page_viewed", T0 + 10 * DAY_MS, "r-1", path="/pricing"),
    ]:
        reader = apply(reader, item, DEFAULT_RULES).state
    records = [r for days in (10, 40, 60) for r in nurtures_at(reader, T0 + days * DAY_MS, DEFAULT_RULES)]
    assert {r.track for r in records} == {"fit-but-quiet", "stalled"}
    assert any(r.interest == "pricing" and r.segments for r in records)
    for record in records:
        schema("nurture").validate(nurture_record(record))
    lost = apply(reader, event("deal_lost", T0 + 11 * DAY_MS, "r-1"), DEFAULT_RULES).state
    recycled = [r for r in nurtures_at(lost, T0 + 110 * DAY_MS, DEFAULT_RULES) if r.track == "recycle"]
    assert [nurture_record(r)["stage"] for r in recycled] == ["nurturing"]
    schema("nurture").validate(nurture_record(recycled[0]))


def test_an_occurred_at_outside_1970_to_9999_is_refused():
    for text in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59-05:00"):
        with pytest.raises(InvalidEvent) as caught:
            decode_event(orjson.dumps(raw_event(occurred_at=text)))
        assert caught.value.field == "occurred_at"
        assert "outside 1970-01-01..9999-12-31" in caught.value.reason


# Input limits: every rejection names the field path, the limit and the setting that raises it.


def rejection(raw, limits=DEFAULT_LIMITS):
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw, limits)
    return caught.value.field, caught.value.reason


def with_properties(properties, **fields):
    return orjson.dumps(raw_event(properties=properties, **fields))


def nested(levels):
    """properties.l1.l2...: the innermost value is `levels` levels inside properties."""
    value = 1
    for level in range(levels, 1, -1):
        value = {f"l{level}": value}
    return {"l1": value}


def test_an_oversized_record_is_refused_before_it_is_parsed():
    field, reason = rejection(b"x" * 100_001)  # not JSON: parsing would say so
    assert (field, reason) == ("", "record is 100001 bytes, over the limit of 100000 (LEADPULSE_MAX_RECORD_BYTES)")


def test_a_record_of_exactly_the_size_limit_is_decoded():
    limits = InputLimits(max_record_bytes=1_000)
    bare = len(with_properties({"note": ""}))
    assert decode_event(with_properties({"note": "n" * (1_000 - bare)}), limits).properties["note"]
    assert rejection(with_properties({"note": "n" * (1_001 - bare)}), limits)[1].startswith("record is 1001 bytes")


def test_text_input_is_measured_in_utf8_bytes():
    limits = InputLimits(max_record_bytes=1_000)
    text = with_properties({"note": "é" * 400}).decode()  # 400 characters, 800 bytes
    assert decode_event(text, limits).properties["note"] == "é" * 400
    assert rejection(with_properties({"note": "é" * 500}).decode(), limits)[1].startswith("record is 1")


def test_more_than_max_properties_keys_are_refused():
    assert len(decode_event(with_properties({f"p{i}": i for i in range(200)})).properties) == 200
    field, reason = rejection(with_properties({f"p{i}": i for i in range(201)}))
    assert (field, reason) == ("properties", "201 properties, over the limit of 200 (LEADPULSE_MAX_PROPERTIES)")


def test_nested_keys_do_not_count_as_properties():
    assert decode_event(with_properties({"form": {f"f{i}": i for i in range(300)}})).properties["form"]["f299"] == 299


def test_a_value_nested_deeper_than_max_depth_is_refused_naming_its_path():
    assert decode_event(with_properties(nested(8))).properties["l1"]
    field, reason = rejection(with_properties(nested(9)))
    assert field == "properties.l1.l2.l3.l4.l5.l6.l7.l8.l9"
    assert reason == "nested 9 levels deep, over the limit of 8 (LEADPULSE_MAX_DEPTH)"


def test_lists_count_as_nesting_levels():
    assert rejection(with_properties({"tags": [[[1]]]}), InputLimits(max_depth=3))[0] == "properties.tags[0][0][0]"
    assert decode_event(with_properties({"tags": [[[1]]]}), InputLimits(max_depth=4)).properties


def test_many_shallow_containers_are_not_mistaken_for_depth():
    items = [{"sku": f"s{i}", "qty": i} for i in range(50)]
    assert len(decode_event(with_properties({"items": items, "more": [[1], [2]]})).properties["items"]) == 50


def test_a_record_nested_beyond_the_json_parser_is_a_dead_letter_not_a_crash():
    limits = InputLimits(max_record_bytes=900_000)
    field, reason = rejection(b"[" * 100_000 + b"]" * 100_000, limits)
    assert field == ""
    assert reason.startswith("not valid JSON")


def test_a_record_nested_within_the_parser_but_over_the_limit_is_refused_without_recursion():
    deep = b'{"event_id": "e", "type": "t", "contact_id": "c", "occurred_at": "2026-10-01T09:00:00Z", '
    deep += b'"properties": {"x": ' + b"[" * 1000 + b"]" * 1000 + b"}}"
    field, reason = rejection(deep)
    assert field == "properties.x" + "[0]" * 8
    assert "LEADPULSE_MAX_DEPTH" in reason


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (raw_event(properties={"job_title": "t" * 2_001}), "properties.job_title"),
        (raw_event(properties={"tags": ["ok", "t" * 2_001]}), "properties.tags[1]"),
        (raw_event(properties={"form": {"message": "t" * 2_001}}), "properties.form.message"),
        (raw_event(source="s" * 2_001), "source"),
        (raw_event(extra={"notes": "n" * 2_001}), "extra.notes"),
    ],
)
def test_a_string_over_max_string_is_refused_wherever_it_is(document, field):
    assert rejection(orjson.dumps(document)) == (
        field,
        "2001 bytes as stored, over the limit of 2000 (LEADPULSE_MAX_STRING)",
    )


def test_a_string_of_exactly_max_string_is_accepted():
    assert len(decode_event(with_properties({"job_title": "t" * 2_000})).properties["job_title"]) == 2_000


def test_an_overlong_key_is_refused_naming_the_object_that_holds_it():
    field, reason = rejection(with_properties({"k" * 2_001: 1}))
    assert (field, reason) == (
        "properties",
        "a key is 2001 bytes as stored, over the limit of 2000 (LEADPULSE_MAX_STRING)",
    )


@pytest.mark.parametrize(
    ("padding", "stored"),
    [("\x01", 6), ("\n", 2), ("é", 2), ("€", 3), ("😀", 4), ('"', 2)],
)
def test_a_string_is_measured_in_the_bytes_it_is_stored_as_not_in_characters(padding, stored):
    """Padded values cost the state what they cost as JSON: 400 control characters are
    2,400 bytes once stored, over a 2,000-byte limit that 400 letters are well within."""
    count = 2_000 // stored
    assert decode_event(with_properties({"job_title": padding * count})).properties["job_title"] == padding * count
    assert rejection(with_properties({"job_title": padding * (count + 1)})) == (
        "properties.job_title",
        f"{stored * (count + 1)} bytes as stored, over the limit of 2000 (LEADPULSE_MAX_STRING)",
    )
    assert rejection(with_properties({padding * (count + 1): 1}))[1].startswith(
        f"a key is {stored * (count + 1)} bytes as stored"
    )


def test_identifiers_keep_their_own_shorter_limit():
    assert rejection(orjson.dumps(raw_event(event_id="e" * 3_000))) == ("event_id", "longer than 256 characters")


def test_custom_limits_are_applied():
    limits = InputLimits(max_properties=2, max_depth=1, max_string=300)
    assert rejection(with_properties({"a": 1, "b": 2, "c": 3}), limits)[0] == "properties"
    assert rejection(with_properties({"a": {"b": 1}}), limits)[0] == "properties.a.b"
    assert rejection(with_properties({"a": "x" * 301}), limits)[0] == "properties.a"


# Dead letters: bounded whatever the input, still readable and traceable to the original.


def letter_for(raw, key=b"c-1", reason="not valid JSON", **options):
    record = dead_letter_record(
        reason, "", raw, topic="events", partition=0, offset=5, key=key, received_ms=T0, **options
    )
    schema("dead-letter").validate(record)
    return record


def test_a_short_value_is_kept_whole_as_text():
    letter = letter_for(b"{broken")
    assert letter["value"] == {"text": "{broken"}
    assert letter["origin"]["key"] == {"text": "c-1"}
    assert (letter["size"], letter["truncated"]) == (7, False)
    assert letter["sha256"] == hashlib.sha256(b"{broken").hexdigest()


def test_a_long_value_keeps_only_its_first_bytes_with_the_size_and_hash_of_the_whole():
    raw = b"{" + b"a" * 999_999
    letter = letter_for(raw)
    assert letter["value"] == {"text": "{" + "a" * 1_999}
    assert (letter["size"], letter["truncated"]) == (1_000_000, True)
    assert letter["sha256"] == hashlib.sha256(raw).hexdigest()


def test_a_character_split_by_the_cut_is_dropped_so_the_excerpt_stays_text():
    letter = letter_for("€".encode() * 10, excerpt_bytes=8)  # 3 bytes each: the cut falls inside the third
    assert letter["value"] == {"text": "€€"}
    assert letter["truncated"]


def test_an_excerpt_that_is_not_utf8_is_base64_of_the_first_bytes_only():
    letter = letter_for(b"\xff" * 5_000)
    assert base64.b64decode(letter["value"]["base64"]) == b"\xff" * 2_000
    assert (letter["size"], letter["truncated"]) == (5_000, True)


def test_the_key_is_bounded_the_same_way():
    letter = letter_for(b"{", key=b"k" * 10_000, excerpt_bytes=100)
    assert letter["origin"]["key"] == {"text": "k" * 100}


def test_the_excerpt_size_can_be_set_down_to_nothing():
    letter = letter_for(b"secret", excerpt_bytes=0)
    assert letter["value"] == {"text": ""}
    assert (letter["size"], letter["truncated"]) == (6, True)


def test_a_long_reason_is_cut_to_1000_characters():
    letter = letter_for(b"{", reason="r" * 5_000)
    assert len(letter["reason"]) == 1_000
    assert letter["reason"].startswith("r" * 999)


def test_a_record_without_a_value_has_no_size_or_hash():
    letter = letter_for(None, key=None)
    assert (letter["value"], letter["size"], letter["sha256"], letter["truncated"]) == (None, None, None, False)
    assert letter["origin"]["key"] is None


def test_a_dead_letter_stays_small_however_large_and_hostile_the_input():
    excerpt = DEFAULT_LIMITS.dead_letter_excerpt
    letter = letter_for(b"\x01" * 1_000_000, key=b"\x01" * 1_000_000, reason="r" * 1_000_000)
    assert len(dumps(letter)) < 2 * 6 * excerpt + 2_000  # a control character is escaped in 6 bytes


def test_a_segment_style_type_on_a_native_event_says_what_is_wrong_and_what_was_meant():
    document = {"event_id": "e", "type": "Page Viewed", "contact_id": "c", "occurred_at": "2026-01-01T00:00:00Z"}
    with pytest.raises(InvalidEvent) as refused:
        decode_event(orjson.dumps(document))
    assert refused.value.field == "type"
    assert refused.value.reason.startswith("'Page Viewed' is not a native event type")
    assert "did you mean 'page_viewed'?" in refused.value.reason and "required" not in refused.value.reason
    del document["type"]
    with pytest.raises(InvalidEvent, match="type: required"):
        decode_event(orjson.dumps(document))
