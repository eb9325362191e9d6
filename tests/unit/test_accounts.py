"""Accounts in the core: who belongs where, what an account snapshot says, and that it does
not depend on the order member records arrive in (docs/scoring.md, Accounts)."""

from dataclasses import replace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadpulse.schemas.outputs import account_record, hot_account_record
from leadpulse.scoring.accounts import (
    AccountState,
    Member,
    account_snapshot,
    account_updates,
    aggregate_from_bytes,
    changes,
    departed,
    entries_prefix,
    fold,
    leaving,
    member_from_bytes,
    member_to_bytes,
    receive,
    restore,
    settle,
)
from leadpulse.scoring.domains import account_of
from leadpulse.scoring.engine import Reason, apply, new_state, snapshot
from leadpulse.scoring.replay import ScoreRun
from leadpulse.scoring.rules import RulesError, parse_rules
from leadpulse.scoring.state import from_bytes, to_bytes
from tests.factories import DAY_MS, DEFAULT_RULES, T0, event
from tests.unit.test_schemas import schema

RULES = DEFAULT_RULES


@pytest.mark.parametrize(
    ("contact", "explicit", "email", "expected"),
    [
        ("ada@Acme.io", None, None, "acme.io"),
        ("ada@gmail.com", None, None, None),
        ("ada@yahoo.co.uk", None, None, None),
        ("ada@hotmail.fr", None, None, None),
        ("ada@orange.fr", None, None, None),
        ("ada@proton.me", None, None, None),
        ("reader@example.com", None, None, None),
        ("c-42", None, "ada@acme.io", "acme.io"),
        ("ada@acme.io", None, "ada@gmail.com", "acme.io"),  # a free-mail e-mail falls back to the id
        ("c-42", None, "not an address", None),
        ("c-42", None, "a@nodot", None),
        ("ada@gmail.com", "acct-7", None, "acct-7"),  # an explicit account wins over everything
        ("ada@acme.io", " acct-7 ", "x@globex.eu", "acct-7"),
        ("anon-1", None, None, None),
    ],
)
def test_a_contact_belongs_to_its_explicit_account_else_its_business_domain(contact, explicit, email, expected):
    assert account_of(contact, explicit, email) == expected


def test_the_latest_account_id_by_event_time_wins_whatever_the_arrival_order():
    late = event("profile_updated", T0 + DAY_MS, "ada@acme.io", account_id="globex")
    early = event("profile_updated", T0, "ada@acme.io", account_id="initech")
    for order in ((early, late), (late, early)):
        state = new_state("ada@acme.io")
        for item in order:
            state = apply(state, item, RULES).state
        assert account_updates(state, snapshot(state, T0 + DAY_MS, RULES), RULES)[0] == "globex"


def test_state_round_trip_keeps_identity_and_account():
    state = apply(
        new_state("c-1"), event("form_submitted", T0, "c-1", email="ada@acme.io", account_id="acme"), RULES
    ).state
    state.account_sent = "acme.io"
    assert from_bytes(to_bytes(state)) == state


def member(contact, score, at=T0, *, fit=0.0, department=None, seniority=None, left=False, version=0):
    attributes = tuple((k, v) for k, v in (("department", department), ("seniority", seniority)) if v is not None)
    if left:
        return Member(contact, at, left=True, version=version)
    return Member(contact, at, False, score, fit, RULES.temperature(score), "lead", attributes, (), version)


def test_a_buying_committee_of_lukewarm_contacts_makes_a_hot_account():
    committee = [
        member("a", 55, seniority="c_level", department="executive"),
        member("b", 52, seniority="director", department="marketing"),
        member("c", 50, seniority="manager", department="it"),
        member("d", 50, seniority="individual", department="finance"),
        member("e", 48, seniority="individual", department="sales"),
    ]
    view = account_snapshot("acme.io", committee, RULES)
    assert view is not None
    assert all(m.score < 75 for m in committee)
    assert view.temperature_label == "hot" and view.score >= 75
    assert view.engaged_contacts == 5 and view.coverage == 1.0 and not view.committee_missing
    assert [top.contact_id for top in view.top_contacts] == ["a", "b", "c"]
    alone = account_snapshot("acme.io", [member("a", 90, seniority="c_level")], RULES)
    assert alone is not None and alone.temperature_label != "hot"


