"""A 3-broker KRaft cluster (replication factor 3, min.insync.replicas 2, acks=all): the broker
that leads most of the pipeline's partitions is killed (SIGKILL) while the worker is scoring;
nothing is lost, and the outputs equal the offline scorer's.

Besides the assertions, the test prints one `cluster-failover:` line with its figures: the
takeover (from the kill until every contact-scores partition gets snapshots again),
the longest stretch without any snapshot, scoring rates, time to the oracle's result and to
the last commit; run with -s to see it."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from leadpulse.cli.processes import WorkerProcess
from leadpulse.streams.settings import Settings
from leadpulse.streams.topics import DEAD_LETTERS, HOT_LEADS, SCORES, STAGE_CHANGES
from tests.integration.cluster import LocalCluster, low_free_ports
from tests.integration.harness import produce, read_all, scores_reach, wait_for
from tests.integration.oracle import Oracle, traffic_lines

pytestmark = [pytest.mark.integration, pytest.mark.slow]
T = TypeVar("T")

EVENTS, CONTACTS = 30_000, 3_000
KILL_AFTER_SCORED = 3_000
CONFIG_SOURCES = {1: "topic", 2: "broker (dynamic)", 3: "cluster default (dynamic)", 4: "broker config", 5: "default"}


@pytest.fixture
def cluster(tmp_path):
    """Three nodes, started together; every node still running is stopped by pid at teardown."""
    instance = LocalCluster(tmp_path / "kafka", size=3)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


def cluster_settings(cluster: LocalCluster, data_dir: Path) -> Settings:
    return Settings(
        broker=cluster.broker,
        app_id="lp-cluster",
        topic_prefix="cluster.",
        input_topic="cluster.events",
        partitions=8,
        replication_factor=3,
        store=os.environ.get("TEST_STORE", "rocksdb://"),
        data_dir=data_dir,
        web_port=low_free_ports(1)[0],
        cooling_interval_s=0.0,
        session_timeout_s=10.0,
        batch_within_s=0.05,
    )


def changelog_topic(settings: Settings) -> str:
    """Faust names a table's changelog topic after the app and the table ("contacts")."""
    return f"{settings.app_id}-contacts-changelog"


def pipeline_topics(settings: Settings) -> list[str]:
    """The input and every topic the worker writes records to."""
    outputs = [settings.topic(name) for name in (SCORES, STAGE_CHANGES, HOT_LEADS, DEAD_LETTERS)]
    return [settings.input_topic, *outputs, changelog_topic(settings)]


async def _describe(cluster: LocalCluster, topics: list[str] | None) -> list[dict]:
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        return await admin.describe_topics(topics)
    finally:
        await admin.close()


def leaders(cluster: LocalCluster, topics: list[str]) -> dict[str, dict[int, int]]:
    """Topic -> partition -> the node id of its leader."""
    described = asyncio.run(_describe(cluster, topics))
    return {entry["topic"]: {p["partition"]: p["leader"] for p in entry["partitions"]} for entry in described}


def replication(cluster: LocalCluster, prefixes: tuple[str, ...]) -> dict[str, tuple[set[int], str, str]]:
    """Topic -> (replica counts of its partitions, effective min.insync.replicas, where it comes from)."""

    async def collect() -> dict[str, tuple[set[int], str, str]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=30_000)
        await admin.start()
        try:
            names = sorted(name for name in await admin.list_topics() if name.startswith(prefixes))
            described = {entry["topic"]: entry for entry in await admin.describe_topics(names)}
            responses = await admin.describe_configs(
                [
                    ConfigResource(ConfigResourceType.TOPIC, name, configs={"min.insync.replicas": None})
                    for name in names
                ]
            )
            found: dict[str, tuple[set[int], str, str]] = {}
            for response in responses:
                for _error, _message, _type, name, entries in response.resources:
                    isr = next((entry for entry in entries if entry[0] == "min.insync.replicas"), None)
                    counts = {len(p["replicas"]) for p in described[name]["partitions"]}
                    value, source = (isr[1], CONFIG_SOURCES.get(isr[3], str(isr[3]))) if isr else ("?", "?")
                    found[name] = (counts, value, source)
            return found
        finally:
            await admin.close()

    return asyncio.run(collect())


