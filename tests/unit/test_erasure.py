"""Erasure in the core's fold (scoring.erasure, scoring.replay): what the offline scorer and
the stream both do with a `contact_erased` event."""

from hypothesis import given, settings
from hypothesis import strategies as st

from leadpulse.schemas.events import decode_event
from leadpulse.scoring.erasure import marker_bytes, marker_from_bytes, marker_key
from leadpulse.scoring.replay import ScoreRun
from tests.factories import DAY_MS, DEFAULT_RULES, T0, event

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


def test_a_segment_track_named_contact_erased_erases_the_contact():
    track = b'{"type": "track", "event": "Contact Erased", "userId": "ada@acme.io", "messageId": "m-1",'
    track += b' "timestamp": "2026-10-02T09:00:00Z"}'
    erase = decode_event(track, mapping=DEFAULT_RULES.mapping)
    fold = run(event("demo_requested", T0, "ada@acme.io"), erase)
    assert erase.type == "contact_erased" and fold.snapshots(None) == []
