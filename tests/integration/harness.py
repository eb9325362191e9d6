"""Helpers for the integration tests: produce, read back, wait. The broker and workers are
streams.processes, stopped by pid by the fixtures in conftest.py."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaError

from leadpulse.cli.kafka_clients import ensure_topic, input_producer, latest_by_key, produce_lines, read_topic
from leadpulse.cli.processes import ROOT, free_port
from leadpulse.core import find_build
from leadpulse.streams.partitioning import home_partition
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings
from leadpulse.streams.topics import ACCOUNT_MEMBERS, BY_CONTACT
from tests.integration.oracle import scores_mismatch

T = TypeVar("T")


def produce(settings: Settings, lines: Iterable[bytes], *, keyed: bool = True) -> int:
    return asyncio.run(produce_lines(settings, lines, keyed=keyed))


@contextmanager
def ctrl_c_as_in_a_terminal() -> Iterator[None]:
    """Processes started inside take Ctrl-C (SIGINT) as a terminal's foreground job does. A
    pytest run in the background by a non-interactive shell (`pytest &`, nohup, some CI steps)
    has SIGINT ignored, and an ignored signal stays ignored across fork and exec: the demo then
    never saw the Ctrl-C its test sends, while its worker (whose event loop installs its own
    handler) stopped on it, and the demo ended with "the worker stopped" instead of
    "stopping...". A signal this process handles is reset to the default at exec."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def request_erasures(settings: Settings, lines: Iterable[bytes]) -> None:
    """`contact_erased` lines onto the erasure-requests topic, keyed and partitioned by contact
    as `leadpulse erase` sends them (the worker refuses them from the input topic)."""

    async def send() -> None:
        topic = settings.erasure_topic
        await ensure_topic(settings, topic)
        producer = input_producer(settings)
        await producer.start()
        try:
            for line in lines:
                key = orjson.loads(line)["contact_id"].encode()
                await producer.send_and_wait(topic, line, key=key, partition=home_partition(key, settings.partitions))
        finally:
            await producer.stop()

    asyncio.run(send())


