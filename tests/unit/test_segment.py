"""Segment-spec messages on the input topic: one test per call type, the [mapping] table,
the published schema agreeing with the decoder, and decoding that never fails otherwise
than with InvalidEvent naming a field."""

import contextlib
import json
from importlib import resources
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from leadpulse.cli.offline import score_lines
from leadpulse.schemas.events import InvalidEvent, contact_key, decode_event
from leadpulse.schemas.limits import InputLimits
from leadpulse.schemas.outputs import snapshot_record
from leadpulse.schemas.segment import is_unmapped
from leadpulse.scoring.engine import apply, new_state, snapshot
from leadpulse.scoring.rules import RulesError, parse_rules
from leadpulse.scoring.state import from_bytes, to_bytes
from leadpulse.scoring.timeutil import parse_rfc3339_ms
from tests.factories import DEFAULT_RULES, event

AT = "2026-11-16T11:45:00.000Z"
AT_MS = parse_rfc3339_ms(AT)


def schema(name):
    text = resources.files("leadpulse.schemas").joinpath("json", f"{name}.schema.json").read_text()
    document = json.loads(text)
    Draft202012Validator.check_schema(document)
    return Draft202012Validator(document, format_checker=FormatChecker())


MESSAGE_SCHEMA = schema("segment-message")
BATCH_SCHEMA = schema("segment-batch")


def message(call: str = "track", **fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"type": call, "messageId": "m-1", "userId": "ada@acme.io", "timestamp": AT}
    if call == "track":
        document["event"] = "Demo Requested"
    document.update(fields)
    return {key: value for key, value in document.items() if value is not None}


def decode(document: dict[str, Any]):
    return decode_event(orjson.dumps(document))


def test_a_track_call_takes_the_type_its_name_maps_to_and_keeps_its_ids():
    decoded = decode(message(anonymousId="cookie-1", context={"groupId": "acme", "library": {"name": "analytics.js"}}))
    assert (decoded.type, decoded.event_id, decoded.contact_id, decoded.occurred_ms) == (
        "demo_requested",
        "m-1",
        "ada@acme.io",
        AT_MS,
    )
    assert (decoded.identified, decoded.anonymous_id, decoded.account_id, decoded.call) == (
        True,
        "cookie-1",
        "acme",
        "track",
    )
    assert decoded.source == "analytics.js"


@pytest.mark.parametrize(
    ("name", "event_type"),
    [
        ("Email Opened", "email_opened"),
        ("Email Link Clicked", "email_clicked"),
        ("Email Replied", "email_replied"),
        ("Unsubscribed", "newsletter_unsubscribed"),
        ("Form Submitted", "form_submitted"),
        ("Trial Started", "trial_started"),
        ("Signed Up", "signed_up"),
        ("demo_requested", "demo_requested"),  # case and separators do not matter
        ("  DEMO-requested ", "demo_requested"),
    ],
)
def test_shipped_mapping_covers_segment_spec_names(name, event_type):
    assert decode(message(event=name)).type == event_type


def test_a_track_name_the_mapping_does_not_know_is_valid_unscored_and_counted_apart():
    decoded = decode(message(event="Video Played", properties={"seniority": "vp"}))
    assert decoded.type == "track" and is_unmapped(decoded)
    assert not is_unmapped(decode(message()))
    assert apply(new_state("ada@acme.io"), decode(message(event="Video Played")), DEFAULT_RULES).outcome == "unscored"
    # its properties still feed the profile, as any native event's do
    assert apply(new_state("ada@acme.io"), decoded, DEFAULT_RULES).state.profile["seniority"].value == "vp"


def test_track_events_score_like_the_native_events_they_map_to():
    segment = apply(new_state("ada@acme.io"), decode(message(event="Trial Started")), DEFAULT_RULES)
    native = apply(new_state("ada@acme.io"), event("trial_started", AT_MS, "ada@acme.io"), DEFAULT_RULES)
    assert snapshot(segment.state, AT_MS, DEFAULT_RULES) == snapshot(native.state, AT_MS, DEFAULT_RULES)
    assert segment.outcome == "scored"


