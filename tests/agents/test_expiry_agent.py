"""Ageing out in the scoring agent (scoring/expiry.py): anonymous contacts nobody identified
are deleted from the table, its changelog and contact-scores once the partition's record
clock passes their due time; identified ones stay."""

from dataclasses import replace

import orjson

from leadpulse.scoring.expiry import aging_key, rounded_due
from leadpulse.scoring.timeutil import format_ms, now_ms
from tests.agents.test_scoring_agent import settled
from tests.factories import raw_event, seen_hashes

DAY_MS = 86_400_000


def visit(contact: str, at_ms: int, number: int = 1, *, anonymous: bool = True) -> bytes:
    who = {"contact_id": None, "anonymous_id": contact} if anonymous else {"contact_id": contact}
    return orjson.dumps(
        {
            k: v
            for k, v in raw_event(event_id=f"{contact}-{number}", occurred_at=format_ms(at_ms), **who).items()
            if v is not None
        }
    )


def expired_count(scorer) -> float:
    return scorer.metrics.expired.labels("contact")._value.get()


def written(capture, topic: str, key: bytes) -> list[bytes | None]:
    return [value for to, _, batch in capture.batches if to == topic for k, value in batch if k == key]


async def test_an_anonymous_contact_is_deleted_once_the_record_clock_passes_its_due_time(scorer, capture, monkeypatch):
    after = 2_048  # a clock of seconds: the index's step is 2 ms
    monkeypatch.setattr(scorer, "rules", replace(scorer.rules, anonymous_after_ms=after))
    cookie, person = "agent-cookie-due", "agent-person-old@acme.io"
    last_event = now_ms() - after + 500  # due in half a second
    changelog = scorer.contacts.table.changelog_topic.get_topic_name()
    scores = scorer.topics.scores.get_topic_name()
    before = expired_count(scorer)
    async with scorer.agent.test_context() as agent:
        await agent.put(visit(cookie, last_event), key=cookie.encode())
        await agent.put(visit(person, now_ms() - 2 * after, anonymous=False), key=person.encode())
        assert await settled(lambda: scorer.contacts.get(cookie) is not None)
        entry = aging_key(0, rounded_due(last_event + after, scorer.rules), cookie)  # test_context: partition 0
        assert written(capture, changelog, entry) == [b""], "the contact entered the expiry index"
        for number in range(100):  # records of the partition, until its clock passes the due time
            await agent.put(visit("agent-bystander", now_ms(), number, anonymous=False), key=b"agent-bystander")
            if await settled(lambda: scorer.contacts.get(cookie) is None, timeout_s=0.1):
                break
    assert scorer.contacts.get(cookie) is None
    assert written(capture, changelog, cookie.encode())[-1] is None, "a tombstone in the changelog"
    assert written(capture, changelog, entry) == [b"", None]
    assert written(capture, scores, cookie.encode())[-1] is None, "a tombstone in contact-scores"
    assert scorer.contacts.read(entry, None) is None
    assert expired_count(scorer) == before + 1
    assert scorer.contacts.get(person) is not None, "an identified contact never expires"


async def test_an_event_for_a_contact_already_due_starts_a_new_one(scorer, capture):
    after = scorer.rules.anonymous_after_ms
    cookie = "agent-cookie-back"
    scores = scorer.topics.scores.get_topic_name()
    before = expired_count(scorer)
    async with scorer.agent.test_context() as agent:
        await agent.put(visit(cookie, now_ms() - after - DAY_MS, 1), key=cookie.encode())
        assert await settled(lambda: expired_count(scorer) == before + 1), "due on arrival: never stored"
        assert scorer.contacts.get(cookie) is None
        assert written(capture, scores, cookie.encode()) == [None]
        back = now_ms()
        await agent.put(visit(cookie, back, 2), key=cookie.encode())
        assert await settled(lambda: scorer.contacts.get(cookie) is not None)
    state = scorer.contacts.get(cookie)
    assert state.last_event_ms == back and len(seen_hashes(state)) == 1, "only the new event counts"
