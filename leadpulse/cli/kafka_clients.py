"""Plain aiokafka clients for the CLI (produce, tail, demo, backtest); the worker uses Faust's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from leadpulse.schemas.events import contact_key
from leadpulse.schemas.fields import normalized_id
from leadpulse.scoring.erasure import ERASE_EVENT
from leadpulse.scoring.timeutil import format_ms
from leadpulse.streams.partitioning import home_partition
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings
from leadpulse.streams.startup import TopicSpec, create_missing, topic_specs


async def ensure_topic(settings: Settings, name: str, spec: TopicSpec | None = None) -> None:
    """Create a topic as the worker would (partitions, replicas, configuration; `spec` for
    one the worker does not know) unless it exists, or LEADPULSE_CREATE_TOPICS=off: a
    broker's auto-created topic would have its default partition count and break
    co-partitioning."""
    if settings.create_topics:
        known = [s for s in topic_specs(settings) if s.name == name] or [TopicSpec(name)]
        await create_missing(settings, [spec] if spec is not None else known)


def input_producer(settings: Settings) -> AIOKafkaProducer:
    """A producer for the input topic (not started): acks=all, so that a record counts as
    sent only once every in-sync replica has it; linger 10 ms to fill produce requests."""
    return AIOKafkaProducer(**client_options(settings), linger_ms=10, acks="all")


InvalidLine = Callable[[int, str], None]  # (line number, why) for a line that is no event


async def produce_lines(
    settings: Settings,
    lines: Iterable[bytes],
    *,
    keyed: bool = True,
    progress: Any = None,
    send_invalid: bool = True,
    on_invalid: InvalidLine | None = None,
) -> int:
    """Send JSON lines to the input topic keyed by contact id (the line's own key field),
    or unkeyed. A line that is not a JSON object goes to `on_invalid`, and is sent as it is
    (for the worker to dead-letter) only if `send_invalid`. Returns the records sent."""
    await ensure_topic(settings, settings.input_topic)
    producer = input_producer(settings)
    await producer.start()
    sent = 0
    try:
        pending = []
        for number, line in enumerate(lines, start=1):
            value = line.rstrip(b"\r\n")
            if not value.strip():
                continue
            if progress is not None:
                progress.update(1)
            problem, contact = _check_line(value)
            if problem is not None:
                if on_invalid is not None:
                    on_invalid(number, problem)
                if not send_invalid:
                    continue
            key = contact.encode() if keyed and contact else None
            pending.append(await producer.send(settings.input_topic, value, key=key))
            sent += 1
            if len(pending) >= 5_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def send_erasures(settings: Settings, contact_ids: Iterable[str], at_ms: int) -> int:
    """One `contact_erased` request per id to the erasure-requests topic (the only topic the
    worker takes erasures from: docs/erasure.md), keyed by the normalized id on its home
    partition, acknowledged by every in-sync replica. Returns the requests sent."""
    topic = settings.erasure_topic
    await ensure_topic(settings, topic)
    producer = input_producer(settings)
    await producer.start()
    try:
        pending = []
        for contact_id in dict.fromkeys(normalized_id(raw) for raw in contact_ids):
            request = {
                "event_id": f"erase:{contact_id}:{at_ms}",
                "type": ERASE_EVENT,
                "contact_id": contact_id,
                "occurred_at": format_ms(at_ms),
            }
            key = contact_id.encode()
            partition = home_partition(key, settings.partitions)
            pending.append(await producer.send(topic, orjson.dumps(request), key=key, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(pending)


def _check_line(value: bytes) -> tuple[str | None, str | None]:
    """(what is wrong with the line or None, its contact key or None). Only the shape is
    checked here; the worker validates the fields and dead-letters what it refuses."""
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        return f"not valid JSON ({error})", None
    if not isinstance(document, dict):
        return "not a JSON object", None
    return None, contact_key(document)


async def read_topic(
    settings: Settings, topic: str, *, from_beginning: bool, idle_timeout_s: float | None
) -> AsyncIterator[tuple[bytes | None, bytes | None]]:
    """Yield (key, value) of a topic without joining a consumer group; stop after
    `idle_timeout_s` without records (None: follow forever). A None value is a tombstone (an
    erased contact, an account whose last contact left)."""
    consumer = AIOKafkaConsumer(
        topic,
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    try:
        idle = 0.0
        while idle_timeout_s is None or idle < idle_timeout_s:
            batches = await consumer.getmany(timeout_ms=500, max_records=5_000)
            if not batches:
                idle += 0.5
                continue
            idle = 0.0
            for records in batches.values():
                for record in records:
                    yield record.key, record.value
    finally:
        await consumer.stop()


async def read_to_end(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]] | None:
    """Every record a topic holds now, each partition from its beginning to the end offset
    read at the start (records produced meanwhile are not waited for), without joining a
    consumer group; None: there is no such topic."""
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()  # as notify's redrive reads it
        partitions = [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]
        if not partitions:
            return None
        consumer.assign(partitions)
        # not seek_to_beginning: its position() may answer the end (docs/faust-notes.md, aiokafka)
        for tp, first in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(tp, first)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=5_000)
            for tp, batch in batches.items():
                records.extend(record for record in batch if record.offset < ends[tp])
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return records


async def history_of(settings: Settings, topic: str) -> bytes:
    """Every record a topic holds now (read_to_end), as JSON lines ordered by record
    timestamp (a partition's own order kept): what `leadpulse backtest --from-topic` scores.
    A line break inside a value becomes a space, which JSON allows between its tokens and
    never inside a string, so each record stays one line, valid or not as it was sent."""
    records = await read_to_end(settings, topic)
    if records is None:
        raise LookupError(f"no topic {topic} on {settings.broker}")
    kept = sorted(
        (
            (record.timestamp, record.partition, record.offset, record.value)
            for record in records
            if record.value is not None
        ),
        key=lambda record: record[:3],
    )
    return b"".join(value.replace(b"\r", b" ").replace(b"\n", b" ") + b"\n" for *_, value in kept)


def latest_by_key(records: Iterable[tuple[bytes | None, bytes | None]]) -> dict[str, Any]:
    """What a compacted topic converges to: the last JSON value per key; a tombstone (None)
    removes the key."""
    latest: dict[str, Any] = {}
    for key, value in records:
        if key is None:
            continue
        if value is None:
            latest.pop(key.decode(), None)
        else:
            latest[key.decode()] = orjson.loads(value)
    return latest
