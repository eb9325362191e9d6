"""Identity stitching (docs/scoring.md#identity): an anonymous id linked to a contact counts
for it, in the stream (links and hand-overs delivered late, twice, out of turn) exactly as in
the offline scorer."""

from collections import defaultdict, deque
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadpulse.cli.offline import score_lines
from leadpulse.schemas.limits import DEFAULT_LIMITS
from leadpulse.schemas.outputs import output_record, snapshot_record
from leadpulse.scoring.engine import Event, StageChange, apply, attach, linked_ids, new_state, snapshot, view_of
from leadpulse.scoring.identity import (
    Handover,
    Link,
    hand_over,
    handover_bytes,
    identity_from_bytes,
    is_identity_record,
    is_published,
    link_bytes,
    part_of,
    record_claim,
    winner,
)
from leadpulse.scoring.replay import ScoreRun
from leadpulse.scoring.rules import RulesError, parse_rules
from leadpulse.scoring.state import (
    Claim,
    ContactState,
    CrmStage,
    Part,
    ProfileValue,
    SignalSum,
    from_bytes,
    to_bytes,
)
from tests.factories import DAY_MS, DEFAULT_RULES, T0
from tests.unit.test_properties import KINDS

RULES = DEFAULT_RULES
EXAMPLE = Path(__file__).parents[2] / "examples" / "identity.jsonl"
CONTACTS, ANONYMOUS = ("c1", "c2", "c3"), ("a1", "a2", "a3")
CAPPED = replace(RULES, max_linked_ids=2)  # so that a few links reach the cap
COOKIES = ("a1", "a2", "a3", "a4", "a5")
RULES_TEXT = (Path(__file__).parents[2] / "leadpulse" / "scoring" / "default_rules.toml").read_text()


def anonymous(event_id, at_ms, cookie, event_type="page_viewed", **properties):
    return Event(event_id, event_type, cookie, False, at_ms, properties, anonymous_id=cookie)


def known(event_id, at_ms, contact, event_type="page_viewed", *, cookie=None, previous=None, **properties):
    return Event(event_id, event_type, contact, True, at_ms, properties, anonymous_id=cookie, previous_id=previous)


def offline(events, rules=RULES):
    run = ScoreRun(rules)
    for item in events:
        run.add(item)
    return run


def published(run):
    return {view.contact_id: view for view in run.snapshots(None)}


# -- the worked example of the README ---------------------------------------------------------


def test_an_anonymous_week_of_pricing_pages_makes_the_new_lead_warm_at_the_form_fill():
    run = score_lines(EXAMPLE.read_bytes().splitlines(), RULES)
    views = {view.contact_id: snapshot_record(view) for view in run.snapshots(None)}
    assert list(views) == ["lea@northwind.io"], "the cookie is merged: no snapshot of its own"
    lea = views["lea@northwind.io"]
    assert (lea["score"], lea["temperature_label"], lea["updated_at"]) == (57, "warm", "2026-11-16T10:00:00.000Z")
    assert {"signal": "pricing page", "part": "engagement", "points": 26.6} in lea["reasons"]
    without_cookie = [
        line.replace(b',"anonymous_id":"cookie-7f3a"', b"") if b"contact_id" in line else line
        for line in EXAMPLE.read_bytes().splitlines()
    ]
    alone = {view.contact_id: view for view in score_lines(without_cookie, RULES).snapshots(None)}
    assert (alone["lea@northwind.io"].score, alone["lea@northwind.io"].temperature_label) == (42, "cool")
    assert "cookie-7f3a" in alone


# -- what links ------------------------------------------------------------------------------


def test_an_identified_event_with_a_cookie_and_an_alias_link_ids_and_an_anonymous_event_links_none():
    assert linked_ids(known("e1", T0, "ada", cookie="ck")) == ("ck",)
    assert linked_ids(known("e2", T0, "ada", previous="old-id", cookie="ck")) == ("ck", "old-id")
    assert linked_ids(known("e3", T0, "ada", cookie="ada")) == ()
    assert linked_ids(anonymous("e4", T0, "ck")) == ()