def retrying(call: Callable[[], T], timeout_s: float = 120) -> T:
    """`call()`, again while it fails with a Kafka error: an admin client sends to any broker
    in its metadata, a dead one too until the controller has fenced it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def coordinator(cluster: LocalCluster, group: str) -> int:
    async def find() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=30_000)
        await admin.start()
        try:
            return await admin.find_coordinator(group)
        finally:
            await admin.close()

    return asyncio.run(find())


def input_lag(cluster: LocalCluster, settings: Settings) -> int:
    """Input records not yet committed by the worker's consumer group."""

    async def lag() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=30_000)
        consumer = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap, group_id=None)
        await admin.start()
        await consumer.start()
        try:
            committed = await admin.list_consumer_group_offsets(settings.app_id)
            partitions = [TopicPartition(settings.input_topic, p) for p in range(settings.partitions)]
            ends = await consumer.end_offsets(partitions)
            return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in partitions)
        finally:
            await consumer.stop()
            await admin.close()

    return asyncio.run(lag())


def _metrics(worker: WorkerProcess) -> tuple[float, float] | None:
    """(events scored, snapshots delivered) from one /metrics read; None when unreachable."""
    try:
        status, text = worker.get("/metrics")
    except (OSError, ValueError):
        return None
    if status != 200:
        return None
    scored = snapshots = 0.0
    for line in str(text).splitlines():
        if line.startswith('leadpulse_events_total{outcome="scored"} '):
            scored = float(line.split()[-1])
        elif line.startswith('leadpulse_outputs_total{kind="snapshot"} '):
            snapshots = float(line.split()[-1])
    return scored, snapshots


@dataclass
class Sampler:
    """Reads the worker's counters in a thread: fast around the kill, slower afterwards."""

    worker: WorkerProcess
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # (monotonic, scored, snapshots)
    fast_until: float = float("inf")
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            read = _metrics(self.worker)
            if read is not None:
                self.samples.append((time.monotonic(), *read))
            self._stop.wait(0.1 if time.monotonic() < self.fast_until else 0.5)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def scored(self) -> float:
        return self.samples[-1][1] if self.samples else 0.0


