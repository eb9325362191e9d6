"""Records bound for Kafka, collected per topic partition, handed to the producer as whole
record batches, and delivered: `deliver` returns only once the broker has acknowledged every
record, so the caller can then store state or let offsets be committed (docs/guarantees.md).

`producer.send()` costs a future, a partitioner call and an accumulator lookup per record;
aiokafka's batch interface (`create_batch` / `send_batch`) appends into a buffer instead
(bench/README.md). A closed batch is sent at once, without the producer's linger.

A delivery that fails with an error Kafka calls retriable (leader moved, broker down, request
timed out) is sent again, with backoff, for as long as it takes: a broker outage delays the
worker but loses nothing. Any other error (no authorization, ...) raises `DeliveryFailed`:
the batch must not be acknowledged.

A record the topic would refuse for its size is never queued: `add` raises RecordTooLarge
(the caller dead-letters the event that made it), and a partition's records are cut into
batches that each fit the topic's limit (schemas/limits.py: RecordLimits), so that no
delivery can fail for its size on every restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError

from leadpulse.schemas.limits import DEFAULT_RECORD_LIMITS, RecordLimits, record_bytes

Delivered = Callable[[int], None]  # called with the offset of a partition's last record
Record = tuple[bytes | None, bytes | None, int | None]  # key, value (None: a tombstone), timestamp (ms; None: now)
log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
REPORT_EVERY_S = 30.0  # while deliveries keep failing, one log line per this many seconds
STALLED_AFTER_S = 10.0  # a delivery unacknowledged this long makes the worker report itself unready


class DeliveryFailed(RuntimeError):
    """The broker refused a record for a reason that retrying cannot fix."""


class BatchProducer(Protocol):
    """What the outbox needs of aiokafka's producer (a test can hand in its own)."""

    def create_batch(self) -> Any: ...

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]: ...


class DeliveryHealth:
    """Whether deliveries are failing right now, and since when: readiness reports it."""

    def __init__(self) -> None:
        self.failing_since: float | None = None
        self.last_error: str | None = None
        self._reported_at = 0.0

    def failed(self, error: BaseException, where: str) -> None:
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
        self.last_error = f"{where}: {error!r}"
        if now - self._reported_at >= REPORT_EVERY_S:
            self._reported_at = now
            log.warning(
                "cannot deliver to %s for %.0f s (%r); retrying until the broker takes it",
                where,
                now - self.failing_since,
                error,
            )

    def ok(self) -> None:
        if self.failing_since is not None:
            log.warning("deliveries resumed after %.1f s", time.monotonic() - self.failing_since)
        self.failing_since = None
        self.last_error = None
        self._reported_at = 0.0


def _retriable(error: BaseException) -> bool:
    """Kafka's own verdict; a batch that expired waiting for a broker (KafkaTimeoutError,
    which aiokafka does not mark retriable) is tried again too."""
    return bool(getattr(error, "retriable", False)) or isinstance(error, KafkaTimeoutError)


def kafka_producer(app: Any) -> AIOKafkaProducer:
    """The aiokafka producer under Faust's (started by the worker before any agent runs)."""
    return app.producer._ensure_producer()


