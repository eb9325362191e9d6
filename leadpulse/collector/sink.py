"""Accepted messages to the input topic, through a producer the command line starts (with
acks=all), so that Kafka client settings stay in one place for every command.

The sink also knows whether it can deliver: a probe asks the broker for the cluster's
metadata every second, and every delivery's outcome counts too. While the broker is
unreachable (or did not acknowledge in time) `problem()` says why: `/health` answers 503
and requests are answered 503 + Retry-After at once, rather than each waiting for the
producer's own 40 s timeout while SDKs give up after 10-15 s and send again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import KafkaError

from leadpulse.collector.service import Record

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 1.0
"""How often the broker is asked for metadata: how soon /health and the answers follow it."""


class Undelivered(Exception):
    """Kafka did not acknowledge every record in time (some may still arrive: a retry with
    the same messageIds is then a duplicate the worker drops)."""


class KafkaSink:
    def __init__(self, producer: Any, topic: str, *, probe_timeout_s: float = 5.0) -> None:
        self.producer = producer
        self.topic = topic
        self.probe_timeout_s = probe_timeout_s
        self._problem: str | None = None

    def problem(self) -> str | None:
        return self._problem

    async def send(self, records: Sequence[Record], timeout_s: float) -> None:
        """All records are handed to the producer before any acknowledgement is awaited, so a
        batch of 500 messages costs one round of produce requests, not 500. Past `timeout_s`
        the records still with the producer are left to it (never cancelled half-way)."""
        futures: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(timeout_s):
                for key, value in records:
                    future = await self.producer.send(self.topic, value, key=key)
                    future.add_done_callback(_retrieve)
                    futures.append(future)
                await asyncio.wait(futures)
        except TimeoutError:
            self._unavailable(f"the broker did not acknowledge within {timeout_s:g} s")
            raise Undelivered(f"not acknowledged within {timeout_s:g} s") from None
        except KafkaError as error:
            self._unavailable(f"the broker refused records: {error}")
            raise
        failed = next((f.exception() for f in futures if f.exception() is not None), None)
        if failed is not None:
            self._unavailable(f"the broker refused records: {failed}")
            raise failed
        self._available()

    async def watch(self) -> None:
        """The probe, until cancelled: the cluster's metadata, with the input topic's
        partitions all led by a broker, within the probe timeout."""
        while True:
            try:
                async with asyncio.timeout(self.probe_timeout_s):
                    metadata = await self.producer.client.fetch_all_metadata()
            except (KafkaError, TimeoutError, OSError) as error:
                self._unavailable(f"broker unreachable ({error or error.__class__.__name__})")
            else:
                partitions = metadata.partitions_for_topic(self.topic) or set()
                led = metadata.available_partitions_for_topic(self.topic) or set()
                if not partitions:
                    self._unavailable(f"topic {self.topic} not found")
                elif len(led) < len(partitions):
                    self._unavailable(f"{len(partitions) - len(led)} partitions of {self.topic} without a leader")
                else:
                    self._available()
            await asyncio.sleep(PROBE_INTERVAL_S)

    def _unavailable(self, problem: str) -> None:
        if self._problem is None:
            log.warning("cannot deliver to %s: %s; answering 503 + Retry-After until it can", self.topic, problem)
        self._problem = problem

    def _available(self) -> None:
        if self._problem is not None:
            log.warning("delivering to %s again", self.topic)
        self._problem = None


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Reads a delivery's outcome, so that one nobody awaited any more (its request was
    answered 503) is not logged as "Future exception was never retrieved"."""
    if not future.cancelled():
        future.exception()
