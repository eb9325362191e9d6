"""Scale-out of the worker group on one machine: 1, 2 and 4 workers on 16 partitions (events/s
and CPU per event, every run's contact-scores checked against the offline scorer), then the
takeover after a `kill -9` of one of two workers, and the rebalance pause of a worker joining
and leaving, each with and without a standby replica.

    python -m bench.scaling [--events 100000] [--contacts 10000] [--partitions 16]
                            [--workers 1 2 4] [--rate 300] [--broker kafka://...]
                            [--parts throughput takeover rebalance]

Throughput runs are bench.pipeline's (`one_run`: events pre-loaded, ends when the group has
committed every input offset; CPU and peak RSS summed over the group). Takeover: two workers
score the events, then one is killed with SIGKILL; the figure is the time from the kill until
the survivor's /health says ready with every input partition assigned, which takes the
session timeout (LEADPULSE_SESSION_TIMEOUT, 10 s here) to notice the loss, the rebalance, and
the restore of the partitions it takes over: from their changelogs without a standby, from
its own warm copy with one. On a machine shared with the broker and the load generator the
events/s of several workers share the same cores: read CPU per event for the cost of
spreading, and the takeover times for the availability a standby buys.

Rebalance pause: one worker has scored the events; new ones arrive at `--rate` per second
(bench/steady.py); a second worker starts (1 -> 2), and once both serve, it stops with SIGTERM
(2 -> 1: it commits and leaves the group). From the contact-scores records' timestamps (the
moment the worker wrote them; a contact's partition is its input partition): the longest time
no partition produced anything (the whole group paused: from the last output before to the
first output after), and the longest time one partition waited (until the last partition is
processed again: a partition that moved restores its table first, from a standby's warm copy
or from its changelog). The same two figures over the 10 s before the join are the baseline
(gaps between events at that rate).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.broker import broker_url
from bench.pipeline import IMPLEMENTATIONS, OURS, Bench, committed_everything, one_run
from bench.reading import records_to_end
from bench.steady import SteadyProducer
from leadpulse.cli.kafka_clients import produce_lines
from leadpulse.cli.offline import score_lines
from leadpulse.cli.processes import WorkerProcess, free_port
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.schemas.outputs import snapshot_record
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings

TIMEOUT_S = 600
STEADY_S = 10  # of steady output before the join and after each change, for the gaps around it
PARTS = ("throughput", "takeover", "rebalance")
REBALANCE = {"before": "10 s before (baseline)", "join": "1 -> 2 workers (join)", "leave": "2 -> 1 (SIGTERM)"}


def takeover(bench: Bench, standby: int) -> float:
    """Seconds from a `kill -9` of one of two workers until the other serves every partition."""
    tag = f"takeover-standby{standby}-{int(time.time())}"
    settings = replace(bench.settings(tag), standby_replicas=standby)
    asyncio.run(produce_lines(settings, bench.lines))
    group = [replace(settings, data_dir=settings.data_dir / f"worker-{i}", web_port=free_port()) for i in range(2)]
    processes = [WorkerProcess(one, bench.work / f"{tag}-{i}.log") for i, one in enumerate(group)]
    try:
        for process in processes:
            process.start(wait_ready=False)
        deadline = time.monotonic() + TIMEOUT_S
        while not asyncio.run(committed_everything(settings)):
            if time.monotonic() > deadline or not all(p.running() for p in processes):
                raise RuntimeError(f"the group did not score the events; see {bench.work}")
            time.sleep(0.2)
        survivor, victim = processes
        if not _serves_all(survivor, settings, deadline=time.monotonic() + 60, every=False):
            raise RuntimeError("the survivor never became ready before the kill")
        assert victim.process is not None
        killed = time.monotonic()
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(10)
        if not _serves_all(survivor, settings, deadline=killed + TIMEOUT_S, every=True):
            raise RuntimeError(f"the survivor did not take over; see {survivor.log_path}")
        return time.monotonic() - killed
    finally:
        for process in processes:
            process.kill()


def _serves_all(worker: WorkerProcess, settings: Settings, *, deadline: float, every: bool) -> bool:
    """Whether `worker` gets ready (with every input partition, if `every`) before `deadline`."""
    topic = settings.input_topic
    while time.monotonic() < deadline:
        health = worker.health()
        if isinstance(health, dict) and health.get("status") == "ok":
            owned = {
                entry.rpartition(":")[2] for entry in health["assigned_partitions"] if entry.startswith(f"{topic}:")
            }
            if not every or len(owned) == settings.partitions:
                return True
        time.sleep(0.05)
    return False


@dataclass(frozen=True)
class Pause:
    """The longest gaps between outputs in a time window, in seconds."""

    none_processed_s: float  # no partition produced anything (the whole group paused)
    slowest_partition_s: float  # one partition produced nothing (until every partition is back)


def output_gaps(stamps: Iterable[tuple[int, int]], since_ms: int, until_ms: int) -> Pause:
    """The longest gaps between consecutive outputs (partition, timestamp in ms) that end
    after `since_ms` and begin before `until_ms`: a pause in progress at `since_ms` counts
    whole, from the last output before it."""

    def longest(times: list[int]) -> float:
        gaps = [later - earlier for earlier, later in pairwise(times) if later > since_ms and earlier < until_ms]
        return max(gaps, default=0) / 1000

    by_partition: dict[int, list[int]] = {}
    for partition, at_ms in stamps:
        by_partition.setdefault(partition, []).append(at_ms)
    every = sorted(at for times in by_partition.values() for at in times)
    return Pause(longest(every), max((longest(sorted(times)) for times in by_partition.values()), default=0.0))


def rebalance(bench: Bench, standby: int, rate: float, lines: list[bytes]) -> dict[str, Pause]:
    """The output gaps before, during a second worker's join and during its leave."""
    tag = f"rebalance-standby{standby}-{int(time.time())}"
    settings = replace(bench.settings(tag), standby_replicas=standby)
    asyncio.run(produce_lines(settings, bench.lines))
    group = [replace(settings, data_dir=settings.data_dir / f"worker-{i}", web_port=free_port()) for i in range(2)]
    first, second = (WorkerProcess(one, bench.work / f"{tag}-{i}.log") for i, one in enumerate(group))
    steady = SteadyProducer(settings, lines, rate)
    try:
        first.start(wait_ready=False)
        deadline = time.monotonic() + TIMEOUT_S
        while not asyncio.run(committed_everything(settings)):
            if time.monotonic() > deadline or not first.running():
                raise RuntimeError(f"the first worker did not score the events; see {first.log_path}")
            time.sleep(0.2)
        steady.start()
        _steady_for(steady, rate)  # the first outputs of the new events are no part of the baseline
        _steady_for(steady, rate)
        joined_ms = now_ms()
        second.start(wait_ready=False)
        for worker in (first, second):
            if not _serves_all(worker, settings, deadline=time.monotonic() + TIMEOUT_S, every=False):
                raise RuntimeError(f"the group did not settle after the join; see {worker.log_path}")
        _steady_for(steady, rate)
        left_ms = now_ms()
        second.stop()
        if not _serves_all(first, settings, deadline=time.monotonic() + TIMEOUT_S, every=True):
            raise RuntimeError(f"the first worker did not take every partition back; see {first.log_path}")
        _steady_for(steady, rate)
        ended_ms = now_ms()
    finally:
        steady.stop()
        for worker in (first, second):
            worker.kill()
    stamps = asyncio.run(_output_stamps(settings))
    return {
        "before": output_gaps(stamps, joined_ms - STEADY_S * 1000, joined_ms),
        "join": output_gaps(stamps, joined_ms, left_ms),
        "leave": output_gaps(stamps, left_ms, ended_ms),
    }


