"""The agents' inputs handed over a partition's fetched records at a time.

Faust hands every fetched record to a stream on its own: a Message, the conductor's flow
control and channel lookup, an Event and a channel put, then the stream's per-event
tracking, sensors, processors and acknowledgement. For the agents' inputs that was more CPU
per event than the scoring core (bench/README.md). Here the consumer (streams/transport.py)
hands over a partition's fetched records, up to the agent's batch size, as one Event whose
message, a `ChunkMessage`, stands for all of them: Faust tracks it, drops it (an older
generation, a stopped flow) and acknowledges it as any message, and an acknowledgement
counts for every offset from the chunk's first record to its last.

`take_batches` replaces `stream.take_events()`: it counts records, not events, and
acknowledges nothing itself. The caller acknowledges a batch's events once the batch is
delivered, so a batch that fails stays uncommitted (docs/guarantees.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka.structs import ConsumerRecord
from faust.types import TP, AppT, EventT
from faust.types.tuples import ConsumerMessage

Record: TypeAlias = ConsumerRecord[Any, Any]  # as aiokafka fetched it: timestamp in milliseconds


class ChunkMessage(ConsumerMessage):
    """A chunk of one partition's records: `offset` is its last record's, `first` its first's,
    `size` how many there are."""

    __slots__ = ("first", "size")

    def __init__(self, tp: TP, records: Sequence[Record], generation_id: int) -> None:
        last = records[-1]
        super().__init__(
            tp.topic, tp.partition, last.offset, last.timestamp / 1000, last.timestamp_type,
            None, None, None, None, 0, 0, tp, generation_id=generation_id,
        )  # fmt: skip
        self.first: int = records[0].offset
        self.size: int = len(records)


def chunked(records: list[Record], most: int, most_bytes: int) -> Iterator[list[Record]]:
    """`records` in order, cut into chunks of at most `most` records and `most_bytes` bytes of
    keys and values (a record larger than that alone), so that the chunks an agent's buffer
    holds are bounded in bytes as well as in records, whatever the records' sizes."""
    chunk: list[Record] = []
    size = 0
    for record in records:
        added = (record.serialized_key_size or 0) + (record.serialized_value_size or 0)
        if chunk and (len(chunk) == most or size + added > most_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(record)
        size += added
    if chunk:
        yield chunk


def chunk_event(app: AppT, tp: TP, records: list[Record]) -> EventT[Any]:
    """The records of `tp` as one stream event; its value is the records."""
    return app.create_event(None, records, None, ChunkMessage(tp, records, app.consumer_generation_id))


def records_of(event: EventT[Any]) -> Sequence[Record]:
    """The records an event carries: a chunk's, or the one message of Faust's own path (an
    agent's test_context, or a topic more than one channel reads)."""
    message = event.message
    if isinstance(message, ChunkMessage):
        records: Sequence[Record] = event.value
        return records
    timestamp = None if message.timestamp is None else round(message.timestamp * 1000)
    return [
        ConsumerRecord(
            message.topic, message.partition, message.offset, timestamp, message.timestamp_type,
            message.key, message.value, message.checksum, message.serialized_key_size,
            message.serialized_value_size, message.headers,
        )
    ]  # fmt: skip


def size_of(event: EventT[Any]) -> int:
    message = event.message
    return message.size if isinstance(message, ChunkMessage) else 1


@dataclass
class Part:
    """What a batch holds of one partition; `anchor` is one of its events, for Faust's
    partition context (tables.partition_of)."""

    partition: int
    anchor: EventT[Any]
    records: list[Record]


def by_partition(batch: Sequence[EventT[Any]]) -> list[Part]:
    parts: dict[int, Part] = {}
    for event in batch:
        partition = event.message.partition
        part = parts.get(partition)
        if part is None:
            part = parts[partition] = Part(partition, event, [])
        part.records.extend(records_of(event))
        part.anchor = event
    return list(parts.values())


async def take_batches(stream: Any, max_records: int, within: float) -> AsyncIterator[list[EventT[Any]]]:
    """The stream's events, up to `max_records` records a batch (a chunk is never split: the
    consumer makes none larger), or what arrived within `within` seconds of the batch's first
    event. Nothing is added while a batch is out; the stream is read in the background, as
    `take_events` does.

    The window counts from the moment the stream handed over the batch's first event, not
    from the end of the previous batch: an event that waited while a batch was out does not
    wait a whole window more once it is taken (bench/README.md, the latency section). An
    idle stream wakes nothing until an event comes."""
    events: list[EventT[Any]] = []
    count = 0
    out = False  # a batch is with the caller
    first_at = 0.0  # when the stream handed over the first event of `events`
    full, taken, arrived = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def add(value: Any) -> Any:
        nonlocal count, first_at
        handed = time.monotonic()
        event = stream.current_event
        size = size_of(event)
        while out or (events and count + size > max_records):
            full.set()
            taken.clear()
            await taken.wait()
        if not events:
            first_at = handed
            arrived.set()
        events.append(event)
        count += size
        if count >= max_records:
            full.set()
        return value

    acking = stream.enable_acks
    stream.enable_acks = False  # the caller acknowledges, once a batch is delivered
    stream.add_processor(add)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            if not events:
                await stream.wait_for_stopped(arrived)
                continue
            if not within:  # 0: no deadline, as take_events
                await stream.wait_for_stopped(full)
            elif (left := first_at + within - time.monotonic()) > 0:
                await stream.wait_for_stopped(full, timeout=left)
            if events:
                batch = events[:]
                events.clear()
                count, out = 0, True
                arrived.clear()
                try:
                    yield batch
                finally:
                    out = False
                    full.clear()
                    taken.set()
    finally:
        stream.enable_acks = acking
        stream._processors.remove(add)
