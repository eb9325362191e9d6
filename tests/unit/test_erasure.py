"""Erasure in the core's fold (scoring.erasure, scoring.replay): what the offline scorer and
the stream both do with a `contact_erased` event."""

from dataclasses import replace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadpulse.cli.main import main
from leadpulse.cli.offline import score_lines
from leadpulse.schemas.events import contact_key, decode_event
from leadpulse.schemas.segment import is_unmapped
from leadpulse.scoring.erasure import (
    ERASE_EVENT,
    Erasure,
    expiry_end,
    expiry_key,
    expiry_prefix,
    expiry_until,
    is_marker,
    marker_bytes,
    marker_from_bytes,
    marker_key,
    marker_of_expiry,
)
from leadpulse.scoring.replay import ScoreRun
from leadpulse.scoring.rules import RulesError, parse_rules
from leadpulse.streams.settings import Settings
from leadpulse.streams.startup import acl_bindings, topic_specs
from tests.factories import DAY_MS, DEFAULT_RULES, T0, event, raw_event
from tests.unit.test_rules import MINIMAL

GRACE = DEFAULT_RULES.erasure_grace_ms


def run(*events):
    fold = ScoreRun(DEFAULT_RULES)
    for item in events:
        fold.add(item)
    return fold


def test_an_erasure_removes_the_contact_and_keeps_the_others():
    fold = run(
        event("page_viewed", T0, "ada@acme.io", path="/pricing"),
        event("page_viewed", T0, "bob@shop.fr", path="/pricing"),
        event("contact_erased", T0 + DAY_MS, "ada@acme.io"),
    )
    assert [view.contact_id for view in fold.snapshots(None)] == ["bob@shop.fr"]


def test_events_that_occurred_before_the_end_of_the_grace_period_are_forgotten_whenever_they_arrive():
    fold = run(
        event("contact_erased", T0 + DAY_MS, "ada@acme.io"),
        event("page_viewed", T0, "ada@acme.io", path="/pricing"),  # late
        event("demo_requested", T0 + DAY_MS + GRACE, "ada@acme.io"),  # in flight, still within the grace
    )
    assert fold.snapshots(None) == []
    assert fold.forgotten == 2


def test_a_contact_who_comes_back_after_the_grace_period_starts_a_new_profile():
    fold = run(
        event("demo_requested", T0, "ada@acme.io"),
        event("contact_erased", T0 + DAY_MS, "ada@acme.io"),
        event("page_viewed", T0 + DAY_MS + GRACE + 1, "ada@acme.io", path="/blog/x"),
    )
    [view] = fold.snapshots(None)
    assert [reason.signal for reason in view.reasons] == ["blog post"]


def test_of_two_erasures_the_later_deadline_holds_in_either_order():
    first, second = event("contact_erased", T0, "c"), event("contact_erased", T0 + 10 * DAY_MS, "c")
    for ordered in ((first, second), (second, first)):
        assert run(*ordered).erased["c"].until_ms == T0 + 10 * DAY_MS + GRACE


def test_the_marker_keeps_a_hash_of_the_contact_id_not_the_id():
    key = marker_key("ada@acme.io")
    assert b"ada" not in key and key != marker_key("bob@shop.fr")
    erased = run(event("contact_erased", T0, "ada@acme.io")).erased["ada@acme.io"]
    assert marker_from_bytes(marker_bytes(erased)) == erased


@settings(max_examples=200, deadline=None)
@given(st.permutations(range(6)), st.lists(st.integers(0, 40), min_size=5, max_size=5))
def test_an_erased_contact_is_gone_in_any_arrival_order_of_its_erased_history(order, days):
    history = [event("page_viewed", T0 + day * DAY_MS, "c", path="/pricing") for day in days]
    items = [*history, event("contact_erased", T0 + 20 * DAY_MS, "c")]
    fold = run(*(items[index] for index in order), event("page_viewed", T0, "other", path="/"))
    assert [view.contact_id for view in fold.snapshots(None)] == ["other"]


def test_a_segment_track_named_contact_erased_is_an_unmapped_track_and_erases_nobody():
    """A write key (public in web pages) must not erase anyone: no shipped name maps to an erasure."""
    track = b'{"type": "track", "event": "Contact Erased", "userId": "ada@acme.io", "messageId": "m-1",'
    track += b' "timestamp": "2026-10-02T09:00:00Z"}'
    erase = decode_event(track, mapping=DEFAULT_RULES.mapping)
    fold = run(event("demo_requested", T0, "ada@acme.io"), erase)
    assert is_unmapped(erase) and [view.contact_id for view in fold.snapshots(None)] == ["ada@acme.io"]
    assert ERASE_EVENT not in DEFAULT_RULES.mapping.values()


def test_rules_that_map_a_track_name_to_an_erasure_are_refused():
    text = MINIMAL + '[mapping]\n"Forget Me" = "contact_erased"\n'
    with pytest.raises(RulesError, match=r"rules.toml: .*Forget Me.*: may not map to contact_erased"):
        parse_rules(text, "rules.toml")