def test_later_anonymous_events_count_for_the_contact_and_the_cookie_disappears():
    events = [
        anonymous("w1", T0, "ck", path="/pricing"),
        known("f1", T0 + DAY_MS, "ada", "form_submitted", cookie="ck", form="contact"),
        anonymous("w2", T0 + 2 * DAY_MS, "ck", path="/pricing"),
    ]
    views = published(offline(events))
    assert list(views) == ["ada"]
    assert views["ada"].updated_ms == T0 + 2 * DAY_MS, "the cookie's later visit is the contact's latest event"
    assert dict((r.signal, r.points) for r in views["ada"].reasons)["pricing page"] == round(
        10 * 2 ** (-2 / 30) + 10, 1
    )


def test_a_contact_with_several_devices_gets_the_history_of_each():
    events = [
        anonymous("p1", T0, "laptop", path="/pricing"),
        anonymous("p2", T0, "phone", path="/product"),
        known("l1", T0 + DAY_MS, "ada", "email_clicked", cookie="laptop"),
        known("l2", T0 + DAY_MS, "ada", "email_opened", cookie="phone"),
    ]
    views = published(offline(events))
    assert list(views) == ["ada"]
    signals = {reason.signal for reason in views["ada"].reasons}
    assert {"pricing page", "product page", "e-mail clicked", "e-mail opened"} <= signals


def test_a_cookie_identified_as_two_contacts_belongs_to_the_earliest_link_in_any_order():
    """A shared computer: the first person identified on it keeps its anonymous history."""
    history = anonymous("w1", T0, "shared", path="/pricing")
    first = known("f1", T0 + DAY_MS, "ada", "form_submitted", cookie="shared")
    second = known("f2", T0 + 2 * DAY_MS, "bob", "form_submitted", cookie="shared")
    results = [published(offline(order)) for order in ([history, first, second], [second, history, first])]
    assert results[0] == results[1]
    assert "pricing page" in {r.signal for r in results[0]["ada"].reasons}
    assert "pricing page" not in {r.signal for r in results[0]["bob"].reasons}
    assert "shared" not in results[0]


def test_an_id_that_links_ids_of_its_own_is_a_contact_and_is_never_merged():
    """An alias pointing at a contact that has cookies of its own does not chain histories."""
    events = [
        known("l1", T0, "old@acme.io", cookie="ck"),
        known("a1", T0 + DAY_MS, "new@acme.io", "identity_linked", previous="old@acme.io"),
    ]
    views = published(offline(events))
    assert set(views) == {"old@acme.io", "new@acme.io"}


def test_a_merge_that_changes_the_stage_names_the_merge_as_its_cause():
    history = [
        anonymous("w1", T0, "ck", "demo_requested"),
        anonymous("w2", T0, "ck", "profile_updated", seniority="c_level", budget=60_000, company_size=300),
        anonymous("w3", T0, "ck", "webinar_attended"),
    ]
    run = offline([*history, known("f1", T0 + DAY_MS, "ada", "email_opened", cookie="ck")])
    caused = [o for o in run.outputs if o.contact_id == "ada" and o.merged_from == "ck"]
    assert caused and all(o.cause_event_id.startswith("merge:ck:") for o in caused)
    assert any(isinstance(o, StageChange) and o.to_stage == "opportunity" for o in caused)
    assert all(output_record(o)["merged_from"] == "ck" for o in caused)
    assert not [o for o in run.outputs if o.contact_id == "ck" and not isinstance(o, StageChange)]


# -- erasure ---------------------------------------------------------------------------------


def test_erasing_a_contact_erases_every_anonymous_id_it_linked_and_forgets_their_late_events():
    events = [
        anonymous("w1", T0, "laptop", path="/pricing"),
        known("l1", T0 + DAY_MS, "ada", cookie="laptop"),
        known("l2", T0 + DAY_MS, "ada", cookie="phone"),
        Event("x1", "contact_erased", "ada", True, T0 + 2 * DAY_MS, {}),
        anonymous("w2", T0 + 3 * DAY_MS, "laptop", path="/pricing"),
    ]
    run = offline(events)
    assert published(run) == {}
    assert set(run.erased) == {"ada", "laptop", "phone"} and run.forgotten == 1


