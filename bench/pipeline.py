"""Throughput of the whole pipeline through a real Kafka broker: our worker against the naive
per-event Faust agent (bench/naive.py), same events, same broker, interleaved runs.

    python -m bench.pipeline [--events 200000] [--contacts 20000] [--partitions 8] [--runs 3]
                             [--store rocksdb://] [--profile]

A run pre-loads the events, starts the worker and ends when the consumer group has committed
every input offset; its rate is events / (commit-complete time - first output record time).
Every run's final contact-scores is checked against the offline scorer (the oracle).
Prints medians and writes bench/results/pipeline.svg.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from leadpulse.cli.kafka_clients import produce_lines
from leadpulse.cli.offline import score_lines
from leadpulse.cli.processes import LocalBroker, WorkerProcess, free_port
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.schemas.outputs import snapshot_record
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings

RESULTS = Path(__file__).parent / "results"
IMPLEMENTATIONS = {
    "leadpulse worker": [sys.executable, "-m", "leadpulse", "worker"],
    "naive Faust agent": [sys.executable, "-m", "bench.naive", "worker", "-l", "info"],
}


async def committed_everything(settings: Settings) -> bool:
    admin = AIOKafkaAdminClient(**client_options(settings))
    consumer = AIOKafkaConsumer(**client_options(settings))
    await admin.start()
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.input_topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(partitions)
        try:
            committed = await admin.list_consumer_group_offsets(settings.app_id)
        except GroupCoordinatorNotAvailableError:  # the group does not exist yet
            return False
        return all(tp in committed and committed[tp].offset >= ends[tp] for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()


async def read_scores(settings: Settings) -> tuple[dict[str, Any], float]:
    """Latest snapshot per contact and the timestamp (s) of the first snapshot record."""
    consumer = AIOKafkaConsumer(
        settings.topic("contact-scores"), **client_options(settings), auto_offset_reset="earliest"
    )
    await consumer.start()
    latest: dict[str, Any] = {}
    first_ms: float = float("inf")
    try:
        idle = 0
        while idle < 4:
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            idle = 0 if batches else idle + 1
            for records in batches.values():
                for record in records:
                    first_ms = min(first_ms, record.timestamp)
                    latest[record.key.decode()] = orjson.loads(record.value)
    finally:
        await consumer.stop()
    return latest, first_ms / 1000


@dataclass(frozen=True)
class Bench:
    lines: list[bytes]
    oracle: dict[str, Any]
    base: Settings
    work: Path

    def settings(self, tag: str) -> Settings:
        """Own topics, group and data folder per run: nothing carries over between runs."""
        return replace(
            self.base,
            app_id=f"bench-{tag}",
            topic_prefix=f"bench-{tag}.",
            input_topic=f"bench-{tag}.events",
            data_dir=self.work / tag,
        )


def one_run(bench: Bench, name: str, command: list[str], tag: str) -> tuple[float, int, bool]:
    settings = bench.settings(tag)
    asyncio.run(produce_lines(settings, bench.lines))
    worker = WorkerProcess(settings, bench.work / f"{tag}.log", command)
    worker.start(wait_ready=False)
    try:
        deadline = time.monotonic() + 1800
        while not asyncio.run(committed_everything(settings)):
            if not worker.running() or time.monotonic() > deadline:
                raise RuntimeError(f"{name} stopped or timed out; see {worker.log_path}")
            time.sleep(0.2)
        done = time.time()
        peak_rss_kb = _peak_rss_kb(worker.pid)
    finally:
        worker.stop()
    latest, first = asyncio.run(read_scores(settings))
    return len(bench.lines) / (done - first), peak_rss_kb, latest == bench.oracle


def _peak_rss_kb(pid: int | None) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")), 0)


def profile_run(bench: Bench, seconds: int) -> list[tuple[str, float]]:
    """py-spy on our worker while it scores the same events: self time per function."""
    settings = bench.settings(f"profile-{int(time.time())}")
    asyncio.run(produce_lines(settings, bench.lines))
    worker = WorkerProcess(settings, bench.work / "profile.log", IMPLEMENTATIONS["leadpulse worker"])
    worker.start()
    raw = bench.work / "profile.txt"
    try:
        subprocess.run(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(worker.pid),
                "--duration",
                str(seconds),
                "--format",
                "raw",
                "--output",
                str(raw),
                "--rate",
                "200",
                "--nonblocking",
            ],
            check=True,
            capture_output=True,
        )
    finally:
        worker.stop()
    self_time: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        self_time[stack.split(";")[-1]] += int(count)
    total = sum(self_time.values())
    return [(frame, n / total) for frame, n in self_time.most_common(15)]


def write_chart(medians: dict[str, float], path: Path) -> None:
    width, bar_height, gap = 640, 36, 16
    top = max(medians.values())
    rows = []
    for index, (name, rate) in enumerate(medians.items()):
        y = 40 + index * (bar_height + gap)
        length = int((width - 260) * rate / top)
        rows.append(
            f'<text x="10" y="{y + 23}" font-size="14">{name}</text>'
            f'<rect x="180" y="{y}" width="{length}" height="{bar_height}" fill="#3b7dd8"/>'
            f'<text x="{190 + length}" y="{y + 23}" font-size="14">{rate:,.0f} ev/s</text>'
        )
    height = 60 + len(medians) * (bar_height + gap)
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">'
        f'<text x="10" y="22" font-size="16">Pipeline throughput through Kafka (median events/s)</text>'
        + "".join(rows)
        + "</svg>\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store", default="rocksdb://")
    parser.add_argument("--profile", type=int, default=0, metavar="SECONDS", help="py-spy our worker this long")
    parser.add_argument("--broker", default=None, help="use this broker instead of starting one")
    parser.add_argument(
        "--accounts", type=int, default=0, help="contacts name one of this many companies (loads the account table)"
    )
    args = parser.parse_args()

    traffic = Traffic(
        seed=21, start_ms=now_ms() - 90 * DAY_MS, span_ms=80 * DAY_MS, contacts=args.contacts, accounts=args.accounts
    )
    lines = [orjson.dumps(event) for event in traffic.events(args.events)]
    rules = load_rules()
    run = score_lines(lines, rules)
    oracle = {view.contact_id: snapshot_record(view) for view in run.snapshots(None)}
    print(
        f"{len(lines):,} events ({sum(map(len, lines)) / len(lines):.0f} B avg), {len(oracle):,} contacts, "
        f"{args.partitions} partitions, store {args.store}, at-least-once",
        flush=True,
    )

    work = Path(tempfile.mkdtemp(prefix="leadpulse-bench-"))
    broker = None
    port = free_port()
    if args.broker is None:
        broker = LocalBroker(port, work / "kafka")
        broker.start()
    base = Settings(
        broker=args.broker or f"kafka://127.0.0.1:{port}",
        partitions=args.partitions,
        store=args.store,
        web_port=free_port(),
        cooling_interval_s=0.0,
    )
    bench = Bench(lines, oracle, base, work)
    rates: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    try:
        for attempt in range(args.runs):
            for name, command in IMPLEMENTATIONS.items():
                tag = f"{'ours' if name.startswith('leadpulse') else 'naive'}-{attempt}-{int(time.time())}"
                rate, rss_kb, equal = one_run(bench, name, command, tag)
                rates[name].append(rate)
                print(
                    f"  run {attempt + 1} {name:<18} {rate:>8,.0f} events/s  peak RSS {rss_kb / 1024:,.0f} MiB  "
                    f"oracle {'equal' if equal else 'DIFFERENT'}",
                    flush=True,
                )
                if not equal:
                    raise SystemExit(f"{name}: final contact-scores differ from the offline scorer")
        medians = {name: statistics.median(values) for name, values in rates.items()}
        ours, naive = medians["leadpulse worker"], medians["naive Faust agent"]
        print(f"median: leadpulse {ours:,.0f} events/s, naive {naive:,.0f} events/s, ratio {ours / naive:.2f}x")
        write_chart(medians, RESULTS / "pipeline.svg")
        print(f"chart: {RESULTS / 'pipeline.svg'}")
        if args.profile:
            print(f"py-spy, {args.profile}s of our worker, self time:")
            for frame, share in profile_run(bench, args.profile):
                print(f"  {share:6.1%}  {frame}")
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
