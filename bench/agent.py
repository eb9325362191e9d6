"""The scoring agent's work per event without a broker: `ScoringAgent.run` on the events
`bench.pipeline` sends, in one process, on a RocksDB table, its record batches handed to a
producer that acknowledges them at once. What it measures is the agent's CPU per event
(decoding, scoring, the per-contact states, snapshots and records, the table), without
Faust's consumer, aiokafka's producer, the broker or the other processes of a shared machine.

    python -m bench.agent [--events 100000] [--contacts 10000] [--runs 3] [--profile N]
                          [--batch-size N] [--against GIT_REF] [--instructions] [--cooling]

Batches are cut as the worker takes them from a pre-loaded topic: `batch_size` records in
the order the topic's partitions hold them, one chunk per partition; what the agent
re-keys to `events-by-contact` comes back in a later batch, as through Kafka. Without the
cooling schedule, as `bench.pipeline` runs every implementation; `--cooling` adds it, as the
worker runs by default (LEADPULSE_COOLING_INTERVAL). Prints CPU
µs per event (`time.process_time`, the median of `--runs` fresh agents on the same
events); `--profile N` prints cProfile's N largest self and cumulative times of one more
run. Each run's last snapshot of each contact must equal the offline scorer's.
`--against GIT_REF` (repeatable) runs another commit's agent the same way in alternating fresh processes
(before/after in one run, bench/versions.py); `--instructions` counts instructions per event
with callgrind instead (the first 5,000 and 15,000 events, differenced; ~5 minutes a count
with `--events 15000 --contacts 1500`), which the load of a shared machine does not move.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord

from bench.pipeline import differences
from bench.versions import package_at
from leadpulse.cli.offline import score_lines
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.schemas.events import contact_key
from leadpulse.schemas.limits import DEFAULT_RECORD_LIMITS
from leadpulse.schemas.outputs import snapshot_record
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.partitioning import home_partition
from leadpulse.streams.runtime import tune_gc
from leadpulse.streams.settings import Settings

NOW_MS = now_ms()
HERE = str(Path(__file__).resolve().parent.parent)
TAKEN = (5_000, 15_000)  # events scored by the two counted runs of --instructions


class DroppedBatch:
    """aiokafka's record batch as the outbox uses it, keeping the records."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None, int | None]] = []

    def append(self, *, key: bytes | None, value: bytes | None, timestamp: int | None) -> int:
        self.records.append((key, value, timestamp))
        return len(self.records)

    def record_count(self) -> int:
        return len(self.records)

    def close(self) -> None:
        pass