def test_an_erased_anonymous_id_leaves_the_contact_it_was_merged_into():
    events = [
        anonymous("w1", T0, "ck", path="/pricing"),
        known("l1", T0 + DAY_MS, "ada", cookie="ck"),
        Event("x1", "contact_erased", "ck", False, T0 + 2 * DAY_MS, {}, anonymous_id="ck"),
    ]
    views = published(offline(events))
    assert list(views) == ["ada"] and "pricing page" not in {r.signal for r in views["ada"].reasons}
    assert views["ada"].updated_ms == T0 + DAY_MS


# -- the hand-over protocol and its records --------------------------------------------------


def test_an_older_hand_over_arriving_after_a_newer_one_changes_nothing():
    part_old = Part(3, apply(new_state("ck"), anonymous("w1", T0, "ck", path="/pricing"), RULES).state)
    newer = Part(5, None)
    ada = apply(new_state("ada"), known("l1", T0, "ada", cookie="ck"), RULES).state
    state = attach(ada, "ck", newer, RULES).state
    assert state.parts == {"ck": newer}, "a detach is kept even when nothing was attached"
    again = attach(state, "ck", part_old, RULES)
    assert again.outcome == "duplicate" and again.state is state


def test_the_earliest_link_wins_whatever_the_order_and_repeats_change_nothing():
    early, late = Claim("bob", T0, 2), Claim("ada", T0 + 1, 1)
    for order in ((early, late, early), (late, early, late)):
        state = new_state("ck")
        for claim in order:
            state = record_claim(state, claim)
        assert state.claim == early and winner(state) == "bob"


def test_a_detach_goes_to_the_contact_that_lost_the_id_and_the_part_to_the_winner():
    state = record_claim(new_state("ck"), Claim("ada", T0 + 5, 0))
    state, sends = hand_over(state, 1)
    assert [(to, part.state is not None) for to, part in sends] == [("ada", True)]
    state, sends = hand_over(record_claim(state, Claim("bob", T0, 0)), 2)
    assert [(to, part.state is not None) for to, part in sends] == [("ada", False), ("bob", True)]
    assert state.sent_to == "bob"


def test_identity_records_round_trip_and_anything_else_is_refused_with_a_reason():
    link = Link("ck", Claim("ada", T0, 7))
    assert identity_from_bytes(link_bytes(link)) == link
    part = apply(new_state("ck"), anonymous("w1", T0, "ck", path="/pricing"), RULES).state
    handover = Handover("ck", Part(4, part))
    assert identity_from_bytes(handover_bytes(handover)) == handover
    assert is_identity_record(link_bytes(link)) and not is_identity_record(b'{"event_id": "e1"}')
    for bad in (b"[1]", b'{"a":1}', b'[1,"link","ck","ada","x",1]', b'[2,"part","ck",1,null]', b'[1,"move","ck"]'):
        with pytest.raises(ValueError, match="identity record"):
            identity_from_bytes(bad)


def test_state_format_7_keeps_links_and_parts_and_formats_6_and_before_still_load():
    cookie = apply(new_state("ck"), anonymous("w1", T0, "ck", path="/pricing"), RULES).state
    ada = apply(new_state("ada"), known("l1", T0, "ada", cookie="ck"), RULES).state
    ada = attach(ada, "ck", Part(9, cookie), RULES).state
    assert from_bytes(to_bytes(ada)) == ada
    fields = orjson.loads(to_bytes(apply(new_state("bob"), known("b1", T0, "bob"), RULES).state))
    assert from_bytes(orjson.dumps([5, *fields[1:19]])) == from_bytes(orjson.dumps(fields))
    assert from_bytes(orjson.dumps([6, *fields[1:20]])) == from_bytes(orjson.dumps(fields))
    with pytest.raises(ValueError, match="unsupported contact state format 4"):
        from_bytes(orjson.dumps([4, *fields[1:]]))


# -- properties: the stream's delivery freedom against the offline scorer ---------------------


