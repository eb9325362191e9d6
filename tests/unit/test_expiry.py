"""Ageing out (scoring/expiry.py): which contacts expire and when, the offline scorer's rule,
and the stream's rule (a record clock, sweeps at any pace) against it."""

from dataclasses import replace

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from leadpulse.cli.offline import score_lines, scored
from leadpulse.scoring.accounts import (
    AccountState,
    Departure,
    changes,
    departed,
    departed_key,
    departure_due,
    departure_owner,
    fold,
    leaving,
    new_departures,
    restore,
)
from leadpulse.scoring.engine import apply, new_state, snapshot
from leadpulse.scoring.expiry import (
    ages,
    aging_entry,
    aging_key,
    aging_range,
    departure_entry,
    departure_of,
    departures_range,
    due_ms,
    expired,
    index_moves,
    rounded_due,
)
from leadpulse.scoring.replay import ScoreRun
from leadpulse.scoring.state import Claim, ContactState
from leadpulse.scoring.timeutil import format_ms
from tests.factories import DAY_MS, DEFAULT_RULES, T0, event, raw_event, seen_hashes

RULES = replace(DEFAULT_RULES, anonymous_after_ms=10 * DAY_MS)
AFTER = RULES.anonymous_after_ms


def anonymous(at_ms: int, contact: str = "cookie-1"):
    return event("page_viewed", at_ms, contact, identified=False)


def test_the_shipped_rules_expire_anonymous_contacts_after_90_days():
    assert DEFAULT_RULES.anonymous_after_ms == 90 * DAY_MS


def test_only_a_contact_nobody_identified_and_no_link_names_ages():
    cookie = apply(new_state("cookie-1"), anonymous(T0), RULES).state
    assert ages(cookie) and due_ms(cookie, RULES) == T0 + AFTER
    assert not expired(cookie, T0 + AFTER, RULES) and expired(cookie, T0 + AFTER + 1, RULES)
    person = apply(new_state("ada@acme.io"), event("page_viewed", T0, "ada@acme.io"), RULES).state
    assert not ages(person) and not expired(person, T0 + 10 * AFTER, RULES)
    claimed = replace(cookie, claim=Claim("ada@acme.io", T0, 1))
    refused = replace(cookie, claim=Claim("ada@acme.io", T0, 1, refused=True))
    linking = replace(cookie, claims={"other-cookie": (T0, 1)})
    assert not any(ages(state) for state in (claimed, refused, linking))


def test_index_entries_sort_by_due_time_within_their_partition():
    early, late = aging_key(3, T0, "zz-cookie"), aging_key(3, T0 + 1, "aa-cookie")
    start, end = aging_range(3, T0 + 1)
    assert start <= early < end <= late, "only the entry due before the clock is in the range"
    assert aging_entry(late) == (T0 + 1, "aa-cookie")
    assert not start <= aging_key(4, T0, "zz-cookie") < end, "another partition's entry"
    step = AFTER // 1024
    base = T0 - T0 % step
    assert [rounded_due(base + k, RULES) for k in (1, step)] == [base + step] * 2, "an entry moves once per step"
    assert index_moves(3, "c", T0, T0) == []
    assert index_moves(3, "c", T0, None) == [(aging_key(3, T0, "c"), None)]
    assert index_moves(3, "c", None, T0) == [(aging_key(3, T0, "c"), b"")]


def test_an_event_after_the_due_time_starts_a_new_contact_offline():
    run = ScoreRun(RULES)
    run.add(event("pricing_viewed", T0, "cookie-1", identified=False))
    run.add(anonymous(T0 + AFTER + 1))
    assert run.aged == 1 and run.contacts["cookie-1"].last_event_ms == T0 + AFTER + 1
    assert "pricing" not in str(run.snapshots(None)[0].reasons), "the old history is gone"
    run.add(anonymous(T0 - DAY_MS))  # late, and within the new contact's time: its own
    assert run.aged == 1 and len(seen_hashes(run.contacts["cookie-1"])) == 2


def test_a_link_to_an_expired_cookie_hands_nothing_over():
    run = ScoreRun(RULES)
    run.add(event("pricing_viewed", T0, "cookie-1", identified=False))
    identify = event("profile_updated", T0 + AFTER + DAY_MS, "ada@acme.io")
    run.add(replace(identify, anonymous_id="cookie-1"))
    ada = run.published()[0]
    assert run.aged == 1 and ada.contact_id == "ada@acme.io" and "pricing_viewed" not in ada.signals


def test_leadpulse_score_expires_as_of_at_else_the_latest_event():
    lines = [
        orjson.dumps(raw_event(event_id="a", contact_id=None, anonymous_id="cookie-old", occurred_at=format_ms(T0))),
        orjson.dumps(raw_event(event_id="b", contact_id="ada@acme.io", occurred_at=format_ms(T0))),
        orjson.dumps(
            raw_event(event_id="c", contact_id=None, anonymous_id="cookie-new", occurred_at=format_ms(T0 + 9 * DAY_MS))
        ),
    ]

    def contacts(at_ms):
        result = scored(score_lines(lines, RULES, now_ms=T0 + 20 * DAY_MS), "contacts", at_ms, last_event=False)
        return [orjson.loads(line)["contact_id"] for line in result.records], result.totals

    kept, totals = contacts(None)  # as of the latest event: nothing due yet
    assert kept == ["ada@acme.io", "cookie-new", "cookie-old"] and totals.aged == 0
    kept, totals = contacts(T0 + 15 * DAY_MS)
    assert kept == ["ada@acme.io", "cookie-new"] and totals.aged == 1
    assert "1 anonymous contacts expired" in totals.summary()