class Outbox:
    def __init__(self, health: DeliveryHealth | None = None, limits: RecordLimits = DEFAULT_RECORD_LIMITS) -> None:
        self._records: defaultdict[tuple[str, int], list[Record]] = defaultdict(list)
        self._on_delivered: dict[tuple[str, int], Delivered] = {}
        self._health = health or DeliveryHealth()
        self.limits = limits

    def add(
        self, topic: str, partition: int, key: bytes | None, value: bytes | None, timestamp_ms: int | None = None
    ) -> None:
        """Queue a record; RecordTooLarge (nothing queued) if the topic would refuse it."""
        self.limits.check(topic, key, value)
        self._records[(topic, partition)].append((key, value, timestamp_ms))

    def add_checked(
        self, topic: str, partition: int, key: bytes | None, value: bytes | None, timestamp_ms: int | None = None
    ) -> None:
        """`add` a record its caller has just checked against `limits` (RecordLimits.check)."""
        self._records[(topic, partition)].append((key, value, timestamp_ms))

    def on_delivered(self, topic: str, partition: int, callback: Delivered) -> None:
        """Call back once the broker has the partition's records of this outbox."""
        self._on_delivered[(topic, partition)] = callback

    def __len__(self) -> int:
        return sum(map(len, self._records.values()))

    async def deliver(self, producer: BatchProducer) -> None:
        """Send everything and wait until the broker has acknowledged all of it; empty the
        outbox. Partitions whose delivery failed with a retriable error are sent again."""
        pending = dict(self._records)
        self._records.clear()
        backoff = FIRST_BACKOFF_S
        while pending:
            submitted = [
                (where, await _submit(producer, where, records, self.limits.of(where[0])))
                for where, records in pending.items()
            ]
            failed: dict[tuple[str, int], list[Record]] = {}
            for where, batches in submitted:
                results = await self._acknowledged([delivery for delivery, _ in batches], where)
                errors = [result for result in results if isinstance(result, BaseException)]
                if not errors:
                    callback = self._on_delivered.get(where)
                    if callback is not None:  # a batch's delivery carries its first record's offset
                        last: Any = results[-1]
                        callback(last.offset + batches[-1][1] - 1)
                    continue
                error = errors[0]
                if not _retriable(error):
                    raise DeliveryFailed(f"{where[0]}[{where[1]}]: {error!r}") from error
                self._health.failed(error, f"{where[0]}[{where[1]}]")
                failed[where] = pending[where]
            if failed:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            elif self._health.failing_since is not None:
                self._health.ok()
            pending = failed
        self._on_delivered.clear()

    async def _acknowledged(self, deliveries: list[asyncio.Future[Any]], where: tuple[str, int]) -> list[Any]:
        """Results or errors of `deliveries`. aiokafka retries some errors (a deleted topic,
        a leader that is gone) inside the producer for as long as it likes: while it does,
        readiness says the deliveries are stalled, and the wait goes on."""
        gathered = asyncio.gather(*deliveries, return_exceptions=True)
        waited = 0.0
        while True:
            # asyncio.wait, not wait_for: Python 3.11's wait_for returns the result of a
            # future done at the moment its task is cancelled, and the worker's stop was lost
            # (the agent went on to wait for a next batch: tests/agents/test_expiry_agent.py).
            done, _ = await asyncio.wait((gathered,), timeout=STALLED_AFTER_S)
            if done:
                return gathered.result()
            waited += STALLED_AFTER_S
            stalled = TimeoutError(f"no acknowledgement from the broker for {waited:.0f} s")
            self._health.failed(stalled, f"{where[0]}[{where[1]}]")


async def _submit(
    producer: BatchProducer, where: tuple[str, int], records: list[Record], limit: int
) -> list[tuple[asyncio.Future[Any], int]]:
    """Closed record batches for one partition, each within `limit` bytes of records (the
    topic's, which may be below the producer's batch size): (delivery, record count) of
    each, in order. An error raised before anything was queued (unknown topic...) comes back
    as a failed delivery, to be retried or reported like the others."""
    topic, partition = where
    batches: list[tuple[asyncio.Future[Any], int]] = []
    batch = producer.create_batch()
    size = 0
    try:
        for key, value, timestamp in records:
            added = record_bytes(key, value)
            size += added
            if size > limit or batch.append(key=key, value=value, timestamp=timestamp) is None:
                batch.close()
                batches.append((await producer.send_batch(batch, topic, partition=partition), batch.record_count()))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=timestamp)  # an empty batch takes any record
                size = added
        batch.close()  # complete: the producer sends it without lingering
        batches.append((await producer.send_batch(batch, topic, partition=partition), batch.record_count()))
    except Exception as error:
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(error)
        batches.append((failed, 0))
    return batches