@pytest.mark.parametrize("call", ["page", "screen"])
@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"properties": {"path": "/pricing/teams", "url": "https://acme.io/x"}}, "/pricing/teams"),
        ({"context": {"page": {"path": "/pricing", "url": "https://acme.io/pricing"}}}, "/pricing"),
        ({"properties": {"url": "https://acme.io/pricing?plan=pro#faq"}}, "/pricing"),
        ({"context": {"page": {"url": "https://acme.io"}}}, "/"),
    ],
)
def test_page_and_screen_calls_are_page_views_with_a_path(call, fields, path):
    decoded = decode(message(call, name="Pricing", **fields))
    assert (decoded.type, decoded.properties["path"], decoded.properties["name"]) == ("page_viewed", path, "Pricing")
    assert decoded.properties["url"].startswith("https://acme.io")
    assert apply(new_state("c"), decoded, DEFAULT_RULES).state.signals.keys() == (
        {"pricing page"} if path.startswith("/pricing") else {"page view"}
    )


def test_a_page_call_without_any_path_still_counts_as_a_page_view():
    decoded = decode(message("page", properties={"url": "http://[not-a-url"}))
    assert decoded.type == "page_viewed" and "path" not in decoded.properties
    assert apply(new_state("c"), decoded, DEFAULT_RULES).state.signals.keys() == {"page view"}


IDENTIFY_TRAITS = {
    "email": "ada@acme.io",
    "title": "VP of Sales",
    "seniority": "vp",
    "budget": 60_000,
    "company": {"name": "Acme", "industry": "software", "employee_count": 400},
    "address": {"country": "fr", "city": "Lyon"},
}


def test_identify_traits_feed_fit_as_a_native_profile_event_does():
    decoded = decode(message("identify", traits=IDENTIFY_TRAITS))
    assert decoded.type == "profile_updated"
    assert decoded.properties == {
        "email": "ada@acme.io",
        "title": "VP of Sales",
        "job_title": "VP of Sales",
        "seniority": "vp",
        "budget": 60_000,
        "company_name": "Acme",
        "industry": "software",
        "company_size": 400,
        "country": "fr",
    }
    native = event(
        "profile_updated",
        AT_MS,
        "ada@acme.io",
        seniority="vp",
        budget=60_000,
        industry="software",
        company_size=400,
        country="fr",
        job_title="VP of Sales",
    )
    from_segment = snapshot(apply(new_state("ada@acme.io"), decoded, DEFAULT_RULES).state, AT_MS, DEFAULT_RULES)
    from_native = snapshot(apply(new_state("ada@acme.io"), native, DEFAULT_RULES).state, AT_MS, DEFAULT_RULES)
    assert from_segment.fit == from_native.fit > 0
    assert from_segment.reasons == from_native.reasons


def test_traits_in_leadpulse_spelling_win_over_segment_names():
    decoded = decode(message("identify", traits={"title": "Intern", "job_title": "CEO", "company_size": 12}))
    assert (decoded.properties["job_title"], decoded.properties["company_size"]) == ("CEO", 12)


def test_an_anonymous_identify_with_an_email_identifies_the_cookie_as_native_events_do():
    decoded = decode(message("identify", userId=None, anonymousId="cookie-1", traits={"email": "a@b.c"}))
    assert (decoded.contact_id, decoded.identified) == ("cookie-1", True)


def test_a_group_call_keeps_the_account_on_the_contact_state_and_snapshot():
    group = decode(message("group", groupId="acme", traits={"name": "Acme", "employees": 400, "plan": "pro"}))
    assert (group.type, group.account_id, group.properties) == (
        "account_linked",
        "acme",
        {"company_name": "Acme", "company_size": 400},
    )
    state = apply(new_state("ada@acme.io"), group, DEFAULT_RULES).state
    assert snapshot_record(snapshot(state, AT_MS, DEFAULT_RULES))["account_id"] == "acme"
    assert from_bytes(to_bytes(state)) == state
    assert "account_id" not in snapshot_record(snapshot(new_state("x"), AT_MS, DEFAULT_RULES))