def test_account_records_and_hot_account_alerts_match_their_published_schemas():
    state = AccountState("acme.io", RULES)
    members = [
        member("a", 90, seniority="c_level", department="executive"),
        member("b", 85, seniority="director", department="it"),
        member("c", 80, seniority="manager", department="marketing"),
    ]
    alerts = []
    for record in members:
        fold(state, replace(record, reasons=(Reason("pricing_page", "engagement", 12.5),)))
        alerts.append(settle(state, record)[1])
    view = state.snapshot()
    assert view is not None and view.top_contacts[0].attributes
    schema("account-score").validate(account_record(view))
    fired = [alert for alert in alerts if alert is not None]
    assert fired, "three hot members make a hot account"
    schema("hot-account").validate(hot_account_record(fired[0]))


def test_hot_accounts_alert_once_per_episode():
    state = AccountState("acme.io", RULES)
    alerts = []
    scores = [[90, 90, 90, 90], [88, 90, 90, 90], [10, 10, 10, 10], [90, 90, 90, 90]]
    for step, values in enumerate(scores):
        for index, score in enumerate(values):
            record = member(f"c{index}", score, T0 + step * 1000 + index)
            fold(state, record)
            alerts.append(settle(state, record)[1])
    fired = [alert for alert in alerts if alert is not None]
    assert len(fired) == 2  # the first episode, and the one after the account cooled off
    assert len({alert.id for alert in fired}) == 2


def test_member_records_round_trip():
    records = [
        Member(
            "a",
            T0,
            False,
            61,
            40.0,
            3,
            "prospect",
            (("department", "it"),),
            (Reason("demo request", "engagement", 50.0),),
            7,
        ),
        Member("b", T0 + 1, left=True, version=9),
        leaving("c", T0 + 2, 11, erased=True),
    ]
    for record in records:
        assert member_from_bytes(member_to_bytes(record)) == record


def test_member_records_sent_before_versions_are_read_at_version_0_older_than_any_since():
    """Records already in `account-members`, and entries stored from them, when versions came."""
    old_member = orjson.dumps([1, "a", T0, 0, 61, 40.0, 3, "prospect", [["department", "it"]], []])
    old_leave = orjson.dumps([1, "b", T0 + 1, 1])
    assert member_from_bytes(old_member) == Member("a", T0, False, 61, 40.0, 3, "prospect", (("department", "it"),))
    assert member_from_bytes(old_leave) == Member("b", T0 + 1, left=True, version=0)
    state = AccountState("acme.io", RULES)
    assert receive(state, member_from_bytes(old_member), 0) == (False, None)
    assert fold(state, member("a", 20, T0 - 5, version=1), 1), "a record since is newer, whatever its time"
    key = entries_prefix("acme.io") + b"d" + departed("b").encode()
    legacy_departure = restored("acme.io", {key: orjson.dumps([3, T0 + 1])}).departed[departed("b")]
    assert (legacy_departure.at_ms, legacy_departure.offset, legacy_departure.version) == (T0 + 1, 3, 0)
    for malformed in ([1, "b", T0, 1, "7"], [1, "b", T0, 1, 7, 8]):
        with pytest.raises(ValueError, match="malformed"):
            member_from_bytes(orjson.dumps(malformed))


def test_accounts_rules_errors_name_the_key():
    base = DEFAULT_RULES_TEXT
    bad = [
        (base + '\n[accounts]\ntop_weights = "x"\n', "accounts.top_weights"),
        (base + "\n[accounts]\nengaged_score = 500\n", "accounts.engaged_score"),
        (base + "\n[accounts]\ntop_wieghts = [1]\n", "accounts.top_wieghts: unknown key; did you mean 'top_weights'"),
        (base + '\n[[accounts.committee]]\nname = "x"\nshoe_size = ["9"]\n', r"accounts.committee[0].shoe_size"),
        (base + "\n[accounts.temperature]\nbands = [0, 50]\n", "accounts.temperature.labels"),
    ]
    for text, where in bad:
        with pytest.raises(RulesError) as raised:
            parse_rules(text, "r.toml")
        assert where in str(raised.value)
        assert "\n" not in str(raised.value)