def _steady_for(steady: SteadyProducer, rate: float) -> None:
    """Until STEADY_S more seconds' worth of events are acknowledged."""
    target = steady.acknowledged + int(rate * STEADY_S)
    deadline = time.monotonic() + 6 * STEADY_S
    while steady.acknowledged < target:
        if time.monotonic() > deadline or steady.done.is_set():
            raise RuntimeError("the steady producer fell behind or ran out of events")
        time.sleep(0.1)


async def _output_stamps(settings: Settings) -> list[tuple[int, int]]:
    """(partition, timestamp ms) of every contact-scores record."""
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topic("contact-scores"), p) for p in range(settings.partitions)]
        stamps: list[tuple[int, int]] = []
        async for tp, records in records_to_end(consumer, partitions):
            stamps.extend((tp.partition, record.timestamp) for record in records)
        return stamps
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rate", type=float, default=300, help="events/s during the rebalance runs")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure (default: all)")
    parser.add_argument("--broker", default=None, help="use this broker instead of starting one")
    args = parser.parse_args()

    traffic = Traffic(seed=21, start_ms=now_ms() - 90 * DAY_MS, span_ms=80 * DAY_MS, contacts=args.contacts)
    lines = [orjson.dumps(event) for event in traffic.events(args.events)]
    arriving = [orjson.dumps(event) for event in traffic.events(int(args.rate * 20 * STEADY_S))]
    offline = score_lines(lines, load_rules())
    oracle = {view.contact_id: snapshot_record(view) for view in offline.snapshots(None)}
    print(f"{len(lines):,} events, {len(oracle):,} contacts, {args.partitions} partitions, RocksDB", flush=True)
    work = Path(tempfile.mkdtemp(prefix="leadpulse-scaling-"))
    with broker_url(args.broker, work) as url:
        base = Settings(broker=url, partitions=args.partitions, web_port=free_port(), cooling_interval_s=0.0)
        bench = Bench(lines, oracle, base, work)
        rates = {}
        for workers in args.workers if "throughput" in args.parts else ():
            tag = f"scale-{workers}-{int(time.time())}"
            run = one_run(bench, OURS, IMPLEMENTATIONS[OURS], tag, workers=workers)
            if not run.equal:
                raise SystemExit(f"{workers} workers: contact-scores differ from the offline scorer: {run.difference}")
            rates[workers] = run.rate
            print(
                f"  {workers} worker{'s' if workers > 1 else ' '}  {run.rate:>7,.0f} events/s "
                f"({run.rate / rates[args.workers[0]]:.2f}x)  {run.cpu_us:>5.0f} µs CPU/event  "
                f"peak RSS {run.peak_rss_kb / 1024:,.0f} MiB (all)  oracle equal",
                flush=True,
            )
        for standby in (1, 0) if "takeover" in args.parts else ():
            seconds = takeover(bench, standby)
            print(
                f"  takeover after kill -9 of 1 of 2 workers, standby replicas {standby}: {seconds:.1f} s", flush=True
            )
        for standby in (1, 0) if "rebalance" in args.parts else ():
            pauses = rebalance(bench, standby, args.rate, arriving)
            for what, pause in pauses.items():
                print(
                    f"  rebalance, standby replicas {standby}, {REBALANCE[what]}: no partition processed for "
                    f"{pause.none_processed_s:.1f} s, a partition waited up to {pause.slowest_partition_s:.1f} s",
                    flush=True,
                )


if __name__ == "__main__":
    main()
