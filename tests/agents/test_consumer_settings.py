"""The worker's consumer as aiokafka gets it: settings Faust hard-codes that LeadPulse
overrides (streams/transport.py, docs/faust-notes.md)."""

import asyncio
import inspect

from aiokafka import AIOKafkaConsumer

from leadpulse.streams.transport import FETCH_MAX_WAIT_MS


async def test_the_workers_fetches_wait_at_most_fetch_max_wait_at_the_broker(scorer):
    consumer = scorer.app.consumer._thread._create_consumer(asyncio.get_running_loop())
    try:
        assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS < 1500  # Faust's own value
        # The override is an attribute aiokafka's constructor fills and start() hands to its
        # fetcher: if an upgrade renames it, these fail rather than the override doing nothing.
        assert AIOKafkaConsumer(fetch_max_wait_ms=1234)._fetch_max_wait_ms == 1234
        assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)
    finally:
        await consumer._client.close()
