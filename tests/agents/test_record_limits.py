"""No record the worker writes is larger than its topic takes (docs/guarantees.md#bounds):
the event that would make one is dead-lettered with its cause, and the worker goes on."""

import hashlib
import itertools

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadpulse.schemas.limits import RecordLimits, record_bytes
from leadpulse.scoring.engine import event_hash
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.chunks import chunk_event
from leadpulse.streams.partitioning import home_partition
from tests.agents.test_scoring_agent import settled
from tests.factories import buyer_documents, padded, raw_event, seen_hashes


@pytest.fixture
def small_changelog(scorer, monkeypatch):
    """The contacts' changelog takes records of 5,000 bytes: a state with two padded profile
    values fits, one with three does not."""
    changelog = scorer.contacts.table.changelog_topic.get_topic_name()
    limits = RecordLimits(topics={changelog: 5_000})

    async def read(topics):
        return limits

    monkeypatch.setattr(scorer, "read_limits", read)
    return changelog, limits


def written(capture):
    return [(topic, key, value) for topic, _, records in capture.batches for key, value in records]


async def test_an_event_that_would_make_the_state_too_large_is_dead_lettered_and_the_contact_keeps_its_state(
    scorer, capture, sent, small_changelog
):
    changelog, limits = small_changelog
    contact = "agent-padded"
    documents = [
        padded(contact, 1, "job_title"),
        padded(contact, 2, "department"),
        padded(contact, 3, "industry"),  # the third padded value: over the limit
        orjson.dumps(raw_event("demo_requested", event_id=f"{contact}-after", contact_id=contact)),
        orjson.dumps(raw_event(event_id="agent-limits-bystander-1", contact_id="agent-limits-bystander")),
    ]
    async with scorer.agent.test_context() as agent:
        for document in documents:
            await agent.put(
                document, key=contact.encode() if b"bystander" not in document else b"agent-limits-bystander"
            )
        assert await settled(lambda: scorer.contacts.get("agent-limits-bystander") is not None)
        assert await settled(lambda: "demo request" in getattr(scorer.contacts.get(contact), "signals", {}))
    state = scorer.contacts.get(contact)
    assert set(state.profile) == {"job_title", "department"}, "the event over the limit was applied"
    (letter,) = [record for key, record in sent("dead_letters") if key == contact.encode()]
    assert letter["sha256"] == hashlib.sha256(documents[2]).hexdigest()
    assert letter["reason"].startswith(f"{changelog}: a record of ")
    assert "bytes, over the 5000 bytes the topic takes (its max.message.bytes" in letter["reason"]
    assert int(letter["reason"].split("a record of ")[1].split()[0]) > 5_000
    metric = scorer.metrics.registry.get_sample_value("leadpulse_records_too_large_total", {"topic": changelog})
    assert metric >= 1
    assert all(record_bytes(key, value) <= limits.of(topic) for topic, key, value in written(capture))


async def test_a_batch_folded_again_counts_its_dead_letters_and_event_ages_once(scorer, small_changelog):
    """The third padded value makes the batch fold again (scoring.run): the metrics the fold
    decides are counted for the fold that is delivered, not for both."""
    contact = "agent-refolded"
    key = contact.encode()
    tp = TP(scorer.settings.input_topic, home_partition(key, scorer.settings.partitions))
    documents = [
        padded(contact, 1, "job_title"),
        b"{not json",
        padded(contact, 2, "department"),
        padded(contact, 3, "industry"),  # over the limit: dead-lettered in the fold again
        orjson.dumps(raw_event("demo_requested", event_id=f"{contact}-after", contact_id=contact)),
    ]
    records = [
        ConsumerRecord(tp.topic, tp.partition, offset, now_ms(), 0, key, value, None, len(key), len(value), [])
        for offset, value in enumerate(documents)
    ]
    dead_letters = _total(scorer, "leadpulse_dead_letters_total")
    ages = _total(scorer, "leadpulse_event_age_seconds_count")
    async with scorer.agent.test_context() as agent:
        chunk = chunk_event(scorer.app, tp, records)  # one batch
        chunk.message.incref()
        await agent.stream().channel.put(chunk)
        assert await settled(lambda: chunk.message.acked)
    assert _total(scorer, "leadpulse_dead_letters_total") - dead_letters == 2, "the malformed record and the third pad"
    assert _total(scorer, "leadpulse_event_age_seconds_count") - ages == 3, "one age per event applied"


