"""The account table on Faust's memory store (the store TEST_STORE=memory:// runs the suite
with): an account under its many keys, the cached index and when it is read again."""

from leadpulse.scoring.accounts import Member, aggregate_key, entries_prefix, receive
from leadpulse.streams.outbox import Outbox
from leadpulse.streams.tables import AccountTable
from tests.factories import T0


def member(contact: str, score: int, at: int) -> Member:
    return Member(contact, at, False, score, 10.0, 2, "lead", (("seniority", "vp"),), ())


def test_an_account_is_kept_under_a_key_per_member_and_its_index_is_cached_until_someone_else_writes_it(scorer):
    pipeline = scorer.pipeline
    accounts, rules, outbox = pipeline.accounts, pipeline.rules, Outbox()
    state = accounts.load("table-test.io", 0, rules)
    for offset in range(3):
        receive(state, member(f"c{offset}@table-test.io", 40 + offset, T0 + offset), offset)
    accounts.store(0, [(state, b'{"account_id":"table-test.io"}')], outbox)

    keys = {key for (_, _), records in outbox._records.items() for key, _, _ in records}
    assert keys == {aggregate_key("table-test.io")} | {
        entries_prefix("table-test.io") + b"m" + f"c{i}@table-test.io".encode() for i in range(3)
    }
    assert accounts.load("table-test.io", 0, rules) is state, "unchanged in the store: the cached index"
    assert accounts.aggregate("table-test.io").published == {"account_id": "table-test.io"}

    elsewhere = AccountTable(accounts.table)  # another worker's, between a rebalance and the one back
    other = elsewhere.load("table-test.io", 0, rules)
    assert other is not state and other.snapshot() == state.snapshot(), "read from the account's keys"
    receive(other, member("c9@table-test.io", 90, T0 + 9), 7)
    elsewhere.store(0, [(other, b"{}")], Outbox())
    again = accounts.load("table-test.io", 0, rules)
    assert again is not state and again.position == 7 and "c9@table-test.io" in again.members


def test_the_accounts_used_least_recently_leave_the_cache_beyond_its_bound(scorer):
    pipeline = scorer.pipeline
    accounts = AccountTable(pipeline.accounts.table, cached_entries=4)
    states = []
    for index in range(3):
        state = accounts.load(f"bound{index}.io", 1, pipeline.rules)
        receive(state, member(f"a@bound{index}.io", 50, T0), 0)
        receive(state, member(f"b@bound{index}.io", 50, T0), 1)
        accounts.store(1, [(state, b"{}")], Outbox())
        states.append(state)
    assert accounts.load("bound2.io", 1, pipeline.rules) is states[2]
    again = accounts.load("bound0.io", 1, pipeline.rules)
    assert again is not states[0], "dropped from the cache (2 + 2 + 2 entries over a bound of 4)"
    assert again.snapshot() == states[0].snapshot(), "and read again from the store"