def test_a_departure_keeps_its_due_time_through_the_store_and_its_index_finds_it():
    account = AccountState("acme.io", RULES)
    fold(account, leaving("bob@acme.io", T0, 3), offset=7, expires_ms=T0 + 5)
    marker = departed("bob@acme.io")
    key = departed_key("acme.io", marker)
    assert new_departures(account) == [(key, T0 + 5)]
    stored = dict(changes(account, None))
    assert departure_due(stored[key]) == T0 + 5 and departure_owner(key) == ("acme.io", marker)
    back = restore("acme.io", None, [(key, stored[key])], RULES)
    assert back.departed[marker] == Departure(T0, 7, 3, False, T0 + 5)
    entry = departure_entry(2, T0 + 5, key)
    start, end = departures_range(2, T0 + 6)
    assert start <= entry < end and departure_of(entry) == (T0 + 5, key)
    old = orjson.dumps([7, T0, 3, False])  # stored before departures expired
    assert departure_due(old) is None


# --- the stream's rule against the offline scorer's ------------------------------------------

COOKIES = ("c-1", "c-2", "c-3")


@st.composite
def feeds(draw):
    """Records of a partition in order: (cookie, event time, record time), record times growing,
    most events recorded within hours of occurring, some days late; where batches end and how
    many due contacts each batch's sweep reaches."""
    count = draw(st.integers(1, 25))
    gaps = draw(st.lists(st.integers(0, 6 * DAY_MS), min_size=count, max_size=count))
    record, records = T0, []
    for gap in gaps:
        record += gap
        late = draw(st.sampled_from([0, 3_600_000, DAY_MS, 4 * DAY_MS, 12 * DAY_MS]))
        records.append((draw(st.sampled_from(COOKIES)), record - late, record))
    cuts = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    sweeps = draw(st.lists(st.integers(0, 3), min_size=count, max_size=count))
    return records, cuts, sweeps


def visit(number, cookie, at):
    return event("page_viewed", at, cookie, event_id=f"e{number}", identified=False)


def stream(records, cuts, sweeps):
    """The worker's rule, as agents.scoring applies it: a record's contact is read at the
    partition's record clock (expired: a new contact); at the end of a batch its contacts due
    at the clock are deleted and the sweep deletes up to `sweeps[i]` more due ones; at the
    end, whatever is due at the clock (later ticks sweep it). Also says whether an event
    arrived after its contact had expired by the record clock although it occurred before
    (the documented seam)."""
    table: dict[str, ContactState] = {}
    gone: dict[str, int] = {}  # cookie -> due time of its expired state
    clock, seam = 0, False
    for number, ((cookie, at, recorded), cut, sweep) in enumerate(zip(records, cuts, sweeps, strict=True)):
        clock = max(clock, recorded)
        state = table.get(cookie)
        if state is not None and expired(state, max(clock, at), RULES):
            gone[cookie] = due_ms(state, RULES)
            state = None
        seam |= state is None and cookie in gone and at <= gone[cookie]
        table[cookie] = apply(state or new_state(cookie), visit(number, cookie, at), RULES).state
        if cut:
            due = sorted(key for key, kept in table.items() if expired(kept, clock, RULES))
            for key in due[: sweep + 1]:
                gone[key] = due_ms(table.pop(key), RULES)
    return {key: kept for key, kept in table.items() if not expired(kept, clock, RULES)}, clock, seam


def offline(records, at_ms):
    run = ScoreRun(RULES)
    for number, (cookie, at, _) in enumerate(records):
        run.add(visit(number, cookie, at))
    run.age(at_ms)
    return run


@settings(max_examples=300, deadline=None)
@given(feeds())
def test_the_stream_and_the_offline_scorer_keep_the_same_contacts_with_the_same_scores(feed):
    records, cuts, sweeps = feed
    kept, clock, seam = stream(records, cuts, sweeps)
    if seam:  # an event recorded after its contact expired although it occurred before: the one seam
        return
    run = offline(records, clock)
    assert sorted(kept) == sorted(run.contacts)
    for cookie, state in kept.items():
        at = state.last_event_ms
        assert snapshot(state, at, RULES) == snapshot(run.contacts[cookie], at, RULES)


@settings(max_examples=200, deadline=None)
@given(feeds(), st.data())
def test_the_stream_keeps_the_same_contacts_however_batches_are_cut_and_sweeps_paced(feed, data):
    records, cuts, sweeps = feed
    other_cuts = data.draw(st.lists(st.booleans(), min_size=len(cuts), max_size=len(cuts)))
    other_sweeps = data.draw(st.lists(st.integers(0, 3), min_size=len(cuts), max_size=len(cuts)))
    one, _, _ = stream(records, cuts, sweeps)
    other, _, _ = stream(records, other_cuts, other_sweeps)
    assert one == other


def test_a_late_event_after_expiry_is_the_seam_the_stream_and_offline_decide_apart():
    """Documented: the worker's clock is the record time, the offline scorer's the event time."""
    records = [("c-1", T0, T0), ("c-2", T0 + 11 * DAY_MS, T0 + 11 * DAY_MS), ("c-1", T0 + DAY_MS, T0 + 11 * DAY_MS)]
    kept, clock, seam = stream(records, [True] * 3, [3] * 3)
    assert seam and clock == T0 + 11 * DAY_MS
    assert kept["c-1"].last_event_ms == T0 + DAY_MS and len(seen_hashes(kept["c-1"])) == 1, (
        "a new contact in the stream"
    )
    assert len(seen_hashes(offline(records, clock).contacts["c-1"])) == 2, "the old one, offline"