def test_a_state_stored_before_accounts_existed_still_loads():
    """Format 2 (no account) and 3 (2 + the account) are the first 15 and 16 fields of 8."""
    state = apply(new_state("ada@acme.io"), decode(message()), DEFAULT_RULES).state
    stored = orjson.loads(to_bytes(state))
    assert stored[0] == 8 and stored[15:19] == [{}, None, None, None]
    assert stored[19:] == [{}, {}, {}, None, None, {}, {}]
    assert from_bytes(orjson.dumps([2, *stored[1:15]])) == state
    grouped = apply(state, decode(message("group", messageId="m-2", groupId="acme")), DEFAULT_RULES).state
    stored = orjson.loads(to_bytes(grouped))
    assert stored[16] == ["acme", grouped.account.occurred_ms, grouped.account.tie]
    assert from_bytes(orjson.dumps([3, *stored[1:15], stored[16]])) == grouped


def test_the_latest_account_wins_in_any_order():
    early = decode(message("group", messageId="g1", groupId="old-co", timestamp="2026-11-01T00:00:00Z"))
    late = decode(message("group", messageId="g2", groupId="new-co", timestamp="2026-11-02T00:00:00Z"))
    for first, second in ((early, late), (late, early)):
        state = apply(apply(new_state("ada@acme.io"), first, DEFAULT_RULES).state, second, DEFAULT_RULES).state
        assert state.account is not None and state.account.value == "new-co"


def test_an_alias_call_marks_the_user_known_and_keeps_the_previous_id_for_stitching():
    decoded = decode(message("alias", previousId="cookie-1"))
    assert (decoded.type, decoded.contact_id, decoded.previous_id, decoded.identified) == (
        "identity_linked",
        "ada@acme.io",
        "cookie-1",
        True,
    )
    applied = apply(new_state("ada@acme.io"), decoded, DEFAULT_RULES)
    assert applied.outcome == "unscored" and snapshot(applied.state, AT_MS, DEFAULT_RULES).stage == "lead"


def test_a_message_with_only_an_anonymous_id_is_its_own_suspect_contact():
    document = message("page", userId=None, anonymousId="cookie-1", properties={"path": "/pricing"})
    decoded = decode(document)
    assert (decoded.contact_id, decoded.identified, contact_key(document)) == ("cookie-1", False, "cookie-1")
    assert snapshot(apply(new_state("cookie-1"), decoded, DEFAULT_RULES).state, AT_MS, DEFAULT_RULES).stage == "suspect"
    assert contact_key(message(anonymousId="cookie-1")) == "ada@acme.io"


def test_the_event_time_follows_segment_rules():
    skewed = {"originalTimestamp": "2026-11-16T11:00:00Z", "sentAt": "2026-11-16T11:00:10Z"}
    received = {"receivedAt": "2026-11-16T11:00:20Z"}
    assert decode(message(timestamp=None, **skewed, **received)).occurred_ms == parse_rfc3339_ms("2026-11-16T11:00:10Z")
    assert decode(message(timestamp=None, **skewed)).occurred_ms == parse_rfc3339_ms("2026-11-16T11:00:00Z")
    assert decode(message(timestamp=None, **received)).occurred_ms == parse_rfc3339_ms("2026-11-16T11:00:20Z")
    assert decode(message(**skewed, **received)).occurred_ms == AT_MS


def test_a_message_without_message_id_gets_one_that_a_resend_keeps():
    first = decode(message(messageId=None, sentAt="2026-11-16T11:45:01Z", receivedAt="2026-11-16T11:45:02Z"))
    resent = decode(message(messageId=None, sentAt="2026-11-16T11:50:00Z", receivedAt="2026-11-16T11:50:01Z"))
    other = decode(message(messageId=None, event="Email Opened"))
    assert first.event_id == resent.event_id != other.event_id


def test_the_shape_decides_native_or_segment():
    native_like = {"event_id": "e1", "type": "track", "contact_id": "c", "occurred_at": AT}
    assert decode(native_like).call is None and decode(native_like).type == "track"
    with pytest.raises(InvalidEvent) as error:
        decode({"type": "page_viewed", "userId": "c", "timestamp": AT})  # neither shape: read as native
    assert error.value.field == "event_id"


