"""The scoring agent in Faust's test context: records in, table and sends out."""

import asyncio
from types import SimpleNamespace
from unittest.mock import AsyncMock

import orjson
import pytest

from agents import scoring
from tests.factories import buyer_documents, raw_event


class BatchCapture:
    """Stands in for aiokafka's batch interface (create_batch / send_batch), which needs a
    started producer; the integration tests send real batches to a real broker."""

    def __init__(self):
        self.batches = []  # (topic, partition, [(key, value)])

    def create_batch(self):
        return CapturedBatch()

    async def partitions_for(self, topic):
        return set(range(scoring.settings.partitions))

    async def send_batch(self, batch, topic, *, partition):
        self.batches.append((topic, partition, batch.records))
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(SimpleNamespace(offset=len(self.batches)))
        return delivered


class CapturedBatch:
    def __init__(self):
        self.records = []

    def append(self, *, key, value, timestamp):
        self.records.append((key, value))
        return len(self.records)

    def record_count(self):
        return len(self.records)

    def close(self):
        pass


@pytest.fixture(autouse=True)
def batches(monkeypatch):
    """Faust's test context starts no producer: topic creation, sends and flushes are
    captured instead (the integration tests cover them on a real broker)."""
    for topic in scoring.topics.outputs:
        monkeypatch.setattr(topic, "maybe_declare", AsyncMock())
    monkeypatch.setattr(scoring.app.producer, "send", AsyncMock())
    monkeypatch.setattr(scoring.app.producer, "flush", AsyncMock())
    capture = BatchCapture()
    monkeypatch.setattr(scoring, "kafka_producer", lambda app: capture)
    return capture


@pytest.fixture
def sent(batches):
    """Records the agent sent (one by one or in batches), by topic attribute name."""
    send = scoring.app.producer.send

    def by_topic(name):
        topic = getattr(scoring.topics, name).get_topic_name()
        one_by_one = [(args[1], args[2]) for args, _ in send.call_args_list if args[0] == topic]
        batched = [record for to, _, records in batches.batches if to == topic for record in records]
        return [(key, orjson.loads(value)) for key, value in one_by_one + batched]

    return by_topic


async def settled(condition, timeout_s=5.0):
    """Batches are taken every few milliseconds: wait until the agent has acted."""
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_events_update_the_table_and_publish_snapshot_stage_changes_and_a_hot_lead(sent):
    async with scoring.score.test_context() as agent:
        for document in buyer_documents("agent-c1"):
            await agent.put(orjson.dumps(document), key=b"agent-c1")
        assert await settled(lambda: len([k for k, _ in sent("hot_leads") if k == b"agent-c1"]) == 1)
        state = scoring.contacts.get("agent-c1")
    assert state is not None and state.stage == "opportunity"
    snapshots = [record for key, record in sent("scores") if key == b"agent-c1"]
    assert snapshots[-1]["temperature_label"] == "hot"
    assert [r["to_stage"] for k, r in sent("stage_changes") if k == b"agent-c1"] == ["lead", "opportunity"]
    assert len([r for k, r in sent("hot_leads") if k == b"agent-c1"]) == 1


async def test_a_malformed_record_is_dead_lettered_and_the_agent_keeps_scoring(sent):
    async with scoring.score.test_context() as agent:
        await agent.put(b"{broken", key=b"agent-c2")
        await agent.put(orjson.dumps(raw_event(event_id="ok-1", contact_id="agent-c2")), key=b"agent-c2")
        assert await settled(lambda: scoring.contacts.get("agent-c2") is not None)
    letters = sent("dead_letters")
    assert len(letters) == 1
    assert letters[0][1]["reason"].startswith("not valid JSON")
    assert letters[0][1]["value"] == {"text": "{broken"}
    assert letters[0][1]["origin"]["key"] == {"text": "agent-c2"}


async def test_a_redelivered_event_changes_nothing_and_republishes_the_same_snapshot(sent):
    document = orjson.dumps(raw_event(event_id="dup-1", contact_id="agent-c3"))
    async with scoring.score.test_context() as agent:
        await agent.put(document, key=b"agent-c3")
        assert await settled(lambda: len(sent("scores")) == 1)
        await agent.put(document, key=b"agent-c3")
        await agent.put(orjson.dumps(raw_event(event_id="other", contact_id="agent-c4")), key=b"agent-c4")
        assert await settled(lambda: any(key == b"agent-c4" for key, _ in sent("scores")))
    first, again = [record for key, record in sent("scores") if key == b"agent-c3"]
    assert first == again
    assert len([key for key, _ in sent("stage_changes") if key == b"agent-c3"]) == 1


async def test_alerts_are_flushed_to_the_broker_before_the_state_is_stored(monkeypatch, batches):
    """After a crash a replayed event is a duplicate for a stored state: its alerts must
    already be on the broker."""
    order = []
    send_batch = batches.send_batch

    async def record_topic(batch, topic, *, partition):
        order.append(topic)
        return await send_batch(batch, topic, partition=partition)

    monkeypatch.setattr(batches, "send_batch", record_topic)
    monkeypatch.setattr(scoring.app.producer, "flush", AsyncMock(side_effect=lambda: order.append("flush")))
    monkeypatch.setattr(scoring.contacts, "put_many", lambda partition, states, outbox: order.append("store"))
    async with scoring.score.test_context() as agent:
        for document in buyer_documents("agent-c5"):
            await agent.put(orjson.dumps(document), key=b"agent-c5")
        assert await settled(lambda: scoring.topics.hot_leads.get_topic_name() in order and "store" in order)
    hot = order.index(scoring.topics.hot_leads.get_topic_name())
    assert hot < order.index("flush", hot) < order.index("store", hot)
