"""Events at a steady rate into the input topic, from a thread of its own, while a benchmark
kills workers or restarts the broker in the foreground (bench.scaling's rebalance pauses,
bench.soak). A send the broker does not acknowledge (it was away longer than the producer's
request timeout) is sent again: every line reaches the topic at least once, and the worker
counts a duplicate event id once, so the offline scorer over the lines stays the oracle."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import orjson
from aiokafka.errors import KafkaError

from leadpulse.cli.kafka_clients import ensure_topic, input_producer
from leadpulse.schemas.events import contact_key
from leadpulse.streams.settings import Settings

TICK_S = 0.01
RETRY_S = 1.0


class SteadyProducer:
    """`start()` sends `lines` keyed by contact at `rate` per second until they are all sent
    (or `stop()`); `acknowledged` counts the lines the broker has acknowledged, `done` is set
    once every line is. Sends that are due while the broker is away go out in a burst when it
    is back: the schedule keeps its pace, the topic catches up."""

    def __init__(self, settings: Settings, lines: Sequence[bytes], rate: float) -> None:
        self.settings = settings
        self.lines = lines
        self.rate = rate
        self.acknowledged = 0
        self.resent = 0
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-producer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 60) -> None:
        self._stopping.set()
        self._thread.join(timeout_s)

    def wait(self, timeout_s: float) -> bool:
        """Whether every line was acknowledged within `timeout_s`; raises what stopped the thread."""
        finished = self.done.wait(timeout_s)
        if self.error is not None:
            raise RuntimeError(f"the steady producer stopped: {self.error!r}") from self.error
        return finished

    def _run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as error:  # reported by wait(); a thread's exception goes nowhere else
            self.error = error
            self.done.set()

    async def _produce(self) -> None:
        await ensure_topic(self.settings, self.settings.input_topic)
        producer = input_producer(self.settings)
        await producer.start()
        keys = [(contact_key(orjson.loads(line)) or "").encode() or None for line in self.lines]
        topic = self.settings.input_topic
        in_flight: dict[asyncio.Future[object], int] = {}
        again: list[int] = []
        next_line = 0
        started = time.monotonic()
        try:
            while not self._stopping.is_set() and (next_line < len(self.lines) or in_flight or again):
                due = min(len(self.lines), int((time.monotonic() - started) * self.rate) + 1)
                for index in [*again, *range(next_line, due)]:
                    in_flight[await producer.send(topic, self.lines[index], key=keys[index])] = index
                next_line = max(next_line, due)
                again.clear()
                await asyncio.sleep(TICK_S)
                for future in [future for future in in_flight if future.done()]:
                    index = in_flight.pop(future)
                    if future.exception() is None:
                        self.acknowledged += 1
                    elif isinstance(future.exception(), KafkaError):
                        again.append(index)
                        self.resent += 1
                    else:
                        raise future.exception()  # type: ignore[misc]
                if again:
                    await asyncio.sleep(RETRY_S)
            if next_line == len(self.lines) and not in_flight and not again:
                self.done.set()
        finally:
            await producer.stop()
