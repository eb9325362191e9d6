"""How the worker hands records to Kafka, on the real broker: whole record batches, and
output topics that must share the input's partition count."""

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from streams.kafka_io import bootstrap, ensure_topic
from streams.outbox import Outbox
from tests.integration.harness import read_all

pytestmark = pytest.mark.integration


def test_an_outbox_bigger_than_a_record_batch_arrives_complete_and_in_order(make_settings):
    settings = make_settings(partitions=2)
    topic = settings.topic("outbox")
    records = [(f"k{i}".encode(), b"x" * 200 + str(i).encode()) for i in range(500)]  # ~6 batches of 16 KiB
    delivered: list[int] = []

    async def send() -> None:
        await ensure_topic(settings, topic)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap(settings), linger_ms=1000)
        await producer.start()
        try:
            outbox = Outbox()
            for key, value in records:
                outbox.add(topic, 1, key, value)
            outbox.on_delivered(topic, 1, delivered.append)
            await outbox.send(producer)
            assert len(outbox) == 0
            started = time.monotonic()
            await producer.flush()
            # closed batches do not wait for the producer's linger (1 s here)
            assert time.monotonic() - started < 0.9
        finally:
            await producer.stop()

    asyncio.run(send())
    assert read_all(settings, topic) == records
    assert delivered == [len(records) - 1]  # offset of the last record in partition 1


def test_an_output_topic_with_another_partition_count_stops_the_worker_with_the_reason(
    make_settings, workers, tmp_path: Path
):
    settings = make_settings(partitions=4)
    asyncio.run(ensure_topic(replace(settings, partitions=2), settings.topic("hot-leads")))
    with pytest.raises(RuntimeError, match="worker exited with 1"):
        workers(settings)
    log = Path(tmp_path / "worker-0.log").read_text(errors="replace")
    assert f"topic {settings.topic('hot-leads')} has 2 partitions, LEADPULSE_PARTITIONS is 4" in log