@pytest.mark.parametrize(
    "document",
    [
        raw_event("page_viewed", contact_id="  Eve@VictimCorp.com "),
        {"type": "page", "userId": "EVE@victimcorp.COM", "messageId": "m-2", "timestamp": "2026-10-01T09:00:00Z"},
    ],
)
def test_e_mail_shaped_ids_are_trimmed_and_lower_cased_in_native_and_segment_messages(document):
    assert decode_event(orjson.dumps(document)).contact_id == "eve@victimcorp.com"
    assert contact_key(document) == "eve@victimcorp.com"


def test_other_ids_are_kept_exactly_as_sent():
    document = raw_event("page_viewed", contact_id="CRM-0042", anonymous_id="Cookie-AbC")
    decoded = decode_event(orjson.dumps(document))
    assert (decoded.contact_id, decoded.anonymous_id) == ("CRM-0042", "Cookie-AbC")


def test_erasing_the_lower_case_address_erases_the_contact_sent_in_mixed_case_offline():
    lines = [
        orjson.dumps(raw_event("demo_requested", event_id="d-1", contact_id="Eve@VictimCorp.com")),
        orjson.dumps(raw_event("page_viewed", event_id="p-1", contact_id="bob@shop.fr")),
        orjson.dumps(raw_event(ERASE_EVENT, event_id="x-1", contact_id="eve@victimcorp.com")),
    ]
    fold = score_lines(lines, DEFAULT_RULES)
    assert [view.contact_id for view in fold.snapshots(None)] == ["bob@shop.fr"]


def test_a_marker_expires_when_its_contact_comes_back_after_the_grace_period():
    fold = run(
        event("contact_erased", T0, "ada@acme.io"),
        event("page_viewed", T0 + GRACE + 1, "ada@acme.io", path="/blog/x"),
    )
    assert "ada@acme.io" not in fold.erased


def test_the_expiry_index_sorts_a_partitions_markers_by_deadline_and_names_them_without_the_id():
    soon, late = Erasure(T0), Erasure(T0 + DAY_MS)
    ada, bob = marker_key("ada@acme.io"), marker_key("bob@shop.fr")
    keys = sorted([expiry_key(3, ada, late), expiry_key(3, bob, soon)])
    assert [marker_of_expiry(key) for key in keys] == [bob, ada]
    assert [expiry_until(key) for key in keys] == [T0, T0 + DAY_MS]
    assert [key < expiry_end(3, T0 + 1) for key in keys] == [True, False]
    assert not expiry_key(4, bob, soon).startswith(expiry_prefix(3)), "another partition's entries stay apart"
    assert all(is_marker(key) and b"ada" not in key for key in (*keys, ada))


def test_every_topic_holding_a_persons_data_is_created_with_an_explicit_lifetime():
    """docs/erasure.md's delay is made of these settings: none may be left to broker defaults."""
    settings = Settings(topic_prefix="lp.", input_topic="lp.events", event_retention=5_000, compaction_lag=1_000)
    for spec in topic_specs(settings):
        if spec.name.endswith("__assignor-__leader"):  # Faust's own: worker addresses, no contact
            continue
        config = spec.config
        if config["cleanup.policy"] == "compact":
            assert (config["max.compaction.lag.ms"], config["delete.retention.ms"], config["segment.ms"]) == (
                "1000",
                "1000",
                "1000",
            ), spec.name
        else:
            assert int(config["retention.ms"]) <= 5_000 and config["segment.ms"] == "1000", spec.name


def test_the_worker_may_read_the_erasure_requests_but_not_write_them():
    settings = Settings(topic_prefix="lp.", input_topic="lp.events")
    (binding,) = (binding for binding in acl_bindings(settings) if binding.name == "lp.events.erasure-requests")
    assert binding.operations == ("Read", "Describe", "Create", "DescribeConfigs")


def test_erase_refuses_a_blank_id_in_one_line(capsys):
    assert main(["erase", "ada@acme.io", "   "]) == 2
    assert capsys.readouterr().err == "leadpulse erase: '   ' is not a contact id (1 to 256 characters)\n"


def test_the_ids_an_erased_person_linked_are_erased_whether_the_linking_event_comes_before_or_after_the_erasure():
    """A replay reads the erasure topic and the input in no fixed order: the form fill that
    linked her cookie may come after her erasure. Dropped, it still erases the cookie, as of
    the erasure, so both orders end alike (and the cookie's own later visit is forgotten)."""
    browse = event("page_viewed", T0, "ck-eve", identified=False, path="/pricing")
    form = replace(event("form_submitted", T0 + 60_000, "eve@victimcorp.com", form="demo"), anonymous_id="ck-eve")
    erase = event("contact_erased", T0 + DAY_MS, "eve@victimcorp.com")
    again = event("page_viewed", T0 + DAY_MS + 1, "ck-eve", identified=False, path="/blog")
    in_order, erasure_first = run(browse, form, erase, again), run(erase, browse, form, again)
    assert in_order.snapshots(None) == erasure_first.snapshots(None) == []
    assert in_order.erased == erasure_first.erased
