"""Erasure in the scoring agent: who may erase, and markers that expire (scoring.erasure)."""

import orjson

from leadpulse.scoring.erasure import NOT_HERE, expiry_key, marker_from_bytes, marker_key
from leadpulse.scoring.timeutil import format_ms, now_ms
from tests.agents.test_scoring_agent import settled
from tests.factories import buyer_documents, raw_event

DAY_MS = 86_400_000


async def put_on(agent, topic: str, document: bytes, key: bytes):
    """A record as consumed from `topic` (test_context names no topic of its own)."""
    channel = agent.stream().channel
    message = agent.to_message(key, document)
    message.topic = topic
    message.incref()
    await channel.put(await channel.decode(message))


async def test_an_erasure_from_the_input_topic_is_dead_lettered_and_erases_nothing(scorer, sent):
    contact = "agent-kept@acme.io"
    erase = raw_event("contact_erased", event_id="attack-1", contact_id=contact, occurred_at=format_ms(now_ms()))
    async with scorer.agent.test_context() as agent:
        for document in buyer_documents(contact):
            await agent.put(orjson.dumps(document), key=contact.encode())
        assert await settled(lambda: scorer.contacts.get(contact) is not None)
        await put_on(agent, scorer.events_topic, orjson.dumps(erase), contact.encode())
        assert await settled(lambda: any(k == contact.encode() for k, _ in sent("dead_letters")))
    (letter,) = [record for key, record in sent("dead_letters") if key == contact.encode()]
    assert (letter["field"], letter["reason"]) == ("type", f"type: {NOT_HERE}")
    assert scorer.contacts.get(contact) is not None and scorer.contacts.erasure(contact) is None


async def test_a_marker_whose_deadline_a_later_record_passed_is_deleted_with_its_index_entry(scorer, capture):
    contact = "agent-expired@acme.io"
    long_ago = now_ms() - scorer.rules.erasure_grace_ms - DAY_MS  # the deadline was a day ago
    erase = raw_event("contact_erased", event_id="old-erase", contact_id=contact, occurred_at=format_ms(long_ago))
    async with scorer.agent.test_context() as agent:
        await agent.put(orjson.dumps(erase), key=contact.encode())
        assert await settled(lambda: scorer.contacts.erasure(contact) is not None)
        marker = marker_key(contact)
        index = expiry_key(
            0, marker, marker_from_bytes(scorer.contacts.read(marker, None))
        )  # test_context: partition 0
        bystander = raw_event(event_id="later-1", contact_id="agent-later", occurred_at=format_ms(now_ms()))
        await agent.put(orjson.dumps(bystander), key=b"agent-later")
        assert await settled(lambda: scorer.contacts.erasure(contact) is None)
    changelog = scorer.contacts.table.changelog_topic.get_topic_name()
    written = [(k, v) for to, _, batch in capture.batches if to == changelog for k, v in batch if k in (marker, index)]
    assert written[-2:] == [(marker, None), (index, None)]
