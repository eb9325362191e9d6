"""Agent tests run Faust's test_context(): no broker. The pipeline is built from explicit
settings (an in-memory table, no cooling timer) and the agent is handed a producer that
captures record batches instead of sending them; the integration tests send real ones."""

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from leadpulse.agents.scoring import ScoringAgent
from leadpulse.schemas.limits import DEFAULT_RECORD_LIMITS, RecordLimits
from leadpulse.streams.pipeline import create_app
from leadpulse.streams.settings import Settings

SETTINGS = Settings(
    store="memory://",
    cooling_interval_s=0.0,
    data_dir=Path(tempfile.mkdtemp(prefix="leadpulse-agent-tests-")),
    batch_within_s=0.01,
)


class BatchCapture:
    """Stands in for aiokafka's batch interface (create_batch / send_batch)."""

    def __init__(self, partitions: int):
        self.partitions = partitions
        self.batches = []  # (topic, partition, [(key, value)])
        self.fail_next: Exception | None = None

    def create_batch(self):
        return CapturedBatch()

    async def partitions_for(self, topic):
        return set(range(self.partitions))

    async def send_batch(self, batch, topic, *, partition):
        delivered = asyncio.get_running_loop().create_future()
        if self.fail_next is not None:
            delivered.set_exception(self.fail_next)
            return delivered
        self.batches.append((topic, partition, batch.records))
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


@pytest.fixture(scope="session")
def capture():
    return BatchCapture(SETTINGS.partitions)


@pytest.fixture(scope="session")
def scorer(capture):
    """One pipeline for the session: Faust apps are not meant to be built per test."""
    pipeline = create_app(SETTINGS)
    for topic in pipeline.topics.outputs:
        topic.maybe_declare = _declared
    return ScoringAgent.attach(pipeline, producer=lambda: capture, record_limits=_producer_limits)


async def _producer_limits(topics) -> RecordLimits:
    return DEFAULT_RECORD_LIMITS  # no broker to read max.message.bytes from: the producer's limit


async def _declared() -> None:
    return None


@pytest.fixture(autouse=True)
def fresh_capture(capture):
    capture.batches.clear()
    capture.fail_next = None
    return capture


@pytest.fixture
def sent(scorer, capture):
    """Records the agent sent, by topic attribute name of the pipeline's topics."""

    def by_topic(name):
        topic = getattr(scorer.topics, name).get_topic_name()
        return [
            (key, orjson.loads(value)) for to, _, records in capture.batches if to == topic for key, value in records
        ]

    return by_topic


@dataclass(frozen=True)
class Step:
    """One delivery the agent made: a record batch sent to a topic, or a table write ("store")."""

    to: str
    keys: tuple[bytes, ...]


@pytest.fixture
def delivery_order(scorer, capture, monkeypatch) -> list[Step]:
    """The agent's sends and table writes, in the order they happened: what must reach the
    broker before the state that produced it is stored (docs/guarantees.md)."""
    order: list[Step] = []
    send_batch, put_encoded = capture.send_batch, scorer.contacts.put_encoded

    async def record_send(batch, topic, *, partition):
        order.append(Step(topic, tuple(key for key, _ in batch.records)))
        return await send_batch(batch, topic, partition=partition)

    def record_store(partition, encoded, outbox, *erasures, **index):
        encoded = list(encoded)
        order.append(Step("store", tuple(key.encode() for key, _ in encoded)))
        put_encoded(partition, encoded, outbox, *erasures, **index)

    monkeypatch.setattr(capture, "send_batch", record_send)
    monkeypatch.setattr(scorer.contacts, "put_encoded", record_store)
    return order
