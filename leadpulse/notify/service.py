"""The notify service's I/O shell: the consumer of the output topics, the producer of the
delivery-failures topic, the HTTP client of the destinations and the /health and /metrics
server, put together around the pure decisions (routing, throttles, outcome, watermark).

Reading: one consumer group (`APP_ID-notify`), offsets committed by hand every
COMMIT_INTERVAL_S, on revocation and on shutdown, each at its partition's watermark
(watermark.py). Fetching pauses while `max_pending` alerts are unsettled and resumes below
it; the consumer keeps polling meanwhile, so it stays in its group however long a
destination is down."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from leadpulse.notify.alerts import Alert, alert_from
from leadpulse.notify.config import NotifyConfig
from leadpulse.notify.delivery import Deliveries
from leadpulse.notify.failures import Failure, failure_bytes
from leadpulse.notify.metrics import NotifyMetrics
from leadpulse.notify.routing import destinations_for
from leadpulse.notify.throttle import Cooldown, RateLimit, too_old
from leadpulse.notify.watermark import Watermarks
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.quiet import BROKERS, install_reconnect_backoff
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings
from leadpulse.streams.startup import notify_groups
from leadpulse.streams.topics import DELIVERY_FAILURES

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 1.0
FETCH_RECORDS = 500  # records per poll, at most (and never more than the room under the cap)
POLL_MS = 200
DEAD_LETTER_BACKOFF_S = (0.5, 10.0)  # waits between tries to write a failure record while the broker is away


@dataclass(frozen=True)
class NotifyOptions:
    """The engine's settings (LEADPULSE_NOTIFY_*; defaults and validation in streams/settings.py)."""

    host: str
    port: int
    max_pending: int
    max_backoff_ms: int

    @classmethod
    def of(cls, settings: Settings) -> NotifyOptions:
        return cls(
            settings.notify_host,
            settings.notify_port,
            settings.notify_max_pending,
            int(settings.notify_max_backoff_s * 1_000),
        )


def group_id(settings: Settings) -> str:
    return notify_groups(settings)[0]


def failures_topic(settings: Settings) -> str:
    return settings.internal_topic(DELIVERY_FAILURES)


def kafka_producer(settings: Settings) -> AIOKafkaProducer:
    """acks=all: a failure record counts as written once every in-sync replica has it."""
    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=5)
    install_reconnect_backoff(producer.client)
    return producer


def dead_letter_writer(producer: AIOKafkaProducer, topic: str) -> Callable[[Failure], Any]:
    """Write a failure record, trying again while the broker does not take it: the alert
    stays unsettled (its offset uncommitted) until it does."""

    async def write(failure: Failure) -> None:
        wait = DEAD_LETTER_BACKOFF_S[0]
        while True:
            try:
                await producer.send_and_wait(topic, failure_bytes(failure), key=failure.key.encode())
                return
            except KafkaError as error:
                log.warning("cannot write a failure record to %s yet (%s); trying again in %.1f s", topic, error, wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, DEAD_LETTER_BACKOFF_S[1])

    return write


