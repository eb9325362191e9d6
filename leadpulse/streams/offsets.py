"""Where partitions begin and end, read without joining a consumer group: what an
administrative command (a topic migration, a shadow app's progress) measures backlogs by."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings

Offsets = dict[TopicPartition, int]


async def first_and_end_offsets(settings: Settings, partitions: list[TopicPartition]) -> tuple[Offsets, Offsets]:
    """Each partition's first offset still held (retention moves it) and its end offset."""
    consumer = AIOKafkaConsumer(**client_options(settings))
    await consumer.start()
    try:
        return await consumer.beginning_offsets(partitions), await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
