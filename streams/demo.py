"""`leadpulse demo`: a local broker (started if none answers), a worker, and live synthetic
marketing traffic; the terminal shows running counts and every hot lead with its reasons.
Everything it started is stopped on Ctrl-C or when --duration runs out."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from scoring.timeutil import now_ms
from streams.console import describe
from streams.kafka_io import bootstrap, ensure_topic, read_topic
from streams.settings import Settings
from streams.traffic import DAY_MS, Traffic

ROOT = Path(__file__).resolve().parents[1]
BROKER_SCRIPT = ROOT / "deploy" / "kafka" / "broker.sh"
STATE_DIR = Path(".leadpulse")
MALFORMED_EVERY = 2_000  # one broken record now and then, to show the dead-letter path


@dataclass
class DemoOptions:
    rate: float
    duration_s: float | None
    contacts: int
    history_days: int


def run_demo(settings: Settings, options: DemoOptions) -> int:
    started_broker = False
    worker: subprocess.Popen[bytes] | None = None
    try:
        if not _reachable(settings):
            started_broker = _start_local_broker(settings)
        worker = _start_worker(settings)
        asyncio.run(_live(settings, options, worker))
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr)
    finally:
        if worker is not None:
            _stop(worker)
        if started_broker:
            subprocess.run([str(BROKER_SCRIPT), "stop"], env=_broker_env(settings), check=False)
    return 0


def _reachable(settings: Settings) -> bool:
    host, _, port = bootstrap(settings).split(",")[0].rpartition(":")
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
        return True
    return False


def _broker_env(settings: Settings) -> dict[str, str]:
    port = bootstrap(settings).split(",")[0].rpartition(":")[2]
    return {**os.environ, "KAFKA_PORT": port, "KAFKA_DATA_DIR": str((STATE_DIR / "kafka").resolve())}


def _start_local_broker(settings: Settings) -> bool:
    host = bootstrap(settings).split(",")[0].rpartition(":")[0]
    if host not in ("127.0.0.1", "localhost") or not BROKER_SCRIPT.exists():
        raise SystemExit(f"leadpulse demo: no Kafka broker answers at {settings.broker}; start one (docker compose up)")
    print(f"no broker at {settings.broker}: starting a local one (deploy/kafka/broker.sh)...", file=sys.stderr)
    done = subprocess.run(
        [str(BROKER_SCRIPT), "start"], check=False, env=_broker_env(settings), stdout=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise SystemExit("leadpulse demo: the local broker did not start (see the message above)")
    return True


def _start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    STATE_DIR.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")}
    env.update(settings.as_env())
    log = (STATE_DIR / "demo-worker.log").open("ab")
    print(
        f"starting a worker (log: {STATE_DIR / 'demo-worker.log'}, web: http://{settings.web_host}:"
        f"{settings.web_port}/health)...",
        file=sys.stderr,
    )
    return subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=log, stderr=log)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def _wait_ready(settings: Settings, worker: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    """Until the worker's /health lists its input partitions (output topics exist by then)."""
    url = f"http://{settings.web_host}:{settings.web_port}/health"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(
                f"leadpulse demo: the worker exited ({worker.returncode}); see {STATE_DIR}/demo-worker.log"
            )
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(url, timeout=2) as response:
                health = orjson.loads(response.read())
            if any(p.startswith(f"{settings.input_topic}:") for p in health["assigned_partitions"]):
                return
        await asyncio.sleep(0.5)
    raise SystemExit(f"leadpulse demo: the worker was not ready after {timeout_s:.0f}s")


async def _live(settings: Settings, options: DemoOptions, worker: subprocess.Popen[bytes]) -> None:
    await ensure_topic(settings, settings.input_topic)
    await _wait_ready(settings, worker)
    print("worker ready: sending traffic (Ctrl-C stops everything)", file=sys.stderr)
    counts: Counter[str] = Counter()
    watchers = [
        asyncio.create_task(_watch(settings, name, counts))
        for name in ("contact-scores", "stage-changes", "hot-leads", "dead-letters")
    ]
    producer = asyncio.create_task(_produce(settings, options, counts))
    deadline = None if options.duration_s is None else time.monotonic() + options.duration_s
    try:
        while deadline is None or time.monotonic() < deadline:
            await asyncio.sleep(2)
            if worker.poll() is not None:
                raise SystemExit(
                    f"leadpulse demo: the worker stopped (exit {worker.returncode}); "
                    f"see {STATE_DIR / 'demo-worker.log'}"
                )
            print(
                f"[{time.strftime('%H:%M:%S')}] events sent {counts['sent']:,} | snapshots {counts['contact-scores']:,}"
                f" | stage changes {counts['stage-changes']:,} | hot leads {counts['hot-leads']:,}"
                f" | dead letters {counts['dead-letters']:,}",
                flush=True,
            )
    finally:
        for task in (producer, *watchers):
            task.cancel()
        await asyncio.gather(producer, *watchers, return_exceptions=True)


async def _watch(settings: Settings, name: str, counts: Counter[str]) -> None:
    async for _key, value in read_topic(settings, settings.topic(name), from_beginning=False, idle_timeout_s=None):
        counts[name] += 1
        if name in ("hot-leads", "dead-letters"):
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