@pytest.mark.parametrize(
    ("document", "field", "reason"),
    [
        (message(event=None), "event", "required in a track call"),
        (message(event="   "), "event", "required in a track call"),
        (message(event=3), "event", "got number"),
        (message(userId=None), "userId", "one of userId or anonymousId"),
        (message(userId=42), "userId", "non-empty string, got number"),
        (message(anonymousId=""), "anonymousId", "non-empty string"),
        (message(messageId="m" * 300), "messageId", "longer than 256"),
        (message(timestamp=None), "timestamp", "required"),
        (message(timestamp="2026-11-16 11:45"), "timestamp", "RFC 3339"),
        (message(timestamp=1700000000), "timestamp", "got number"),
        (message(properties=[1]), "properties", "expected an object, got array"),
        (message(context="web"), "context", "expected an object"),
        (message(context={"groupId": 7}), "context.groupId", "non-empty string"),
        (message("page", context={"page": "x"}), "context.page", "expected an object"),
        (message("identify", traits="vp"), "traits", "expected an object"),
        (message("group"), "groupId", "required in a group call"),
        (message("alias"), "previousId", "required in an alias call"),
        (message("alias", userId=None, anonymousId="a", previousId="b"), "userId", "required in an alias call"),
        (
            message(
                timestamp=None,
                originalTimestamp="9999-12-31T00:00:00Z",
                sentAt="1970-01-01T00:00:00Z",
                receivedAt="2026-01-01T00:00:00Z",
            ),
            "originalTimestamp",
            "outside 1970..9999",
        ),
    ],
)
def test_a_bad_message_is_refused_naming_its_field(document, field, reason):
    with pytest.raises(InvalidEvent) as error:
        decode(document)
    assert error.value.field == field and reason in error.value.reason
    if field not in ("context.page", "originalTimestamp"):  # beyond what a schema can say
        assert not MESSAGE_SCHEMA.is_valid(document)


def test_too_many_traits_are_refused_as_traits():
    document = message("identify", traits={f"t{i}": i for i in range(20)})
    with pytest.raises(InvalidEvent) as error:
        decode_event(orjson.dumps(document), InputLimits(max_properties=10))
    assert error.value.field == "traits"


@pytest.mark.parametrize(
    "document",
    [
        message(),
        message(anonymousId="cookie-1", userId=None),
        message("page", properties={"path": "/pricing"}),
        message("screen", name="Home"),
        message("identify", traits=IDENTIFY_TRAITS),
        message("group", groupId="acme"),
        message("alias", previousId="cookie-1"),
        message(timestamp=None, receivedAt=AT),
    ],
)
def test_every_accepted_message_matches_the_published_schema(document):
    decode(document)
    assert MESSAGE_SCHEMA.is_valid(document), list(MESSAGE_SCHEMA.iter_errors(document))
    without_time = {key: value for key, value in document.items() if key != "timestamp"}
    assert BATCH_SCHEMA.is_valid({"batch": [without_time], "sentAt": AT})


def test_a_rules_file_maps_its_own_names_and_refuses_bad_mappings():
    base = (
        'version = "v"\n[categories.all]\ncap = 100\n'
        '[[signals]]\nname = "x"\nevent = "demo_requested"\ncategory = "all"\npoints = 10\n'
    )
    rules = parse_rules(base + '[mapping]\n"Book A Call" = "demo_requested"\n')
    assert rules.mapped_type("book a call") == "demo_requested" and rules.mapped_type("Demo Requested") is None
    assert decode_event(orjson.dumps(message(event="Book a Call")), mapping=rules.mapping).type == "demo_requested"
    for table, problem in [
        ('"Demo" = "Demo Requested"', "mapping.Demo: 'Demo Requested' is not an event type"),
        ('"Demo" = 3', "mapping.Demo: expected a non-empty string"),
        ('"Book a call" = "demo_requested"\n"book_a-CALL" = "quote_requested"', "same name as"),
        ('"  " = "demo_requested"', "expected a non-empty event name"),
    ]:
        with pytest.raises(RulesError, match=problem):
            parse_rules(base + "[mapping]\n" + table + "\n")
    parse_rules(base + '[mapping]\n"Book a call" = "demo_requested"\n"book_a-CALL" = "demo_requested"\n')