class StreamModel:
    """The worker's identity protocol (agents/scoring.py) without Kafka: per-key states, and
    identity records queued per destination key (one partition keeps their order) that are
    delivered whenever the schedule says, interleaved with the input events; a hand-over may
    also be delivered again late, as a replay after a crash re-sends one. Each key's version
    counts the records applied to it, as the stream's positions do."""

    def __init__(self, rules=RULES):
        self.rules = rules
        self.states = {}
        self.queues = defaultdict(deque)
        self.applied = defaultdict(int)
        self.sent = []

    def event(self, item):
        state = self.states.get(item.contact_id) or new_state(item.contact_id)
        applied = apply(state, item, self.rules)
        for link in applied.links:
            self.queues[link.anonymous_id].append(link)
        self._store(item.contact_id, applied.state)

    def deliver(self, key):
        self.identity(key, self.queues[key].popleft())

    def identity(self, key, record):
        state = self.states.get(key)
        if state is None:
            if isinstance(record, Handover) and record.part.state is None:
                return
            state = new_state(key)
        if isinstance(record, Link):
            state = record_claim(state, record.claim)
        else:
            state = attach(state, record.anonymous_id, record.part, self.rules).state
        self._store(key, state)

    def _store(self, key, state):
        self.applied[key] += 1
        state, sends = hand_over(state, self.applied[key])
        self.states[key] = state
        for target, part in sends:
            self.queues[target].append(Handover(key, part))
            self.sent.append((target, Handover(key, part)))

    def snapshots(self):
        return {
            key: snapshot(state, view_of(state, self.rules).last_event_ms, self.rules)
            for key, state in sorted(self.states.items())
            if is_published(state)
        }


@st.composite
def stitched_histories(draw, cookies=ANONYMOUS, max_size=25):
    """Anonymous histories, contacts' own events, links (several per cookie: conflicts) and
    aliases (also between contacts), at times that often coincide."""
    kinds = draw(st.lists(KINDS, min_size=1, max_size=max_size))
    events = []
    for index, (event_type, properties) in enumerate(kinds):
        at = T0 + draw(st.integers(0, 60)) * DAY_MS // 4
        shape = draw(st.sampled_from(["anonymous", "known", "link", "alias"]))
        if shape == "anonymous":
            events.append(anonymous(f"e{index}", at, draw(st.sampled_from(cookies)), event_type, **properties))
            continue
        contact = draw(st.sampled_from(CONTACTS))
        cookie = draw(st.sampled_from(cookies)) if shape == "link" else None
        previous = draw(st.sampled_from(cookies + CONTACTS)) if shape == "alias" else None
        events.append(known(f"e{index}", at, contact, event_type, cookie=cookie, previous=previous, **properties))
    return events


def run_stream(events, rnd, replays, rules=RULES):
    """Deliver `events` in a random order, with the identity records at random moments."""
    model, pending, stale_left = StreamModel(rules), list(events), replays
    rnd.shuffle(pending)
    while pending or any(model.queues.values()):
        busy = [key for key, queue in sorted(model.queues.items()) if queue]
        choice = rnd.random()
        if stale_left and model.sent and choice < 0.1:
            stale_left -= 1
            model.identity(*rnd.choice(model.sent))
        elif pending and (not busy or choice < 0.5):
            model.event(pending.pop())
        else:
            model.deliver(rnd.choice(busy))
    return model


@settings(max_examples=300, deadline=None)
@given(stitched_histories(), st.randoms(use_true_random=False), st.integers(0, 5))
def test_any_arrival_order_of_events_links_and_hand_overs_gives_the_offline_result(events, rnd, replays):
    model = run_stream(events, rnd, replays)
    assert model.snapshots() == published(offline(events))


def with_repeats(events, data):
    """`events` with up to 8 of them seen again, each somewhere after its first time."""
    repeats = data.draw(st.lists(st.sampled_from(events), min_size=1, max_size=8))
    with_duplicates = list(events)
    for repeat in repeats:
        position = data.draw(st.integers(with_duplicates.index(repeat) + 1, len(with_duplicates)))
        with_duplicates.insert(position, repeat)
    return with_duplicates