def created_times(cluster: LocalCluster, topic: str, partitions: int) -> dict[int, list[int]]:
    """Partition -> the CreateTime (ms) of each of its records. The worker's producer stamps a
    record when it is appended to a batch, so a record retried after the kill keeps its time."""

    async def collect() -> dict[int, list[int]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            times: dict[int, list[int]] = {p: [] for p in range(partitions)}
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for tp, records in (await consumer.getmany(timeout_ms=1_000, max_records=10_000)).items():
                    times[tp.partition].extend(record.timestamp for record in records)
            return times
        finally:
            await consumer.stop()

    return asyncio.run(collect())


def partition_takeovers(times: dict[int, list[int]], killed_ms: int) -> dict[int, float]:
    """Partition -> seconds from the kill until it got snapshots again: the end of the longest
    pause in its records' CreateTimes after the kill. (A batch made just after the kill carries
    that time even if it waited for the new leader; the batch after it is made only once it
    has been delivered, as the agent delivers one batch at a time.)"""
    resumed = {}
    for partition, stamps in times.items():
        ordered = sorted(stamps)
        after = [t for t in ordered if t > killed_ms]
        if not after:
            continue  # no work left for this partition after the kill
        points = [max([t for t in ordered if t <= killed_ms], default=killed_ms), *after]
        _gap, ended = max((b - a, b) for a, b in pairwise(points))
        resumed[partition] = (ended - killed_ms) / 1000
    return resumed


def throughput_figures(
    samples: list[tuple[float, float, float]], killed_at: float, takeover_s: float
) -> dict[str, float]:
    """From the worker's counters: events scored per second before the kill and in the 10 s
    after the takeover; the first snapshot delivered after the kill (a batch without a record
    for the dead node's partitions goes on), and the longest stretch without any."""
    before = [s for s in samples if s[0] <= killed_at]
    after = [s for s in samples if s[0] > killed_at]
    figures: dict[str, float] = {}
    if len(before) >= 2:
        start = next((s for s in before if s[1] > 0), before[0])
        figures["rate_before"] = (before[-1][1] - start[1]) / max(before[-1][0] - start[0], 1e-3)
    window = [s for s in after if killed_at + takeover_s <= s[0] <= killed_at + takeover_s + 10]
    if len(window) >= 2:
        figures["rate_after"] = (window[-1][1] - window[0][1]) / max(window[-1][0] - window[0][0], 1e-3)
    progress = [before[-1]] if before else []  # the samples that saw more snapshots than the one before
    for sample in after:
        if not progress or sample[2] > progress[-1][2]:
            progress.append(sample)
    if len(progress) >= 2:
        figures["first_snapshot_after_kill_s"] = progress[1][0] - killed_at
        gap, ended = max((b[0] - max(a[0], killed_at), b[0]) for a, b in pairwise(progress))
        figures["longest_snapshot_gap_s"] = gap
        figures["longest_gap_ended_s"] = ended - killed_at
    return figures


def ids_of(settings: Settings, topic: str) -> list[str]:
    return [orjson.loads(value)["id"] for _, value in read_all(settings, settings.topic(topic), idle_s=2.0)]


def log_excerpt(path: Path, words: tuple[str, ...], limit: int = 40) -> str:
    """The worker's log lines that contain one of `words`; a message repeated (aiokafka's
    reconnect attempts, 10 a second) is shown once, with its count."""
    if not path.exists():
        return ""
    seen: Counter[str] = Counter()
    first: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if any(word in line for word in words):
            message = line.split("] ", 3)[-1]  # without the time and pid
            seen[message] += 1
            first.setdefault(message, line)
    shown = [first[m] + (f"  [x{seen[m]}]" if seen[m] > 1 else "") for m in first]
    return "\n".join(shown[:limit])


def test_killing_the_busiest_leader_loses_nothing(cluster, tmp_path, record_property):
    began = time.monotonic()
    worker_log = tmp_path / "worker.log"
    settings = cluster_settings(cluster, tmp_path / "data")
    lines = traffic_lines(EVENTS, CONTACTS, seed=31)
    oracle = Oracle(lines)
    assert oracle.hot_lead_ids, "the traffic must make hot leads for the test to mean anything"
    produce(settings, lines)  # creates the input topic with settings.replication_factor, acks=all

    worker = WorkerProcess(settings, worker_log)
    sampler = Sampler(worker)
    try:
        worker.start(timeout_s=300)
        sampler.start()
        wait_for(lambda: sampler.scored() >= KILL_AFTER_SCORED or not worker.running(), timeout_s=300, interval_s=0.05)
        assert worker.running(), f"the worker exited; see {worker_log}"
        assert sampler.scored() >= KILL_AFTER_SCORED, f"the worker scored {sampler.scored():.0f} events in 300 s"
        layout = retrying(lambda: leaders(cluster, pipeline_topics(settings)))
        led = Counter(leader for partitions in layout.values() for leader in partitions.values())
        victim, led_by_victim = led.most_common(1)[0]
        group_coordinator = retrying(lambda: coordinator(cluster, settings.app_id))
        scored_at_kill = sampler.scored()
        sampler.fast_until = time.monotonic() + 120
        killed_ms = int(time.time() * 1000)
        killed_at = cluster.kill(victim)

        try:
            scores_reach(settings, oracle.snapshots, timeout_s=600, alive=worker.running)
        except AssertionError as error:
            raise AssertionError(
                f"{error}\nworker log:\n" + log_excerpt(worker_log, ("WARNING", "ERROR", "CRITICAL"))
            ) from None
        done_at = time.monotonic()
        sampler.stop()
        assert scored_at_kill < sampler.scored(), "the worker had finished before the kill: nothing was tested"

        lag = wait_for(lambda: retrying(lambda: input_lag(cluster, settings)) == 0, timeout_s=180, interval_s=1.0)
        committed_at = time.monotonic()
        assert lag, f"the worker left {retrying(lambda: input_lag(cluster, settings))} input records uncommitted"

        hot_leads = ids_of(settings, HOT_LEADS)
        assert set(hot_leads) == oracle.hot_lead_ids
        stage_changes = ids_of(settings, STAGE_CHANGES)
        assert set(stage_changes) == oracle.stage_change_ids
        assert len(read_all(settings, settings.topic(DEAD_LETTERS))) == oracle.bad_lines

        topics = retrying(lambda: replication(cluster, (settings.topic_prefix, f"{settings.app_id}-")))
        worker_topics = {name: found for name, found in topics.items() if name != settings.input_topic}
        assert changelog_topic(settings) in worker_topics and settings.topic(SCORES) in worker_topics
        assert {name: found[0] for name, found in topics.items()} == {name: {3} for name in topics}
        assert {name: found[1] for name, found in topics.items()} == {name: "2" for name in topics}

        scores = settings.topic(SCORES)
        created = retrying(lambda: created_times(cluster, scores, settings.partitions))
        resumed = partition_takeovers(created, killed_ms)
        takeover_s = max(resumed.values(), default=float("nan"))  # a partition done before the kill has none
        figures = throughput_figures(sampler.samples, killed_at, takeover_s)
        victims = {
            topic: sorted(p for p, leader in led_by.items() if leader == victim) for topic, led_by in layout.items()
        }
        summary = {
            "killed_node": victim,
            "partitions_led_by_it": led_by_victim,
            "leaders_before": {str(node): count for node, count in sorted(led.items())},
            "its_input_and_score_partitions": [victims[settings.input_topic], victims[scores]],
            "scored_at_kill": scored_at_kill,
            "takeover_s": round(takeover_s, 2),
            "score_partitions_resumed_s": {str(p): round(t, 2) for p, t in sorted(resumed.items())},
            **{k: round(v, 2) for k, v in figures.items()},
            "group_coordinator_before": group_coordinator,
            "kill_to_oracle_match_s": round(done_at - killed_at, 1),
            "kill_to_all_committed_s": round(committed_at - killed_at, 1),
            "group_generations": worker_log.read_text(errors="replace").count("Joined group"),
            "hot_lead_records": len(hot_leads),
            "hot_lead_duplicates": len(hot_leads) - len(set(hot_leads)),
            "stage_change_records": len(stage_changes),
            "stage_change_duplicates": len(stage_changes) - len(set(stage_changes)),
            "topics_checked": sorted(topics),
            "min_insync_from": sorted({found[2] for found in topics.values()}),
            "test_s_before_teardown": round(time.monotonic() - began, 1),
        }
        record_property("cluster_failover", summary)
        details = {"summary": summary, "killed_ms": killed_ms, "killed_at": killed_at, "samples": sampler.samples}
        details["created"] = {str(p): stamps for p, stamps in created.items()}
        (tmp_path / "failover.json").write_bytes(orjson.dumps(details))
        print("\ncluster-failover:", orjson.dumps(summary).decode())
        print(log_excerpt(worker_log, ("WARNING", "ERROR", "CRITICAL", "resumed", "(Re-)joining", "Joined group")))
    finally:
        sampler.stop()
        worker.kill()