def write_outputs(settings: Settings, role: str, records: Iterable[dict[str, Any]]) -> None:
    """Records onto an output topic (`role`: hot-leads...) as the worker writes them: keyed by
    their contact (or account), acknowledged by the broker."""

    async def send() -> None:
        topic = settings.topic(role)
        await ensure_topic(settings, topic)
        producer = input_producer(settings)
        await producer.start()
        try:
            for record in records:
                key = str(record.get("contact_id") or record["account_id"]).encode()
                await producer.send_and_wait(topic, orjson.dumps(record), key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


def read_all(settings: Settings, topic: str, idle_s: float = 2.0) -> list[tuple[bytes | None, bytes | None]]:
    async def collect() -> list[tuple[bytes | None, bytes | None]]:
        return [record async for record in read_topic(settings, topic, from_beginning=True, idle_timeout_s=idle_s)]

    return asyncio.run(collect())


def read_to_end(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of `topic` up to its end offsets as they are at the call, without waiting
    for the topic to go quiet (`read_all` waits `idle_s` after the last record): for a loop
    that reads again until its condition holds. [] for a topic that does not exist yet."""

    async def collect() -> list[tuple[bytes | None, bytes | None]]:
        admin = AIOKafkaAdminClient(**client_options(settings))
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        if described["error_code"]:  # no such topic (yet)
            return []
        partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(partitions)
            starts = await consumer.beginning_offsets(partitions)
            ends = await consumer.end_offsets(partitions)
            pending = {tp: ends[tp] for tp in partitions if starts[tp] < ends[tp]}
            for tp in pending:
                consumer.seek(tp, starts[tp])
            records: list[tuple[bytes | None, bytes | None]] = []
            empty = 0
            while pending and empty < 4:  # a partition whose tail is gone (retention) ends by 2 s without records
                fetched = await consumer.getmany(*pending, timeout_ms=500, max_records=5_000)
                empty = 0 if fetched else empty + 1
                for tp, batch in fetched.items():
                    records.extend((r.key, r.value) for r in batch if r.offset < pending[tp])
                for tp in list(pending):
                    if await consumer.position(tp) >= pending[tp]:
                        del pending[tp]
            return records
        finally:
            await consumer.stop()

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
    with what still differs, or as soon as `alive()` says the worker is gone.

    `timeout_s` counts from the worker group's last progress (offsets committed), up to four
    times over: on a busy machine a slow worker is given time, a stalled one is not. A failure
    says whether the group still had records to read (slow) or had read them all (lost)."""
    seen: dict[str, Any] = {"latest": {}}

    def settled() -> bool:
        if alive is not None and not alive():
            raise AssertionError(f"the worker exited before {topic} matched the oracle")
        try:
            records = read_to_end(settings, settings.topic(topic))
        except KafkaError:  # a broker a fault test stopped was asked first (NodeNotReady): read at the next poll
            return False
        seen.update(latest=latest_by_key(records))
        return bool(seen["latest"] == expected)

    started = time.monotonic()
    deadline = started + timeout_s
    lag = group_lag(settings)
    while not settled():
        now = time.monotonic()
        before, lag = lag, group_lag(settings)
        if lag is not None and before is not None and lag.committed > before.committed:
            deadline = min(now + timeout_s, started + 4 * timeout_s)
        if now > deadline:
            raise AssertionError(
                f"{topic} did not match the oracle within {now - started:.0f} s; {lag or 'group lag unknown'}:\n"
                + scores_mismatch(seen["latest"], expected)
            )
        time.sleep(0.5)
    latest: dict[str, Any] = seen["latest"]
    return latest


@dataclass(frozen=True)
class Lag:
    committed: int  # offsets the worker group has committed on its inputs, summed
    behind: int  # records of its inputs beyond those

    def __str__(self) -> str:
        if self.behind:
            return f"the worker group is {self.behind:,} records behind on its inputs (slow, not lost)"
        return "the worker group has committed every input record"


def group_lag(settings: Settings) -> Lag | None:
    """How far the worker group's commits are behind its inputs (events, re-keyed events,
    account members), summed over their partitions; None if the broker would not say."""

    async def measure() -> Lag | None:
        names = [settings.input_topic, *(settings.internal_topic(name) for name in (BY_CONTACT, ACCOUNT_MEMBERS))]
        partitions = [TopicPartition(name, p) for name in names for p in range(settings.partitions)]
        admin = AIOKafkaAdminClient(**client_options(settings))
        consumer = AIOKafkaConsumer(**client_options(settings))
        try:
            await admin.start()
            await consumer.start()
            ends = await asyncio.wait_for(consumer.end_offsets(partitions), 10)
            try:
                offsets = await admin.list_consumer_group_offsets(settings.app_id)
            except GroupCoordinatorNotAvailableError:  # no group yet
                offsets = {}
            committed = {tp: offsets[tp].offset if tp in offsets else 0 for tp in partitions}
        except (KafkaError, TimeoutError):
            return None
        finally:
            await consumer.stop()
            await admin.close()
        return Lag(sum(committed.values()), sum(max(0, ends[tp] - committed[tp]) for tp in partitions))

    return asyncio.run(measure())


def topic_configs(settings: Settings, names: Iterable[str]) -> dict[str, dict[str, str]]:
    """Each topic's configuration as the broker describes it (its defaults included)."""

    async def read() -> dict[str, dict[str, str]]:
        admin = AIOKafkaAdminClient(**client_options(settings))
        await admin.start()
        try:
            responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        finally:
            await admin.close()
        return {r[3]: {e[0]: e[1] for e in r[4]} for response in responses for r in response.resources}

    return asyncio.run(read())


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


# The core the suite's `leadpulse` processes run (docs/compiled.md): what a user gets, the
# build `make setup` made, where it is of these sources; else the sources, and no test builds
# one (`make demo` would: LEADPULSE_CORE=pure skips that).
SUITE_CORE = "auto" if find_build(ROOT)[0] is not None else "pure"


def isolated_settings(broker_port: int, name: str, folder: Path, **overrides: Any) -> Settings:
    """Settings of their own on the shared broker: topics, consumer group and data folder
    named `name`, free ports, the suite's fast test timings."""
    values: dict[str, Any] = {
        "broker": f"kafka://127.0.0.1:{broker_port}",
        "app_id": f"lp-{name}",
        "topic_prefix": f"{name}.",
        "input_topic": f"{name}.events",
        "partitions": 8,
        "store": os.environ.get("TEST_STORE", "rocksdb://"),  # TEST_STORE=memory:// runs the suite in memory
        "data_dir": folder / "data",
        "web_port": free_port(),
        "cooling_interval_s": 0.0,
        "session_timeout_s": 6.0,  # the broker's least: a killed worker's place in the group ends sooner
        "batch_within_s": 0.05,
        "core": SUITE_CORE,
    }
    return Settings(**(values | overrides))