DEFAULT_RULES_TEXT = """
version = "t"
[categories.web]
[[signals]]
name = "page view"
event = "page_viewed"
category = "web"
points = 1
[fit.department]
points = { it = 1 }
"""

# --- properties -----------------------------------------------------------------------------

ACCOUNT_MOVES = st.one_of(
    st.fixed_dictionaries({"account_id": st.sampled_from(["acct-1", "acct-2"])}),
    st.fixed_dictionaries({"email": st.sampled_from(["x@acme.io", "x@globex.eu", "x@gmail.com"])}),
    st.fixed_dictionaries(
        {
            "department": st.sampled_from(["it", "finance", "sales"]),
            "seniority": st.sampled_from(["c_level", "director", "individual"]),
        }
    ),
    st.fixed_dictionaries({"path": st.sampled_from(["/pricing", "/product", "/blog/x"])}),
)
CONTACTS = ["ada@acme.io", "bob@acme.io", "cy@globex.eu", "dee@gmail.com"]


@st.composite
def histories(draw):
    """Events of a few contacts that move between accounts, with distinct event ids."""
    items = draw(
        st.lists(
            st.tuples(
                st.sampled_from(CONTACTS),
                st.sampled_from(["page_viewed", "profile_updated", "webinar_attended", "demo_requested"]),
                ACCOUNT_MOVES,
                st.integers(0, 20 * DAY_MS),
            ),
            min_size=1,
            max_size=25,
        )
    )
    return [
        event(kind, T0 + at, contact, event_id=f"e{i}", **props) for i, (contact, kind, props, at) in enumerate(items)
    ]


def stream(events):
    """What the worker sends to `account-members`, contact by contact, one publish per event
    (the stream's finest batching): per account, the records of each contact in send order."""
    contacts = {}
    sent: dict[str, dict[str, list[Member]]] = {}
    published: dict[str, int] = {}
    for item in events:
        state = apply(contacts.get(item.contact_id) or new_state(item.contact_id), item, RULES).state
        at = max(state.last_event_ms, published.get(item.contact_id, 0))
        published[item.contact_id] = at
        account, updates = account_updates(state, snapshot(state, at, RULES), RULES)
        for target, record in updates:
            sent.setdefault(target, {}).setdefault(record.contact_id, []).append(record)
        state.account_sent = account
        contacts[item.contact_id] = state
    return sent


def interleave(per_contact: dict[str, list[Member]], choices) -> list[Member]:
    """Any arrival order that keeps each contact's own records in send order (Kafka keeps
    the order of one partition, and one contact's records to an account share one)."""
    queues = {contact: list(records) for contact, records in sorted(per_contact.items())}
    arrived = []
    while queues:
        contact = sorted(queues)[choices.draw(st.integers(0, len(queues) - 1))]
        arrived.append(queues[contact].pop(0))
        if not queues[contact]:
            del queues[contact]
    return arrived


@settings(max_examples=150, deadline=None)
@given(histories(), st.randoms(use_true_random=False), st.data())
def test_stream_accounts_equal_the_offline_accounts_for_any_arrival_order(events, rng, data):
    shuffled = list(events)
    rng.shuffle(shuffled)
    offline = ScoreRun(RULES)
    for item in events:
        offline.add(item)
    expected = {view.account_id: view for view in offline.accounts(None)}
    sent = stream(shuffled)
    got = {}
    for account, per_contact in sent.items():
        state = AccountState(account, RULES)
        for record in interleave(per_contact, data):
            fold(state, record)
        view = state.snapshot()
        assert view == account_snapshot(account, state.members.values(), RULES)
        if view is not None:
            got[account] = view
    assert got == expected