def _total(scorer, sample: str) -> float:
    """A metric's samples of that name, summed over their labels."""
    return sum(s.value for metric in scorer.metrics.registry.collect() for s in metric.samples if s.name == sample)


async def test_a_hot_lead_too_large_for_its_topic_dead_letters_its_event_with_none_of_its_outputs(
    scorer, capture, sent, monkeypatch
):
    hot_leads = scorer.topics.hot_leads.get_topic_name()
    limits = RecordLimits(topics={hot_leads: 600})  # smaller than any hot lead with its snapshot

    async def read(topics):
        return limits

    monkeypatch.setattr(scorer, "read_limits", read)
    contact = "agent-hot-too-large"
    async with scorer.agent.test_context() as agent:
        for document in buyer_documents(contact):
            await agent.put(orjson.dumps(document), key=contact.encode())
        assert await settled(lambda: any(key == contact.encode() for key, _ in sent("dead_letters")))
        assert await settled(lambda: scorer.contacts.get(contact) is not None)
    (letter,) = [record for key, record in sent("dead_letters") if key == contact.encode()]
    assert letter["reason"].startswith(f"{hot_leads}: a record of ")
    assert not [key for key, _ in sent("hot_leads") if key == contact.encode()]
    # the event that made the contact hot is refused whole: no stage change of it either
    stages = [record for key, record in sent("stage_changes") if key == contact.encode()]
    refused = orjson.loads(letter["value"]["text"])["event_id"]
    assert refused not in {record["cause_event_id"] for record in stages}
    assert all(record_bytes(key, value) <= limits.of(topic) for topic, key, value in written(capture))


CONTACTS = itertools.count()
PADS = st.sampled_from(["x", "\x01", "\n", "é", "€", "😀", '"'])
ATTRIBUTES = st.sampled_from(["job_title", "department", "industry", "country", "channel", "company_size"])
VALUES = st.builds(lambda pad, n: (pad * n)[: 2_000 // len(orjson.dumps(pad)[1:-1]) or 1], PADS, st.integers(0, 2_000))


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    values=st.lists(st.tuples(ATTRIBUTES, VALUES), min_size=1, max_size=12),
    changelog_limit=st.integers(1_500, 12_000),
    scores_limit=st.integers(400, 4_000),
)
async def test_whatever_the_sizes_of_the_values_every_record_fits_its_topic_or_its_event_is_dead_lettered(
    scorer, capture, values, changelog_limit, scores_limit
):
    """Padded profile values of any size the input limits let through, in any number, against
    any record limits: every record written fits its topic, and every event is either applied
    (its id among the contact's de-duplication ids) or dead-lettered, never lost, never a crash."""
    capture.batches.clear()
    contact = f"agent-sized-{next(CONTACTS)}"
    limits = RecordLimits(
        topics={
            scorer.contacts.table.changelog_topic.get_topic_name(): changelog_limit,
            scorer.topics.scores.get_topic_name(): scores_limit,
            scorer.topics.hot_leads.get_topic_name(): scores_limit,
        }
    )

    async def read(topics):
        return limits

    original, scorer.read_limits = scorer.read_limits, read
    documents = [
        orjson.dumps(
            raw_event(
                "profile_updated",
                event_id=f"{contact}-{number}",
                contact_id=contact,
                occurred_at=f"2026-10-01T09:{number:02}:00Z",
                properties={attribute: value},
            )
        )
        for number, (attribute, value) in enumerate(values)
    ]
    letters = {hashlib.sha256(document).hexdigest(): document for document in documents}

    def settled_events():
        state = scorer.contacts.get(contact)
        applied = {event_hash(f"{contact}-{number}") for number in range(len(documents))} & set(
            seen_hashes(state) if state else ()
        )
        refused = {
            record["sha256"] for key, record in sent_to(capture, scorer.topics.dead_letters) if key == contact.encode()
        }
        return len(applied) + len(refused & set(letters)) == len(documents)

    try:
        async with scorer.agent.test_context() as agent:
            for document in documents:
                await agent.put(document, key=contact.encode())
            assert await settled(settled_events)
    finally:
        scorer.read_limits = original
    assert all(record_bytes(key, value) <= limits.of(topic) for topic, key, value in written(capture))


def sent_to(capture, topic):
    name = topic.get_topic_name()
    return [(key, orjson.loads(value)) for to, _, records in capture.batches if to == name for key, value in records]
