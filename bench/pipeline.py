"""Throughput of the whole pipeline through a real Kafka broker: our worker against its peers,
same events, same broker, interleaved runs. The peers run the same job with the same scoring
core: Quix Streams (bench/peers/quix.py), a hand-written aiokafka loop
(bench/peers/aiokafka_loop.py) and the naive per-event Faust agent (bench/naive.py).

    python -m bench.pipeline [--events 200000] [--contacts 20000] [--partitions 8] [--runs 3]
                             [--store rocksdb://] [--only NAME ...] [--profile SECONDS] [--compiled]
                             [--workers N]

A run pre-loads the events, starts the implementation and ends when its consumer group has
committed every input offset; its rate is events / (commit-complete time - first output
record time), its CPU per event the process's CPU time (user + system, start-up included)
over the events. CPU per event is the figure to steer by on a noisy machine. Every run's
final contact-scores is checked against the offline scorer (the oracle). Prints medians
and ratios against our worker, and writes bench/results/pipeline.svg. `--compiled` adds our
worker and the aiokafka loop on the compiled build (mypyc; bench/compiled.py), run from its own
folder; `--workers N`
adds our worker as a group of N processes (CPU time and peak RSS summed over the group).
"""

from __future__ import annotations

import argparse
import asyncio
import os
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

from bench.broker import broker_url
from bench.compiled import compiled_env, compiled_tree, require_compiled_worker
from bench.reading import records_to_end
from leadpulse.cli.kafka_clients import produce_lines
from leadpulse.cli.offline import score_lines
from leadpulse.cli.processes import WorkerProcess, free_port
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.schemas.outputs import snapshot_record
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings

