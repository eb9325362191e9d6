"""Accepted messages to the input topic, through a producer the command line starts (with
acks=all), so that Kafka client settings stay in one place for every command."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from leadpulse.collector.service import Record


class KafkaSink:
    def __init__(self, producer: Any, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    async def send(self, records: Sequence[Record]) -> None:
        """All records are handed to the producer before any acknowledgement is awaited, so a
        batch of 500 messages costs one round of produce requests, not 500."""
        pending = [await self.producer.send(self.topic, value, key=key) for key, value in records]
        await asyncio.gather(*pending)