@settings(max_examples=150, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_a_contact_that_changes_account_leaves_the_old_one(events, rng):
    shuffled = list(events)
    rng.shuffle(shuffled)
    sent = stream(shuffled)
    offline = ScoreRun(RULES)
    for item in events:
        offline.add(item)
    final = {
        contact: account_updates(state, snapshot(state, state.last_event_ms, RULES), RULES)[0]
        for contact, state in offline.contacts.items()
    }
    for account, per_contact in sent.items():
        state = AccountState(account, RULES)
        for records in per_contact.values():
            for record in records:
                fold(state, record)
        members = {m.contact_id for m in state.members.values() if not m.left}
        assert members == {contact for contact, home in final.items() if home == account}


def test_a_group_call_and_an_account_id_property_are_one_last_writer_wins_account():
    """Segment's groupId (Event.account_id) and a native `account_id` property feed the
    same field: the later one wins whichever arrives first."""
    grouped = replace(event("account_linked", T0 + 1_000, "ada@acme.io"), account_id="globex")
    named = event("profile_updated", T0, "ada@acme.io", account_id="initech")
    for order in ((grouped, named), (named, grouped)):
        state = new_state("ada@acme.io")
        for item in order:
            state = apply(state, item, RULES).state
        assert state.account is not None and state.account.value == "globex"
        assert snapshot(state, T0 + 1_000, RULES).account_id == "globex"


def test_an_erased_contact_leaves_its_account_offline_and_in_the_stream():
    """The offline scorer drops an erased contact from its account; the stream's leave
    record, folded after the contact's member record, ends in the same account snapshot."""
    events = [
        event("demo_requested", T0, "ada@globex.eu", seniority="vp"),
        event("demo_requested", T0 + 1_000, "tom@globex.eu", seniority="director"),
        event("contact_erased", T0 + 2_000, "ada@globex.eu"),
    ]
    offline = ScoreRun(RULES)
    for item in events:
        offline.add(item)
    [expected] = offline.accounts(None)
    assert expected.contacts == 1 and [top.contact_id for top in expected.top_contacts] == ["tom@globex.eu"]

    sent = stream(events[:2])["globex.eu"]
    state = AccountState("globex.eu", RULES)
    for record in [*sent["ada@globex.eu"], *sent["tom@globex.eu"], leaving("ada@globex.eu", T0 + 2_000)]:
        fold(state, record)
    assert state.snapshot() == expected


# --- the stream's incremental account and how it is stored ------------------------------------


def store_of(state: AccountState, published: bytes | None = b"{}", store: dict | None = None) -> dict:
    """Apply the account's pending changes to a key-value store, as the table does."""
    store = {} if store is None else store
    for key, value in changes(state, published):
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value
    return store


def restored(account_id: str, store: dict) -> AccountState:
    """The account read back from the store, as a worker does after a restart."""
    data = store.get(account_id.encode())
    prefix = entries_prefix(account_id)
    entries = sorted((key, value) for key, value in store.items() if key.startswith(prefix))
    return restore(account_id, None if data is None else aggregate_from_bytes(data), entries, RULES)


def test_an_account_keeps_a_leave_under_a_digest_never_the_contact_id_in_clear():
    """The account table's changelog is compacted: what its latest records hold stays. An
    erased contact's id is in none of them, only in the deleted member key (a tombstone)."""
    state = AccountState("acme.io", RULES)
    fold(state, member("ada@acme.io", 40, T0))
    store = store_of(state)
    fold(state, leaving("ada@acme.io", T0 + 1))
    written = changes(state, None)

    assert all(b"ada@acme.io" not in value for _, value in written if value is not None)
    assert [key for key, value in written if value is None and b"ada@acme.io" in key], "her member key is deleted"
    assert written[-1] == (b"acme.io", None), "the empty account is deleted"
    for key, value in written:
        store[key] = value
    state = restored("acme.io", {k: v for k, v in store.items() if v is not None})
    assert not fold(state, member("ada@acme.io", 40, T0)), "an older record arriving late does not bring her back"
    assert fold(state, member("ada@acme.io", 55, T0 + 2)), "a newer one does (she came back)"
    assert state.snapshot() is not None and state.snapshot().contacts == 1


def test_an_account_stored_as_one_value_by_an_older_version_is_moved_under_its_own_keys():
    legacy = orjson.dumps(
        [
            1,
            "acme.io",
            False,
            4,
            9,
            [
                orjson.loads(member_to_bytes(member("bob@acme.io", 80, T0, seniority="c_level"))),
                [1, "ada@acme.io", T0, 1],  # a leave an even older version kept in clear
                [1, departed("cy@acme.io"), T0, 1],
            ],
        ]
    )
    state = restored("acme.io", {b"acme.io": legacy})
    assert (state.hot_armed, state.temperature, state.position) == (False, 4, None)  # an offset of the old topic
    assert state.snapshot() == account_snapshot("acme.io", [member("bob@acme.io", 80, T0, seniority="c_level")], RULES)

    store = store_of(state, b"{}", {b"acme.io": legacy})
    assert not any(b"ada@acme.io" in key or b"ada@acme.io" in value for key, value in store.items())
    again = restored("acme.io", store)
    assert (again.members, again.departed, again.position) == (state.members, state.departed, None)
    assert not receive(again, member("ada@acme.io", 30, T0 - 1), 10)[0] and not again.members.get("ada@acme.io")
    assert not receive(again, member("bob@acme.io", 90, T0 + 5), 11)[0], "the next record of the new topic applies"
    assert again.members["bob@acme.io"].score == 90


def test_records_replayed_after_a_crash_change_nothing_and_alert_no_more():
    hot = [member(f"c{i}", 95, T0 + i, seniority="c_level", department="it") for i in range(4)]
    state = AccountState("acme.io", RULES)
    fired = [receive(state, record, offset)[1] for offset, record in enumerate(hot)]
    assert sum(alert is not None for alert in fired) == 1
    store = store_of(state)
    cooled = member("c0", 10, T0 + 10)
    receive(state, cooled, 4)

    after_crash = restored("acme.io", store)  # the state before offset 4 was stored
    replays = [receive(after_crash, record, offset) for offset, record in enumerate(hot)]
    assert replays == [(True, None)] * 4
    assert receive(after_crash, cooled, 4)[0] is False
    assert after_crash.snapshot() == state.snapshot()


def test_an_account_whose_member_entries_were_stored_without_its_aggregate_is_completed_by_the_replay():
    """Entries and aggregate are separate changelog records: a crash may leave some of them
    unsent. Each entry carries its offset, so the replay completes what is missing."""
    state = AccountState("acme.io", RULES)
    records = [member(f"c{i}", 50 + i, T0 + i) for i in range(3)]
    for offset, record in enumerate(records):
        receive(state, record, offset)
    written = changes(state, b"{}")
    partial = dict(written[:2])  # c0 and c1 reached the changelog; c2 and the aggregate did not
    again = restored("acme.io", partial)
    for offset, record in enumerate(records):
        receive(again, record, offset)
    assert again.snapshot() == state.snapshot()
    assert again.position == 2


CONTACT_IDS = [f"c{i}@acme.io" for i in range(6)]
DEPARTMENTS = ["executive", "it", "finance", "marketing", "sales"]
SENIORITIES = ["c_level", "vp", "director", "manager", "individual"]
MEMBER_RECORDS = st.builds(
    lambda contact, at, score, fit, department, seniority, leaves: (
        leaving(contact, T0 + at)
        if leaves
        else member(contact, score, T0 + at, fit=fit, department=department, seniority=seniority)
    ),
    st.sampled_from(CONTACT_IDS),
    st.integers(0, 8),  # few times: ties between records of one contact
    st.integers(0, 100),
    st.sampled_from([0.0, 12.5, 40.0, 40.0, 90.0]),  # ties in fit too
    st.sampled_from(DEPARTMENTS),
    st.sampled_from(SENIORITIES),
    st.booleans(),
).flatmap(lambda record: st.builds(replace, st.just(record), version=st.integers(0, 2)))  # ties in version too


def final_members(records: list[Member]) -> list[Member]:
    """The account's members by the rule alone: per contact, the record with the greatest
    (version, time), the later one on a tie; a contact whose latest record is a leave is not one."""
    latest: dict[str, Member] = {}
    for record in records:
        known = latest.get(record.contact_id)
        if known is None or (record.version, record.at_ms) >= (known.version, known.at_ms):
            latest[record.contact_id] = record
    return [record for record in latest.values() if not record.left]


@settings(max_examples=300, deadline=None)
@given(st.lists(MEMBER_RECORDS, max_size=40))
def test_the_incremental_account_equals_account_snapshot_over_the_final_members_for_any_record_sequence(records):
    state = AccountState("acme.io", RULES)
    for offset, record in enumerate(records):
        receive(state, record, offset)
        assert state.snapshot() == account_snapshot("acme.io", state.members.values(), RULES)
    assert state.snapshot() == account_snapshot("acme.io", final_members(records), RULES)
    assert restored("acme.io", store_of(state)).snapshot() == state.snapshot(), "the stored entries say the same"


def test_an_account_with_a_committee_counts_roles_held_by_engaged_members_only():
    committee_rules = parse_rules(
        DEFAULT_RULES_TEXT
        + """
[fit.seniority]
points = { vp = 1 }
[accounts]
engaged_score = 50
[[accounts.committee]]
name = "champion"
seniority = ["c_level", "vp"]
[[accounts.committee]]
name = "technical"
department = ["it"]
""",
        "r.toml",
    )
    state = AccountState("acme.io", committee_rules)
    steps = [
        member("a", 60, T0, seniority="vp"),
        member("b", 40, T0 + 1, department="it"),  # not engaged: its role is not covered
        member("b", 70, T0 + 2, department="it"),
        member("a", 30, T0 + 3, seniority="vp"),  # no longer engaged
        leaving("b", T0 + 4),
    ]
    covered = []
    for record in steps:
        fold(state, record)
        view = state.snapshot()
        assert view == account_snapshot("acme.io", state.members.values(), committee_rules)
        covered.append(view.committee_covered if view else None)
    assert covered == [("champion",), ("champion",), ("champion", "technical"), ("technical",), ()]


def test_an_account_stored_when_the_prefix_named_account_members_is_read_without_its_position():
    """Its position is an offset of the old topic; the new APP_ID-account-members starts again
    at 0 (streams/migration.py), and none of its records is a replay."""
    old = orjson.dumps([1, "acme.io", True, 2, 9_000, [[1, "ada@acme.io", T0, 0, 40, 0.5, 2, "lead", [], []]]])
    aggregate = aggregate_from_bytes(old)
    assert aggregate.position is None
    state = restore("acme.io", aggregate, [], RULES)
    assert not receive(state, member("bob@acme.io", 30, T0 + 1), 0)[0], "offset 0 of the new topic is not a replay"
    assert set(state.members) == {"ada@acme.io", "bob@acme.io"}


@st.composite
def republished(draw):
    """One contact's records in send order: each at a version above the one before (its
    state applied a record), at any time (a detach takes the latest event of the merged
    view back), some of them leaves; then a replay after a crash: an older span of them
    sent again, at higher offsets."""
    steps = draw(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 8), st.integers(0, 100)), min_size=2))
    records, version = [], 0
    for grows, at, score in steps:
        version += grows
        records.append(member("ada@acme.io", score, T0 + at, version=version, left=score % 5 == 0))
    start = draw(st.integers(0, len(records) - 2))
    return records, records[start : draw(st.integers(start + 1, len(records) - 1))]


