"""`leadpulse demo`: a local broker (started if none answers), a worker, and live synthetic
marketing traffic; the terminal shows running counts and every hot lead with its reasons.
Everything it started is stopped on Ctrl-C or when --duration runs out."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from scoring.timeutil import now_ms
from streams.console import describe
from streams.kafka_io import bootstrap, ensure_topic, read_topic
from streams.processes import LocalBroker, WorkerProcess
from streams.settings import Settings
from streams.topics import DEAD_LETTERS, HOT_LEADS, SCORES, STAGE_CHANGES
from streams.traffic import DAY_MS, Traffic

STATE_DIR = Path(".leadpulse")
MALFORMED_EVERY = 2_000  # one broken record now and then, to show the dead-letter path


@dataclass
class DemoOptions:
    rate: float
    duration_s: float | None
    contacts: int
    history_days: int
    traffic_only: bool = False  # only send traffic and show outputs (docker compose runs the worker)


def run_demo(settings: Settings, options: DemoOptions) -> int:
    broker: LocalBroker | None = None
    worker = None if options.traffic_only else WorkerProcess(settings, STATE_DIR / "demo-worker.log")
    try:
        if worker is not None and not _reachable(settings):
            broker = _local_broker(settings)
            print(f"no broker at {settings.broker}: starting a local one (deploy/kafka/broker.sh)...", file=sys.stderr)
            broker.start()
        asyncio.run(ensure_topic(settings, settings.input_topic))
        if worker is not None:
            print(f"starting a worker (log: {worker.log_path}, {settings.web_url}/health)...", file=sys.stderr)
            worker.start()
        print("sending traffic (Ctrl-C stops everything)", file=sys.stderr)
        asyncio.run(_live(settings, options, worker))
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr)
    finally:
        if worker is not None:
            worker.stop()
        if broker is not None:
            broker.stop()
    return 0


def _first_broker(settings: Settings) -> tuple[str, int]:
    host, _, port = bootstrap(settings).split(",")[0].rpartition(":")
    return host, int(port)


def _reachable(settings: Settings) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(_first_broker(settings), timeout=1):
        return True
    return False


def _local_broker(settings: Settings) -> LocalBroker:
    host, port = _first_broker(settings)
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"leadpulse demo: no Kafka broker answers at {settings.broker}")
    return LocalBroker(port, (STATE_DIR / "kafka").resolve())


async def _live(settings: Settings, options: DemoOptions, worker: WorkerProcess | None) -> None:
    counts: Counter[str] = Counter()
    watchers = [
        asyncio.create_task(_watch(settings, name, counts)) for name in (SCORES, STAGE_CHANGES, HOT_LEADS, DEAD_LETTERS)
    ]
    producer = asyncio.create_task(_produce(settings, options, counts))
    deadline = None if options.duration_s is None else time.monotonic() + options.duration_s
    try:
        while deadline is None or time.monotonic() < deadline:
            await asyncio.sleep(2)
            if worker is not None and not worker.running():
                raise SystemExit(f"leadpulse demo: the worker stopped; see {worker.log_path}")
            print(
                f"[{time.strftime('%H:%M:%S')}] events sent {counts['sent']:,} | snapshots {counts[SCORES]:,}"
                f" | stage changes {counts[STAGE_CHANGES]:,} | hot leads {counts[HOT_LEADS]:,}"
                f" | dead letters {counts[DEAD_LETTERS]:,}",
                flush=True,
            )
    finally:
        for task in (producer, *watchers):
            task.cancel()
        await asyncio.gather(producer, *watchers, return_exceptions=True)


async def _watch(settings: Settings, name: str, counts: Counter[str]) -> None:
    async for _key, value in read_topic(settings, settings.topic(name), from_beginning=False, idle_timeout_s=None):
        counts[name] += 1
        if name in (HOT_LEADS, DEAD_LETTERS):
            print(describe(value), flush=True)


async def _produce(settings: Settings, options: DemoOptions, counts: Counter[str]) -> None:
    """Journeys spread over the last `history_days` days, sent at `rate` events/s: the
    engine does not care about arrival order, so history and live traffic mix freely."""
    from aiokafka import AIOKafkaProducer

    from schemas.events import contact_key

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(settings), linger_ms=10)
    await producer.start()
    try:
        interval = 1 / options.rate
        next_at = time.monotonic()
        for document in _traffic(options):
            key = contact_key(document)
            value = orjson.dumps(document)
            if counts["sent"] % MALFORMED_EVERY == MALFORMED_EVERY - 1:
                value = value[: len(value) // 2]
            await producer.send(settings.input_topic, value, key=key.encode() if key else None)
            counts["sent"] += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    finally:
        await producer.stop()


def _traffic(options: DemoOptions) -> Iterator[dict[str, Any]]:
    seed = int(time.time())
    while True:
        end = now_ms()
        span = options.history_days * DAY_MS
        traffic = Traffic(seed, end - span, span, options.contacts, id_prefix=f"demo{seed}-")
        yield from traffic.events(10_000)
        seed += 1
