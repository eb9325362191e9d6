"""Helpers for the integration tests: produce, read back, wait. The broker and workers are
streams.processes, stopped by pid by the fixtures in conftest.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from leadpulse.cli.kafka_clients import latest_by_key, produce_lines, read_topic
from leadpulse.cli.processes import ROOT
from leadpulse.streams.settings import Settings
from tests.integration.oracle import scores_mismatch

T = TypeVar("T")


def produce(settings: Settings, lines: Iterable[bytes], *, keyed: bool = True) -> int:
    return asyncio.run(produce_lines(settings, lines, keyed=keyed))


def read_all(settings: Settings, topic: str, idle_s: float = 2.0) -> list[tuple[bytes | None, bytes | None]]:
    async def collect() -> list[tuple[bytes | None, bytes | None]]:
        return [record async for record in read_topic(settings, topic, from_beginning=True, idle_timeout_s=idle_s)]

    return asyncio.run(collect())


def run_cli(settings: Settings, *args: str, timeout_s: float = 120) -> tuple[subprocess.CompletedProcess[bytes], float]:
    """`leadpulse ARGS` in its own process, configured by the settings' LEADPULSE_* variables
    only; returns the finished process and how long it took."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")} | settings.as_env()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "leadpulse", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    return done, time.monotonic() - started


def wait_for(condition: Callable[[], T], timeout_s: float, interval_s: float = 1.0) -> T:
    """Poll `condition()` until it returns a truthy value; return the last value either way."""
    deadline = time.monotonic() + timeout_s
    value = condition()
    while not value and time.monotonic() < deadline:
        time.sleep(interval_s)
        value = condition()
    return value


def scores_reach(
    settings: Settings,
    expected: dict[str, Any],
    timeout_s: float,
    *,
    alive: Callable[[], bool] | None = None,
    topic: str = "contact-scores",
) -> dict[str, Any]:
    """Wait until `topic` (a compacted one: latest value per key) equals `expected`; fail
    with what still differs, or as soon as `alive()` says the worker is gone."""
    seen: dict[str, Any] = {}

    def settled() -> bool:
        if alive is not None and not alive():
            raise AssertionError(f"the worker exited before {topic} matched the oracle")
        seen.update(latest=latest_by_key(read_all(settings, settings.topic(topic), idle_s=1.0)))
        return bool(seen["latest"] == expected)

    if not wait_for(settled, timeout_s):
        raise AssertionError(
            f"{topic} did not match the oracle within {timeout_s:.0f} s:\n" + scores_mismatch(seen["latest"], expected)
        )
    latest: dict[str, Any] = seen["latest"]
    return latest


async def set_topic_config(settings: Settings, topic: str, config: dict[str, str], *, create: bool) -> None:
    """Create `topic` with `config`, or change the config of an existing one."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        if create:
            await admin.create_topics([NewTopic(topic, settings.partitions, 1, topic_configs=config)])
        else:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=config)])
    finally:
        await admin.close()