class Notifier:
    """Reads alerts, hands them to Deliveries, commits watermarks."""

    def __init__(self, settings: Settings, config: NotifyConfig, options: NotifyOptions) -> None:
        self.settings = settings
        self.config = config
        self.options = options
        self.metrics = NotifyMetrics.create()
        self.roles = {settings.topic(role): role for role in config.topics}
        self.watermarks: Watermarks[TopicPartition] = Watermarks()
        self.cooldown = Cooldown(config)
        self.consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=group_id(settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a new group reads the history: max_alert_age keeps it quiet
        )
        install_reconnect_backoff(self.consumer._client)
        self.producer = kafka_producer(settings)
        self.deliveries: Deliveries | None = None
        self.stopping = asyncio.Event()
        self.metrics.pending_alerts.set_function(lambda: len(self.watermarks))

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await self.producer.start()
            try:
                self.deliveries = Deliveries(
                    self.config,
                    session,
                    self.metrics,
                    dead_letter_writer(self.producer, failures_topic(self.settings)),
                    now_ms,
                    max_backoff_ms=self.options.max_backoff_ms,
                    rate_limit=RateLimit(self.config),
                )
                self.consumer.subscribe(list(self.roles), listener=_Rebalance(self))
                await self.consumer.start()
                try:
                    await self._consume(self.deliveries)
                finally:
                    await self.deliveries.cancel()
                    await self._commit()
                    await self.consumer.stop()
            finally:
                await self.producer.stop()

    async def _consume(self, deliveries: Deliveries) -> None:
        loop = asyncio.get_running_loop()
        next_commit = loop.time() + COMMIT_INTERVAL_S
        paused = False
        while not self.stopping.is_set():
            room = self.options.max_pending - len(self.watermarks)
            if room <= 0:  # at every poll: a partition assigned meanwhile is paused too
                self.consumer.pause(*self.consumer.assignment())
                if not paused:
                    log.warning("%d alerts pending: fetching paused until deliveries catch up", len(self.watermarks))
            elif paused:
                self.consumer.resume(*self.consumer.assignment())
            paused = room <= 0
            self.metrics.paused.set(int(paused))
            batches = await self.consumer.getmany(timeout_ms=POLL_MS, max_records=max(1, min(FETCH_RECORDS, room)))
            for partition, records in batches.items():
                for record in records:
                    self._take(deliveries, partition, record.offset, record.value)
            if loop.time() >= next_commit:
                await self._commit()
                next_commit = loop.time() + COMMIT_INTERVAL_S

    def _take(self, deliveries: Deliveries, partition: TopicPartition, offset: int, value: bytes | None) -> None:
        """Route one record; it is settled at once unless a destination is to deliver it."""
        self.watermarks.read(partition, offset)

        def settle() -> None:
            self.watermarks.settle(partition, offset)

        try:
            if value is None:
                raise ValueError("a tombstone")
            alert = alert_from(self.roles[partition.topic], value)
        except ValueError as error:
            self.metrics.alerts.labels("unreadable").inc()
            log.error("%s:%d@%d is not an alert, passed: %s", partition.topic, partition.partition, offset, error)
            settle()
            return
        names = destinations_for(self.config, alert)
        self.metrics.alerts.labels("routed" if names else "unrouted").inc()
        sending = self._throttled(alert, names)
        if not sending:
            settle()
            return
        remaining = [len(sending)]

        def settled(_failure: Failure | None) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                settle()

        for name in sending:
            deliveries.submit(alert, name, partition, settled)

    def _throttled(self, alert: Alert, names: Iterable[str]) -> list[str]:
        """The destinations that are to receive `alert` now: none when it is too old (a replay
        of history does not page anyone), and not those where its key is cooling down."""
        now = now_ms()
        if too_old(alert, now, self.config.max_alert_age_ms):
            for name in names:
                self.metrics.skipped.labels(name, "too_old").inc()
            return []
        sending = []
        for name in names:
            if self.cooldown.allows(name, alert.key, alert.occurred_ms):
                self.cooldown.note(name, alert.key, alert.occurred_ms)
                sending.append(name)
            else:
                self.metrics.skipped.labels(name, "cooldown").inc()
        return sending

    async def _commit(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        offsets = self.watermarks.committable()
        if partitions is not None:
            wanted = set(partitions)
            offsets = {tp: offset for tp, offset in offsets.items() if tp in wanted}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as error:  # a rebalance under way: the next owner re-reads
            log.warning("commit of %d partitions failed: %s", len(offsets), error)

    async def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """Before another consumer takes these partitions: stop their deliveries, commit how
        far they got, and forget them (what was in flight is re-read by the next owner)."""
        partitions = list(partitions)
        if self.deliveries is not None:
            for partition in partitions:
                await self.deliveries.cancel(partition)
        await self._commit(partitions)
        for partition in partitions:
            self.watermarks.drop(partition)

    def health(self) -> tuple[int, dict[str, Any]]:
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in self.consumer.assignment())
        problem = BROKERS.problem() or (None if assigned else "no partition assigned yet")
        destinations = self.deliveries.states() if self.deliveries is not None else {}
        return (200 if problem is None else 503), {
            "status": "ok" if problem is None else "unavailable",
            "reason": problem,
            "pid": os.getpid(),
            "assigned_partitions": assigned,
            "pending_alerts": len(self.watermarks),
            "paused": len(self.watermarks) >= self.options.max_pending,
            "destinations": destinations,
        }


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.notifier.revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None


def web_app(notifier: Notifier) -> web.Application:
    async def health(_request: web.Request) -> web.Response:
        status, body = notifier.health()
        return web.json_response(body, status=status)

    async def metrics(_request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(notifier.metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app