@settings(max_examples=200, deadline=None)
@given(stitched_histories(), st.data())
def test_links_and_events_seen_twice_change_nothing(events, data):
    with_duplicates = with_repeats(events, data)
    rnd = data.draw(st.randoms(use_true_random=False))
    assert run_stream(with_duplicates, rnd, 2).snapshots() == published(offline(events))
    assert published(offline(with_duplicates)) == published(offline(events))


@settings(max_examples=200, deadline=None)
@given(stitched_histories(), st.randoms(use_true_random=False), st.sampled_from([RULES, CAPPED]))
def test_every_anonymous_id_is_published_once_or_merged_into_exactly_one_contact(events, rnd, rules):
    shuffled = list(events)
    rnd.shuffle(shuffled)
    run = offline(shuffled, rules)
    views = published(run)
    for key, state in run.contacts.items():
        into = winner(state)
        assert (key in views) == is_published(state)
        assert len(state.claims) <= rules.max_linked_ids and set(state.parts) <= set(state.claims)
        if into is not None:
            assert into in views and run.contacts[into].parts[key].state is not None
        elif state.claim is not None and not state.claims:  # its earliest link was beyond its contact's cap
            assert state.claim.refused and key not in run.contacts[state.claim.contact_id].claims


# -- the cap on linked ids (rules [identity] max_linked_ids) ---------------------------------


def devices(contact, count, start=0, step_ms=60_000):
    """`count` identify calls of one contact, each with a new cookie, one minute apart."""
    return [
        known(f"id{i}", T0 + i * step_ms, contact, "identify", cookie=f"{contact}-device-{i}")
        for i in range(start, start + count)
    ]


def test_a_contact_merges_its_earliest_linked_ids_up_to_the_cap_and_the_others_stand_on_their_own():
    browsing = [anonymous(f"w{i}", T0 - DAY_MS, f"ada-device-{i}", path="/pricing") for i in range(4)]
    run = offline([*browsing, *devices("ada", 4)], CAPPED)
    views = published(run)
    assert set(run.contacts["ada"].claims) == {"ada-device-0", "ada-device-1"}
    assert set(views) == {"ada", "ada-device-2", "ada-device-3"}, "beyond the cap: scored as their own contacts"
    assert views["ada"].engagement > views["ada-device-2"].engagement > 0
    for refused in ("ada-device-2", "ada-device-3"):
        assert winner(run.contacts[refused]) is None and run.contacts[refused].claim.refused


def test_an_id_linked_only_beyond_the_cap_has_nothing_to_score_and_is_published_nowhere():
    run = offline(devices("ada", 5), CAPPED)
    assert set(published(run)) == {"ada"}
    assert [key for key, state in run.contacts.items() if is_published(state)] == ["ada"]


def test_a_late_earlier_link_pushes_out_a_merged_id_which_then_stands_on_its_own():
    """The cap is decided by event time, not arrival: a link that arrives late but happened
    first takes the place of the latest one, whose merge is undone (a refused link is sent)."""
    history = [anonymous(f"w{i}", T0 - DAY_MS, f"ada-device-{i}", path="/pricing") for i in range(3)]
    late_first, *others = devices("ada", 3)
    model = StreamModel(CAPPED)
    for item in [*history, *others]:
        model.event(item)
    while any(model.queues.values()):
        model.deliver(next(key for key, queue in sorted(model.queues.items()) if queue))
    assert set(model.states["ada"].parts) == {"ada-device-1", "ada-device-2"}, "both merged while under the cap"
    model.event(late_first)
    refused = [record for record in model.queues["ada-device-2"] if isinstance(record, Link)]
    assert [link.claim.refused for link in refused] == [True]
    assert set(model.states["ada"].parts) == {"ada-device-1"}, "the pushed-out part leaves with its claim"
    stale = Part(99, model.states["ada-device-2"])  # a hand-over sent before the refused link reached the device
    assert attach(model.states["ada"], "ada-device-2", stale, CAPPED).outcome == "duplicate", "refused: not a claim"
    while any(model.queues.values()):
        model.deliver(next(key for key, queue in sorted(model.queues.items()) if queue))
    assert model.snapshots() == published(offline([*history, late_first, *others], CAPPED))
    assert set(model.snapshots()) == {"ada", "ada-device-2"}


