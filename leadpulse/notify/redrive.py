"""`leadpulse notify redrive`: send the delivery-failures topic's alerts again, once their
destinations are fixed.

It reads the records written since the last re-drive (its own consumer group,
`APP_ID-notify-redrive`) up to the topic's end as of its start, and delivers each one to the
destination it names, as configured now, with the same `webhook-id`, within a short retry
window of its own (a re-drive ends; the service's window is hours). Neither the alert's
age nor the cool-down applies: an operator asked for these. One that fails again is
written back to the topic, after the end this run reads to, with its new reason; the
group's offsets are committed once every record read is delivered or written back, so a
re-drive stopped half-way re-sends (same `webhook-id`) rather than loses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from leadpulse.notify.alerts import alert_from
from leadpulse.notify.config import NotifyConfig
from leadpulse.notify.delivery import Deliveries
from leadpulse.notify.failures import Failure, failure_from
from leadpulse.notify.metrics import NotifyMetrics
from leadpulse.notify.service import NotifyOptions, dead_letter_writer, failures_topic, kafka_producer
from leadpulse.notify.throttle import RateLimit
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings
from leadpulse.streams.startup import notify_groups

log = logging.getLogger(__name__)


@dataclass
class Redriven:
    delivered: int = 0
    failed_again: int = 0
    unreadable: int = 0

    @property
    def read(self) -> int:
        return self.delivered + self.failed_again + self.unreadable


async def redrive(settings: Settings, config: NotifyConfig, options: NotifyOptions, retry_window_ms: int) -> Redriven:
    topic = failures_topic(settings)
    consumer = AIOKafkaConsumer(
        **client_options(settings), group_id=notify_groups(settings)[1], enable_auto_commit=False
    )
    producer = kafka_producer(settings)
    result = Redriven()
    await consumer.start()
    await producer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]
        if not partitions:
            return result
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for partition in partitions:
            committed = await consumer.committed(partition)
            if committed is None:
                await consumer.seek_to_beginning(partition)
            else:
                consumer.seek(partition, committed)
        write_back = dead_letter_writer(producer, topic)
        async with aiohttp.ClientSession() as session:
            deliveries = Deliveries(
                config,
                session,
                NotifyMetrics.create(),
                write_back,
                now_ms,
                max_backoff_ms=options.max_backoff_ms,
                rate_limit=RateLimit(config),
                retry_window_ms=retry_window_ms,
            )
            room = asyncio.Semaphore(options.max_pending)

            def settled(failure: Failure | None) -> None:
                if failure is None:
                    result.delivered += 1
                else:
                    result.failed_again += 1
                room.release()

            remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=500)
                for partition, records in batches.items():
                    for record in records:
                        if record.offset >= ends[partition]:
                            break
                        await room.acquire()
                        if not await _resend(record.value, config, deliveries, write_back, settled):
                            result.unreadable += 1
                            room.release()
                remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
            for _ in range(options.max_pending):  # every re-sent alert delivered or written back
                await room.acquire()
        await consumer.commit({tp: ends[tp] for tp in partitions})
    finally:
        await producer.stop()
        await consumer.stop()
    return result


async def _resend(
    value: bytes | None,
    config: NotifyConfig,
    deliveries: Deliveries,
    write_back: Callable[[Failure], Awaitable[None]],
    settled: Callable[[Failure | None], None],
) -> bool:
    """Hand one failure record to its destination; False if it is no such record (left
    where it is: logged, counted, never re-sent)."""
    try:
        failure = failure_from(value or b"")
        alert = alert_from(failure.topic, orjson.dumps(failure.record))
    except ValueError as error:
        log.error("a record of the delivery-failures topic is passed: %s", error)
        return False
    if failure.destination not in config.destinations:
        reason = f"no destination named {failure.destination!r} in the configuration"
        again = replace(failure, reason=reason, failed_ms=now_ms())
        await write_back(again)
        settled(again)
        return True
    deliveries.submit(alert, failure.destination, failure.destination, settled)
    return True