def test_the_offline_scorer_reads_segment_and_native_lines_alike():
    native = [
        {"event_id": "n1", "type": "page_viewed", "anonymous_id": "cookie-1", "occurred_at": AT,
         "properties": {"path": "/pricing"}},
        {"event_id": "n2", "type": "demo_requested", "contact_id": "ada", "occurred_at": AT},
        {"event_id": "n3", "type": "track", "contact_id": "ada", "occurred_at": AT},
    ]  # fmt: skip
    segment = [
        message("page", messageId="n1", userId=None, anonymousId="cookie-1", properties={"path": "/pricing"}),
        message(messageId="n2", userId="ada"),
        message(messageId="n3", userId="ada", event="Video Played"),
    ]
    from_native = score_lines([orjson.dumps(d) for d in native], DEFAULT_RULES)
    from_segment = score_lines([orjson.dumps(d) for d in segment], DEFAULT_RULES)
    assert from_native.snapshots(None) == from_segment.snapshots(None)
    assert (from_segment.unscored, from_segment.unmapped, from_native.unmapped) == (1, 1, 0)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "messageId", "userId", "anonymousId", "previousId", "groupId", "event", "name", "timestamp",
    "originalTimestamp", "sentAt", "receivedAt", "properties", "traits", "context",
]  # fmt: skip
TIMES = st.sampled_from([AT, "2026-11-16T11:45:00+02:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "x"])
FIELD_VALUES = st.one_of(
    JSON,
    TIMES,
    st.sampled_from(["Demo Requested", "/pricing", "https://acme.io/pricing", "http://[", ""]),
    st.fixed_dictionaries(
        {},
        optional={
            "page": st.fixed_dictionaries({}, optional={"path": JSON, "url": JSON}) | JSON,
            "groupId": JSON,
            "library": JSON,
            "company": JSON,
            "address": JSON,
            "title": JSON,
        },
    ),
)


@settings(max_examples=400, deadline=None)
@given(
    call=st.sampled_from(["track", "identify", "page", "screen", "group", "alias"]),
    fields=st.dictionaries(st.sampled_from(FIELDS), FIELD_VALUES, max_size=len(FIELDS)),
)
def test_decoding_any_segment_shaped_message_fails_only_with_invalid_event(call, fields):
    try:
        decoded = decode({"type": call, **fields})
    except InvalidEvent as error:
        assert error.field == "" or error.field.split(".")[0].split("[")[0] in FIELDS
        return
    assert decoded.contact_id and decoded.event_id and decoded.call == call
    apply(new_state(decoded.contact_id), decoded, DEFAULT_RULES)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.builds(orjson.dumps, JSON))
def test_decoding_any_bytes_fails_only_with_invalid_event(raw):
    with contextlib.suppress(InvalidEvent):
        decode_event(raw)


def test_the_unreleased_format_4_is_refused_rather_than_misread():
    stored = orjson.loads(to_bytes(new_state("ada@acme.io")))
    with pytest.raises(ValueError, match="unsupported contact state format 4"):
        from_bytes(orjson.dumps([4, *stored[1:]]))


def test_an_empty_user_id_is_no_user_for_the_schema_and_the_decoder_alike():
    anonymous = {"type": "page", "userId": "", "anonymousId": "cookie-1", "timestamp": "2026-01-01T00:00:00Z"}
    assert list(MESSAGE_SCHEMA.iter_errors(anonymous)) == []
    nobody = {"type": "page", "userId": "", "timestamp": "2026-01-01T00:00:00Z"}
    assert list(MESSAGE_SCHEMA.iter_errors(nobody)) != []
    with pytest.raises(InvalidEvent, match="userId"):
        decode_event(orjson.dumps(nobody))