def test_links_past_the_cap_leave_the_contacts_state_as_large_as_at_the_cap():
    run = offline(devices("ada", 2_000))
    ada = run.contacts["ada"]
    assert sorted(ada.claims) == sorted(f"ada-device-{i}" for i in range(RULES.max_linked_ids))
    assert set(ada.parts) == set(ada.claims)
    assert len(to_bytes(ada)) == len(to_bytes(offline(devices("ada", 100)).contacts["ada"]))


def test_the_cap_is_a_rules_setting_checked_at_load():
    assert RULES.max_linked_ids == 25
    shipped = "max_linked_ids = 25 "
    assert shipped in RULES_TEXT
    assert parse_rules(RULES_TEXT.replace(shipped, "max_linked_ids = 3 ")).max_linked_ids == 3
    for bad in ("0", "1001", '"many"'):
        with pytest.raises(RulesError, match="max_linked_ids"):
            parse_rules(RULES_TEXT.replace(shipped, f"max_linked_ids = {bad} "))


def widest_state(key, rules, text):
    """The largest state `rules` let an id hold: every signal, interest, fit and model
    attribute, a full de-duplication window, every nurture track, text values `text`."""

    def sums(names):
        return {name: SignalSum(-1.2345678901234567e-300, T0, 1.2345678901234567e-300) for name in names}

    value, attributes = ProfileValue(text, T0, 2**64 - 1), sorted({*rules.fit, *rules.model_attributes})
    return ContactState(
        key, True, True, True, T0, 5, CrmStage("nurturing", T0, 2**64 - 1), "opportunity", 4,
        signals=sums(rules.signal_categories),
        profile=dict.fromkeys(attributes, value),
        best_fit=dict.fromkeys(attributes, -1.2345678901234567e-300),
        seen=b"\xff" * 8 * rules.dedup_window,
        positions={"e": 2**62, "r": 2**62},
        published_ms=T0,
        cooling_due_ms=T0,
        interests=sums(interest.name for interest in rules.interests),
        account=value,
        email=value,
        account_sent=text,
        nurtured={track.name: 10**6 for track in rules.nurture.tracks},
        model_signals={model.name: sums(model.signal_categories) for model in rules.own_signal_models},
        model_armed={model.name: False for model in rules.models},
    )  # fmt: skip


def test_the_largest_contact_state_at_the_cap_fits_a_kafka_record():
    """The bound by construction (docs/scoring.md#identity): the contact's own widest state
    plus, for each of its `max_linked_ids` claims, the id twice and the widest part, with
    ids and text values at the input limits (2,000 characters), stays under 1 MB."""
    longest = "x" * DEFAULT_LIMITS.max_string
    ids = [f"{index:04d}{longest[4:]}" for index in range(RULES.max_linked_ids)]
    contact = widest_state(longest, RULES, longest)
    contact.claims = dict.fromkeys(ids, (T0, 2**64 - 1))
    contact.parts = {
        anonymous_id: Part(2**62, part_of(widest_state(anonymous_id, RULES, longest))) for anonymous_id in ids
    }
    assert from_bytes(to_bytes(contact)) == contact
    assert len(to_bytes(contact)) < 1_000_000


@settings(max_examples=300, deadline=None)
@given(stitched_histories(COOKIES, 30), st.randoms(use_true_random=False), st.integers(0, 5))
def test_with_the_cap_any_arrival_order_of_events_links_and_hand_overs_gives_the_offline_result(events, rnd, replays):
    model = run_stream(events, rnd, replays, CAPPED)
    assert model.snapshots() == published(offline(events, CAPPED))
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert published(offline(shuffled, CAPPED)) == published(offline(events, CAPPED))


@settings(max_examples=200, deadline=None)
@given(stitched_histories(COOKIES, 30), st.data())
def test_with_the_cap_links_and_events_seen_twice_change_nothing(events, data):
    with_duplicates = with_repeats(events, data)
    rnd = data.draw(st.randoms(use_true_random=False))
    assert run_stream(with_duplicates, rnd, 2, CAPPED).snapshots() == published(offline(events, CAPPED))
