"""How the worker hands records to Kafka, on the real broker: whole record batches, and
output topics that must share the input's partition count."""

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from leadpulse.cli.kafka_clients import ensure_topic
from leadpulse.streams.outbox import DeliveryFailed, Outbox
from tests.integration.harness import read_all

pytestmark = pytest.mark.integration


def test_an_outbox_bigger_than_a_record_batch_arrives_complete_and_in_order(make_settings):
    settings = make_settings(partitions=2)
    topic = settings.topic("outbox")
    records = [(f"k{i}".encode(), b"x" * 200 + str(i).encode()) for i in range(500)]  # ~6 batches of 16 KiB
    delivered: list[int] = []

    async def send() -> None:
        await ensure_topic(settings, topic)
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=1000)
        await producer.start()
        try:
            outbox = Outbox()
            for key, value in records:
                outbox.add(topic, 1, key, value)
            outbox.on_delivered(topic, 1, delivered.append)
            started = time.monotonic()
            await outbox.deliver(producer)
            # acknowledged on return; closed batches do not wait for the producer's linger (1 s here)
            assert time.monotonic() - started < 0.9
            assert len(outbox) == 0
        finally:
            await producer.stop()

    asyncio.run(send())
    assert read_all(settings, topic) == records
    assert delivered == [len(records) - 1]  # offset of the last record in partition 1


def test_a_record_the_topic_refuses_raises_instead_of_vanishing(make_settings):
    settings = make_settings(partitions=1)
    topic = settings.topic("tiny")

    async def send() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "100"})])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        await producer.start()
        try:
            outbox = Outbox()
            outbox.add(topic, 0, b"k", b"x" * 500)
            with pytest.raises(DeliveryFailed, match="MessageSizeTooLarge"):
                await outbox.deliver(producer)
        finally:
            await producer.stop()

    asyncio.run(send())
    assert read_all(settings, topic, idle_s=0.5) == []


@pytest.mark.parametrize("kind", ["output", "input", "re-keyed input"])
def test_a_topic_with_another_partition_count_stops_the_worker_naming_it(make_settings, workers, tmp_path: Path, kind):
    settings = make_settings(partitions=4)
    name = {
        "output": settings.topic("hot-leads"),
        "input": settings.input_topic,
        "re-keyed input": settings.internal_topic("events-by-contact"),
    }[kind]
    asyncio.run(ensure_topic(replace(settings, partitions=3), name))
    with pytest.raises(RuntimeError, match="worker exited with 1"):
        workers(settings)
    log = Path(tmp_path / "worker-0.log").read_text(errors="replace")
    assert f"topic {name} has 3 partitions, LEADPULSE_PARTITIONS is 4" in log
    assert "Traceback" not in log