RESULTS = Path(__file__).parent / "results"
OURS = "leadpulse worker"
LOOP = "aiokafka loop"
COMPILED = f"{OURS} compiled"
# --compiled runs these on the compiled core too: ours, and the peer the issue measures it against.
ON_COMPILED = (OURS, LOOP)
IMPLEMENTATIONS = {
    OURS: [sys.executable, "-m", "leadpulse", "worker"],
    "Quix Streams": [sys.executable, "-m", "bench.peers.quix"],
    LOOP: [sys.executable, "-m", "bench.peers.aiokafka_loop"],
    "naive Faust agent": [sys.executable, "-m", "bench.naive", "worker", "-l", "info"],
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    rate: float  # events/s
    cpu_us: float  # process CPU µs per event
    peak_rss_kb: int
    difference: str  # how the final contact-scores differ from the offline scorer's ("" if equal)

    @property
    def equal(self) -> bool:
        return not self.difference


async def committed_everything(settings: Settings) -> bool:
    return await input_lag(settings) == 0


async def input_lag(settings: Settings) -> int | None:
    """Records of the input topic beyond the worker group's committed offsets, summed over
    its partitions (a partition with none committed counts from its beginning); None while
    the group has committed nothing (or the broker does not tell yet)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    consumer = AIOKafkaConsumer(**client_options(settings))
    await admin.start()
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.input_topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(partitions)
        beginnings = await consumer.beginning_offsets(partitions)
        try:
            committed = await admin.list_consumer_group_offsets(settings.app_id)
        except GroupCoordinatorNotAvailableError:  # the group does not exist yet
            return None
        done = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
        if not done:  # no commit yet, or the coordinator still loading them after a broker restart
            return None
        return sum(int(ends[tp]) - int(done.get(tp, beginnings[tp])) for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()


async def read_scores(settings: Settings) -> tuple[dict[str, Any], float]:
    """Latest snapshot per contact and the timestamp (s) of the first snapshot record, read
    up to the end offsets (the implementation has stopped: they no longer move)."""
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    latest: dict[str, Any] = {}
    first_ms: float = float("inf")
    try:
        partitions = [TopicPartition(settings.topic("contact-scores"), p) for p in range(settings.partitions)]
        async for _, records in records_to_end(consumer, partitions):
            for record in records:
                first_ms = min(first_ms, record.timestamp)
                latest[record.key.decode()] = orjson.loads(record.value)
    finally:
        await consumer.stop()
    return latest, first_ms / 1000


def differences(latest: dict[str, Any], oracle: dict[str, Any], shown: int = 3) -> str:
    """How a run's contact-scores differ from the offline scorer's: counts, then the fields
    of the first few contacts that differ."""
    missing, extra = oracle.keys() - latest.keys(), latest.keys() - oracle.keys()
    differ = sorted(key for key in oracle.keys() & latest.keys() if latest[key] != oracle[key])
    lines = [f"{len(missing)} contacts missing, {len(extra)} extra, {len(differ)} differ"]
    lines += [f"  missing: {key}" for key in sorted(missing)[:shown]]
    for key in differ[:shown]:
        fields = sorted(
            name for name in oracle[key].keys() | latest[key].keys() if oracle[key].get(name) != latest[key].get(name)
        )
        lines.append(
            f"  {key}: "
            + "; ".join(f"{name} {latest[key].get(name)!r} != {oracle[key].get(name)!r}" for name in fields)
        )
    return "\n".join(lines)


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


def one_run(
    bench: Bench, name: str, command: list[str], tag: str, *, compiled: Path | None = None, workers: int = 1
) -> Run:
    """`compiled`: the folder of the compiled build, which the worker then imports from;
    `workers`: processes in the group (each its own state folder and web port), whose CPU
    time and peak RSS add up."""
    settings = bench.settings(tag)
    asyncio.run(produce_lines(settings, bench.lines))
    env = None if compiled is None else compiled_env(compiled)
    own = (
        [settings]
        if workers == 1
        else [
            replace(settings, data_dir=settings.data_dir / f"worker-{i}", web_port=free_port()) for i in range(workers)
        ]
    )
    processes = [
        WorkerProcess(one, bench.work / f"{tag}-{i}.log", command, cwd=compiled, env=env) for i, one in enumerate(own)
    ]
    for process in processes:
        process.start(wait_ready=False)
    try:
        deadline = time.monotonic() + 1800
        while not asyncio.run(committed_everything(settings)):
            stopped = [process for process in processes if not process.running()]
            if stopped or time.monotonic() > deadline:
                log = (stopped or processes)[0].log_path
                raise RuntimeError(f"{name} stopped or timed out; see {log}")
            time.sleep(0.2)
        done = time.time()
        peak_rss_kb = sum(peak_rss_kb_of(process.pid) for process in processes)
        cpu_s = sum(cpu_seconds_of(process.pid) for process in processes)
    finally:
        for process in processes:
            process.stop()
    for process in processes:
        if compiled is not None:
            require_compiled_worker(process.log_path, name)
    latest, first = asyncio.run(read_scores(settings))
    events = len(bench.lines)
    difference = "" if latest == bench.oracle else differences(latest, bench.oracle)
    return Run(events / (done - first), cpu_s * 1e6 / events, peak_rss_kb, difference)


def cpu_seconds_of(pid: int | None) -> float:
    """User + system CPU time of the process so far (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_kb_of(pid: int | None) -> int:
    """The process's peak resident set size so far (VmHWM), 0 once it is gone."""
    return status_kb(pid, "VmHWM")


def status_kb(pid: int | None, field: str) -> int:
    """A size from /proc/PID/status (VmRSS: resident now; VmHWM: its peak), in KiB; 0 once gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith(field + ":")), 0)


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
    parser.add_argument("--chart", type=Path, default=RESULTS / "pipeline.svg", help="where the chart goes")
    parser.add_argument("--only", nargs="+", choices=list(IMPLEMENTATIONS), help="run only these implementations")
    parser.add_argument("--profile", type=int, default=0, metavar="SECONDS", help="py-spy our worker this long")
    parser.add_argument("--compiled", action="store_true", help="also run our worker on the compiled build (mypyc)")
    parser.add_argument("--workers", type=int, default=1, help="also run our worker as a group of this many")
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
    offline = score_lines(lines, rules)
    oracle = {view.contact_id: snapshot_record(view) for view in offline.snapshots(None)}
    print(
        f"{len(lines):,} events ({sum(map(len, lines)) / len(lines):.0f} B avg), {len(oracle):,} contacts, "
        f"{args.partitions} partitions, store {args.store}, at-least-once",
        flush=True,
    )

    work = Path(tempfile.mkdtemp(prefix="leadpulse-bench-"))
    with broker_url(args.broker, work) as url:
        base = Settings(  # the pure core, but for the compiled variants (given the build: compiled_env)
            broker=url,
            partitions=args.partitions,
            store=args.store,
            web_port=free_port(),
            cooling_interval_s=0.0,
            core="pure",
        )
        run_all(Bench(lines, oracle, base, work), args)


def run_all(bench: Bench, args: argparse.Namespace) -> None:
    """Every chosen implementation, interleaved, `args.runs` times; then the medians and ratios."""
    chosen = {name: IMPLEMENTATIONS[name] for name in args.only or IMPLEMENTATIONS}
    tree = None
    if args.compiled:
        tree = compiled_tree()
        chosen.update({f"{name} compiled": IMPLEMENTATIONS[name] for name in ON_COMPILED})
    group = f"{OURS} x{args.workers}"
    if args.workers > 1:
        chosen[group] = IMPLEMENTATIONS[OURS]
    runs: dict[str, list[Run]] = {name: [] for name in chosen}
    for attempt in range(args.runs):
        for name, command in chosen.items():
            tag = f"{name.replace(' ', '-').lower()}-{attempt}-{int(time.time())}"
            workers = args.workers if name == group else 1
            compiled = tree if name.endswith(" compiled") else None
            run = one_run(bench, name, command, tag, compiled=compiled, workers=workers)
            runs[name].append(run)
            print(
                f"  run {attempt + 1} {name:<25} {run.rate:>8,.0f} events/s  {run.cpu_us:>6.0f} µs CPU/event  "
                f"peak RSS {run.peak_rss_kb / 1024:,.0f} MiB  oracle {'equal' if run.equal else 'DIFFERENT'}",
                flush=True,
            )
            if not run.equal:
                raise SystemExit(f"{name}: final contact-scores differ from the offline scorer: {run.difference}")
    medians = {name: statistics.median(r.rate for r in values) for name, values in runs.items()}
    cpu = {name: statistics.median(r.cpu_us for r in values) for name, values in runs.items()}
    print(f"medians of {args.runs} interleaved runs:")
    for name in chosen:
        print(f"  {name:<25} {medians[name]:>8,.0f} events/s  {cpu[name]:>6.0f} µs CPU/event")
    for ours in (OURS, COMPILED):
        if ours in chosen:
            print(f"{ours} against:")
            for name in chosen:
                if name != ours:
                    print(
                        f"  {name:<25} {medians[ours] / medians[name]:.2f}x its events/s, "
                        f"{cpu[ours] / cpu[name]:.2f}x its CPU per event"
                    )
    write_chart(medians, args.chart)
    print(f"chart: {args.chart}")
    if args.profile:
        print(f"py-spy, {args.profile}s of our worker, self time:")
        for frame, share in profile_run(bench, args.profile):
            print(f"  {share:6.1%}  {frame}")


if __name__ == "__main__":
    main()
