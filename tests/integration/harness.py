"""A real Kafka broker and real worker processes for the integration tests.

Every process started here is stopped here by its pid, also when a test fails.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from streams.kafka_io import produce_lines, read_topic
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BROKER_SCRIPT = ROOT / "deploy" / "kafka" / "broker.sh"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Broker:
    port: int
    data_dir: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_DATA_DIR": str(self.data_dir)}

    def start(self) -> None:
        subprocess.run([str(BROKER_SCRIPT), "start"], env=self.env, check=True, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        subprocess.run([str(BROKER_SCRIPT), "stop"], env=self.env, check=False)


@dataclass
class Worker:
    """`leadpulse worker` in its own process, configured by LEADPULSE_* variables."""

    settings: Settings
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    def start(self, timeout_s: float = 90) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")}
        env.update(self.settings.as_env())
        self.starts += 1
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}; see {self.log_path}")
            health = self.health()
            if health and any(p.startswith(f"{self.settings.input_topic}:") for p in health["assigned_partitions"]):
                return
            time.sleep(0.3)
        self.kill()
        raise TimeoutError(f"worker not ready after {timeout_s}s; see {self.log_path}")

    def health(self) -> dict | None:
        try:
            return self.get("/health")[1]
        except OSError:
            return None

    def get(self, path: str) -> tuple[int, dict]:
        url = f"http://{self.settings.web_host}:{self.settings.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, orjson.loads(error.read())

    def scored(self) -> float:
        """leadpulse_events_total{outcome="scored"} from the worker's /metrics (0 if down)."""
        url = f"http://{self.settings.web_host}:{self.settings.web_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        for line in text.splitlines():
            if line.startswith('leadpulse_events_total{outcome="scored"}'):
                return float(line.split()[-1])
        return 0.0

    def stop(self, timeout_s: float = 30) -> None:
        """Graceful: SIGTERM, as an operator or an orchestrator would."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed or committed."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def produce(settings: Settings, lines: Iterable[bytes], *, keyed: bool = True) -> int:
    return asyncio.run(produce_lines(settings, lines, keyed=keyed))


def read_all(settings: Settings, topic: str, idle_s: float = 2.0) -> list[tuple[bytes | None, bytes]]:
    async def collect() -> list[tuple[bytes | None, bytes]]:
        return [record async for record in read_topic(settings, topic, from_beginning=True, idle_timeout_s=idle_s)]

    return asyncio.run(collect())


def latest_by_key(records: list[tuple[bytes | None, bytes]]) -> dict[str, dict]:
    """What a compacted topic converges to: the last value per key."""
    return {key.decode(): orjson.loads(value) for key, value in records if key is not None}


def wait_for(condition, timeout_s: float, interval_s: float = 1.0):
    """Poll `condition()` until it returns a truthy value; return the last value either way."""
    deadline = time.monotonic() + timeout_s
    value = condition()
    while not value and time.monotonic() < deadline:
        time.sleep(interval_s)
        value = condition()
    return value
