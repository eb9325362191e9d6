"""The contact states the agent stores are kept decoded for its next batches (streams/tables.py:
ContactTable), always the state the store holds for their key, and bounded."""

import orjson
import pytest

from leadpulse.streams.outbox import Outbox
from leadpulse.streams.partitioning import home_partition
from tests.agents.test_scoring_agent import settled
from tests.factories import raw_event, seen_hashes


@pytest.fixture
def store_reads(scorer, monkeypatch):
    """Keys a scoring batch read from the store (queries, which name no partition, left out)."""
    reads = []
    read = scorer.contacts.read

    def counted(key, partition):
        if partition is not None:
            reads.append(key)
        return read(key, partition)

    monkeypatch.setattr(scorer.contacts, "read", counted)
    return reads


async def score(agent, contact: str, event_id: str, event_type: str = "page_viewed") -> None:
    await agent.put(orjson.dumps(raw_event(event_type, event_id=event_id, contact_id=contact)), key=contact.encode())


def events_of(scorer, contact: str) -> int:
    state = scorer.contacts.get(contact)
    return 0 if state is None else len(seen_hashes(state))


async def test_a_contact_stored_by_a_batch_is_scored_next_from_the_kept_state_without_reading_the_store(
    scorer, store_reads
):
    contact = "cache-kept"
    async with scorer.agent.test_context() as agent:
        await score(agent, contact, "kept-1")
        assert await settled(lambda: events_of(scorer, contact) == 1)
        assert contact.encode() in store_reads  # a new contact: looked for in the store
        store_reads.clear()
        await score(agent, contact, "kept-2", "demo_requested")
        assert await settled(lambda: events_of(scorer, contact) == 2)
    assert contact.encode() not in store_reads


async def test_a_key_written_outside_the_agents_batch_is_not_handed_out_from_the_cache(scorer):
    contact = "cache-deleted"
    key = contact.encode()
    async with scorer.agent.test_context() as agent:
        await score(agent, contact, "deleted-1")
        assert await settled(lambda: events_of(scorer, contact) == 1)
        scorer.contacts.put_records(home_partition(key, scorer.settings.partitions), [(key, None)], Outbox())
        await score(agent, contact, "deleted-2")
        # Scored as a new contact: the deleted state's event is not among its own.
        assert await settled(lambda: events_of(scorer, contact) == 1)


async def test_beyond_its_bound_the_least_recently_stored_contact_is_read_from_the_store_again(
    scorer, store_reads, monkeypatch
):
    monkeypatch.setattr(scorer.contacts, "cached_entries", 1)
    first, second = "cache-first", "cache-second"
    async with scorer.agent.test_context() as agent:
        await score(agent, first, "bound-1")
        assert await settled(lambda: events_of(scorer, first) == 1)
        await score(agent, second, "bound-2")
        assert await settled(lambda: events_of(scorer, second) == 1)
        store_reads.clear()
        await score(agent, first, "bound-3")
        assert await settled(lambda: events_of(scorer, first) == 2)
    assert first.encode() in store_reads