class Producer:
    """Acknowledges every batch at once; keeps what goes to `events-by-contact` for the
    next batches (the agent's re-keyed and identity records)."""

    def __init__(self, rekeyed: str, scores: str) -> None:
        self.rekeyed, self.scores = rekeyed, scores
        self.latest: dict[bytes | None, bytes | None] = {}  # the last contact-scores record of each key
        self.offsets: dict[tuple[str, int], int] = defaultdict(int)
        self.back: list[ConsumerRecord[Any, Any]] = []

    def create_batch(self) -> DroppedBatch:
        return DroppedBatch()

    async def send_batch(self, batch: DroppedBatch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        first = self.offsets[(topic, partition)]
        self.offsets[(topic, partition)] += len(batch.records)
        if topic == self.scores:
            self.latest.update((key, value) for key, value, _ in batch.records)
        elif topic == self.rekeyed:
            for i, (key, value, timestamp) in enumerate(batch.records):
                self.back.append(_record((topic, partition, first + i), key, value, timestamp or NOW_MS))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(SimpleNamespace(offset=first))
        return done


class Anchor:
    """Stands for a partition's stream event (tables.partition_of holds a weak reference)."""

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


def _record(
    where: tuple[str, int, int], key: bytes | None, value: bytes | None, timestamp: int
) -> ConsumerRecord[Any, Any]:
    """A fetched record at (topic, partition, offset)."""
    topic, partition, offset = where
    return ConsumerRecord(
        topic, partition, offset, timestamp, 0, key, value, None, len(key or b""), len(value or b""), []
    )


def input_records(lines: list[bytes], topic: str, partitions: int) -> dict[int, list[ConsumerRecord[Any, Any]]]:
    """The lines as `produce_lines` sends them (keyed by contact), by partition."""
    by_partition: dict[int, list[ConsumerRecord[Any, Any]]] = defaultdict(list)
    for i, line in enumerate(lines):
        contact = contact_key(orjson.loads(line))
        key = contact.encode() if contact else None
        partition = home_partition(key, partitions) if key else i % partitions
        records = by_partition[partition]
        records.append(_record((topic, partition, len(records)), key, line, NOW_MS - 1000))
    return by_partition


def batches(by_partition: dict[int, list[ConsumerRecord[Any, Any]]], size: int) -> list[list[ConsumerRecord[Any, Any]]]:
    """`size` records a batch, taken from the partitions in turn, as a fetch returns them."""
    queues = [list(records) for _, records in sorted(by_partition.items())]
    share = max(1, size // len(queues))
    out: list[list[ConsumerRecord[Any, Any]]] = []
    while any(queues):
        batch: list[ConsumerRecord[Any, Any]] = []
        for queue in queues:
            batch += queue[:share]
            del queue[:share]
        out.append(batch)
    return out


async def score_all(
    lines: list[bytes],
    partitions: int,
    batch_size: int,
    profile: cProfile.Profile | None = None,
    *,
    cooling: bool = False,
) -> tuple[float, dict[bytes | None, bytes | None]]:
    """CPU seconds the agent spent on `lines` (set-up excluded), and the last contact-scores
    record of each key. `cooling`: with the cooling schedule (each published contact's next
    band drop and nurture time, the worker's default) as the worker runs by default; off, as
    `bench.pipeline` runs every implementation (its peers have none)."""
    from leadpulse.agents.scoring import ScoringAgent
    from leadpulse.streams.chunks import Part
    from leadpulse.streams.pipeline import create_app

    settings = Settings(
        store="rocksdb://",
        partitions=partitions,
        cooling_interval_s=Settings().cooling_interval_s if cooling else 0.0,
        batch_size=batch_size,
        data_dir=Path(tempfile.mkdtemp(prefix="leadpulse-bench-agent-")),
    )
    pipeline = create_app(settings)
    producer = Producer(pipeline.topics.by_contact.get_topic_name(), pipeline.topics.scores.get_topic_name())
    agent = ScoringAgent(pipeline, producer=lambda: producer)
    pipeline.record_limits = DEFAULT_RECORD_LIMITS
    anchors: dict[int, Any] = {p: Anchor(p) for p in range(partitions)}
    for store_partition in range(partitions):  # open the databases before the clock starts
        pipeline.contacts.table.data._db_for_partition(store_partition)
    pending = batches(input_records(lines, settings.input_topic, partitions), settings.batch_size)
    tune_gc()
    started = time.process_time()
    if profile is not None:
        profile.enable()
    while pending or producer.back:
        records = pending.pop(0) if pending else []
        records, producer.back = records + producer.back, []
        parts: dict[int, Part] = {}
        for record in records:
            part = parts.get(record.partition)
            if part is None:
                part = parts[record.partition] = Part(record.partition, anchors[record.partition], [])
            part.records.append(record)
        await agent.run(list(parts.values()))
    if profile is not None:
        profile.disable()
    return time.process_time() - started, producer.latest


def traffic_lines(events: int, contacts: int) -> list[bytes]:
    """`bench.pipeline`'s traffic."""
    traffic = Traffic(seed=21, start_ms=NOW_MS - 90 * DAY_MS, span_ms=80 * DAY_MS, contacts=contacts)
    return [orjson.dumps(event) for event in traffic.events(events)]


def child(args: argparse.Namespace) -> None:
    """One fresh agent on the first `--take` events (all by default): prints its CPU µs per
    event; fails unless its last snapshot of each contact is the offline scorer's (skipped
    with `--take`, which counts instructions)."""
    lines = traffic_lines(args.events, args.contacts)[: args.take]
    seconds, latest = asyncio.run(score_all(lines, args.partitions, args.batch_size, cooling=args.cooling))
    if args.take is None:
        oracle = {view.contact_id: snapshot_record(view) for view in score_lines(lines, load_rules()).snapshots(None)}
        published = {key.decode(): orjson.loads(value) for key, value in latest.items() if key and value}
        if published != oracle:
            raise SystemExit(f"contact-scores differ from the offline scorer's:\n{differences(published, oracle)}")
    print(f"{seconds * 1e6 / len(lines):.1f}")


def instructions(tree: Path, args: argparse.Namespace) -> int:
    """Instructions per event of the agent of `tree`, counted by callgrind: the counts of
    scoring the first TAKEN[0] and TAKEN[1] events, differenced (start-up, imports and the
    traffic's generation cancel out)."""
    counts = []
    for take in TAKEN:
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        command += [*child_command(args), "--take", str(take)]
        done = subprocess.run(command, env=child_environment(), cwd=tree, capture_output=True, text=True, check=False)
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or found is None:
            raise SystemExit(f"callgrind failed:\n{done.stderr[-2000:]}")
        counts.append(int(found.group(1)))
    return (counts[1] - counts[0]) // (TAKEN[1] - TAKEN[0])


def child_command(args: argparse.Namespace) -> list[str]:
    command = [sys.executable, "-m", "bench.agent", "--child", "--events", str(args.events)]
    command += ["--contacts", str(args.contacts), "--partitions", str(args.partitions)]
    return [*command, "--batch-size", str(args.batch_size), *(["--cooling"] if args.cooling else [])]


def child_environment() -> dict[str, str]:
    """For a child run in a tree's folder: `python -m` puts that folder first on the path
    (its `leadpulse` package), then this checkout (for `bench`)."""
    return {**os.environ, "PYTHONPATH": HERE, "PYTHONHASHSEED": "0"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=Settings().batch_size, help="LEADPULSE_BATCH_SIZE")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile's N largest entries")
    parser.add_argument(
        "--against", metavar="GIT_REF", action="append", default=[], help="also run this commit's agent (repeatable)"
    )
    parser.add_argument("--instructions", action="store_true", help="count instructions per event (callgrind)")
    parser.add_argument("--cooling", action="store_true", help="with the cooling schedule, as the worker's default")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--take", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    trees = {"this checkout": Path(HERE)}
    trees = {ref: package_at(ref, Path(tempfile.mkdtemp())) for ref in args.against} | trees
    if args.instructions:
        for name, tree in trees.items():
            print(f"{name}: {instructions(tree, args):,} instructions per event", flush=True)
        return
    results: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for name, tree in trees.items():
            done = subprocess.run(
                child_command(args), env=child_environment(), cwd=tree, capture_output=True, text=True, check=True
            )
            results[name].append(float(done.stdout.split()[-1]))
            print(f"  {name}: {results[name][-1]:.1f} µs CPU per event", flush=True)
    for name, values in results.items():
        each = ", ".join(f"{value:.1f}" for value in values)
        print(f"{name}: median {statistics.median(values):.1f} µs CPU per event ({each})")
    if args.profile:
        lines = traffic_lines(args.events, args.contacts)
        profile = cProfile.Profile()
        asyncio.run(score_all(lines, args.partitions, args.batch_size, profile, cooling=args.cooling))
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats(order).print_stats(args.profile)
            print(out.getvalue())


if __name__ == "__main__":
    main()