@settings(max_examples=300, deadline=None)
@given(republished(), st.booleans())
def test_a_contact_republished_earlier_keeps_its_latest_record_while_a_replayed_older_one_is_refused(sent, crashed):
    records, replayed = sent
    bystander = member("bob@acme.io", 45, T0 + 3)
    state = AccountState("acme.io", RULES)
    receive(state, bystander, 0)
    for offset, record in enumerate(records, start=1):
        receive(state, record, offset)
    if crashed:  # read back from its stored entries, as a worker restarted does
        state = restored("acme.io", store_of(state))
    for offset, record in enumerate(replayed, start=len(records) + 1):
        assert not fold(state, record, offset), "a replayed older record changed the account"
    last = records[-1]
    assert state.members.get("ada@acme.io") == (None if last.left else last)
    assert state.snapshot() == account_snapshot("acme.io", [bystander, last], RULES)


def test_after_an_erasure_leave_time_tells_a_new_profile_from_the_erased_one_also_once_stored():
    """A profile started after the grace counts its version from nothing."""
    state = AccountState("acme.io", RULES)
    receive(state, member("ada@acme.io", 40, T0, version=90), 0)
    receive(state, leaving("ada@acme.io", T0 + 5, 95, erased=True), 1)
    state = restored("acme.io", store_of(state))
    assert not fold(state, member("ada@acme.io", 40, T0 + 4, version=93), 2), "the erased profile came back"
    assert fold(state, member("ada@acme.io", 20, T0 + 9, version=3), 3), "the new profile was refused"
    assert state.snapshot() == account_snapshot("acme.io", [member("ada@acme.io", 20, T0 + 9)], RULES)
