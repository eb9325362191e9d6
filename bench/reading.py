"""Reading a topic's partitions from their beginning to their end, as the benchmarks' readers
and the aiokafka-loop peer's restore do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


async def records_to_end(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], max_records: int = 20_000
) -> AsyncIterator[tuple[TopicPartition, list[Any]]]:
    """Each fetched batch of `partitions`, from their beginning up to their end offsets when
    called. Explicit beginning offsets: `seek_to_beginning()` then `position()` was seen to
    leave a partition at its end (docs/faust-notes.md)."""
    consumer.assign(partitions)
    ends = await consumer.end_offsets(partitions)
    for tp, offset in (await consumer.beginning_offsets(partitions)).items():
        consumer.seek(tp, offset)
    while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
        for tp, records in (await consumer.getmany(timeout_ms=500, max_records=max_records)).items():
            yield tp, records
