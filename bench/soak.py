"""A soak run (not a test: minutes of a steady stream with faults, measured): two workers with
RocksDB state and one standby replica, events at a steady rate, a worker `kill -9` (and its
restart on the same data folder, as Kubernetes restarts a pod) every `--kill-every` minutes,
one broker restart; at the end every output equal to the offline scorer.

    python -m bench.soak [--minutes 30] [--rate 200] [--contacts 20000] [--partitions 8]
                         [--kill-every 5] [--sample 5] [--chart bench/results/soak.svg]

Every `--sample` seconds: each worker's resident size (VmRSS) and state folder size (its
RocksDB databases, on disk), and the group's input lag (records of the input topic beyond
its committed offsets). Prints them as a table (one row a minute) and an SVG chart; for each
fault, the peak lag after it and how long until the lag was back at its level before the
fault for good (`lag_recovery`); each worker process's peak RSS (a leak shows as peaks rising
from one process to the next: they live equally long); the state size after the warm-up and
at the end. Then it waits until the group has committed every input record and compares the
stream's outputs with the offline scorer's over the same events (bench/oracle.py, as the
fault tests do): contact-scores (latest per contact), the stage-change and hot-lead ids, no
dead letter. The run fails if any differs. The broker, the workers and this process share
the machine: on a machine shared with other work, say so with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson

from bench.oracle import Oracle
from bench.pipeline import RESULTS, input_lag, status_kb
from bench.steady import SteadyProducer
from leadpulse.cli.kafka_clients import latest_by_key, read_topic
from leadpulse.cli.processes import LocalBroker, WorkerProcess, broker_port, free_port
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.settings import Settings

WORKERS = 2
KILL = "kill -9"
BROKER = "broker restart"
WARM_UP_S = 60.0  # RSS and state size are compared from here on: the first minute loads every contact
BASELINE_S = 60.0  # the lag before a fault that counts as its level (at most back to the previous fault)
DRAIN_S = 900.0  # after the last event: the group commits everything, the outputs match the oracle


@dataclass(frozen=True)
class Fault:
    at_s: float
    kind: str  # KILL or BROKER
    worker: int = 0  # the worker killed (KILL)

    def __str__(self) -> str:
        return f"{KILL} worker-{self.worker}" if self.kind == KILL else BROKER


def fault_schedule(minutes: float, kill_every_min: float, workers: int = WORKERS) -> list[Fault]:
    """A kill every `kill_every_min` minutes (not at the end), each worker in turn, and one
    broker restart half-way between the two kills nearest the middle of the run (in the
    middle when there is at most one kill): faults never coincide."""
    kills: list[Fault] = []
    at = kill_every_min
    while at < minutes:
        kills.append(Fault(at * 60, KILL, len(kills) % workers))
        at += kill_every_min
    if len(kills) >= 2:
        middle = len(kills) // 2
        broker_at = (kills[middle - 1].at_s + kills[middle].at_s) / 2
    elif kills:
        broker_at = (kills[0].at_s + minutes * 60) / 2
    else:
        broker_at = minutes * 30
    return sorted([*kills, Fault(broker_at, BROKER)], key=lambda fault: fault.at_s)


@dataclass(frozen=True)
class Sample:
    at_s: float  # since the run's start
    lag: int | None  # input records beyond the group's committed offsets (None: unknown, broker away)
    rss_kb: tuple[int, ...]  # per worker (0 while it is down)
    state_bytes: tuple[int, ...]  # per worker: its data folder on disk
    sent: int  # events the broker acknowledged so far


@dataclass(frozen=True)
class Recovery:
    fault: Fault
    baseline: int  # the lag before the fault
    peak: int  # the highest lag after it (until the next fault)
    seconds: float | None  # until the lag is back to the baseline for good; None: not before the next fault
    unknown_s: float = 0.0  # from the first to the last sample after it with the lag unknown (the broker away)


def lag_recovery(samples: Sequence[Sample], faults: Sequence[Fault], floor: int) -> list[Recovery]:
    """For each fault: the lag's level before it (the highest of the last BASELINE_S, from the
    previous fault's recovery at most, and at least `floor`: the commit interval's worth of
    events), its peak until the next fault, and the time from the fault to the first sample
    after which the lag stays at or under that level until the next fault (an unknown lag
    counts as above)."""
    recoveries: list[Recovery] = []
    for index, fault in enumerate(faults):
        previous = 0.0
        if recoveries:
            last = recoveries[-1]
            previous = last.fault.at_s + (last.seconds if last.seconds is not None else float("inf"))
        following = faults[index + 1].at_s if index + 1 < len(faults) else float("inf")
        before = [s.lag for s in samples if max(previous, fault.at_s - BASELINE_S) <= s.at_s < fault.at_s]
        baseline = max([floor, *(lag for lag in before if lag is not None)])
        after = [s for s in samples if fault.at_s <= s.at_s < following]
        peak = max((s.lag for s in after if s.lag is not None), default=0)
        above = [s.at_s for s in after if s.lag is None or s.lag > baseline]
        settled = [s.at_s for s in after if not above or s.at_s > above[-1]]
        seconds = None if not settled else (settled[0] - fault.at_s if above else 0.0)
        unknown = [s.at_s for s in after if s.lag is None]
        recoveries.append(Recovery(fault, baseline, peak, seconds, unknown[-1] - unknown[0] if unknown else 0.0))
    return recoveries


@dataclass(frozen=True)
class Trend:
    """A size after the warm-up and at the end: medians of a few samples each."""

    early: float
    late: float

    @property
    def growth(self) -> float:
        return (self.late - self.early) / self.early if self.early else 0.0


def trend(samples: Sequence[Sample], size: Any, window: int = 6) -> Trend:
    """`size(sample)` (a total over the workers) over the first `window` samples after the
    warm-up and the last `window` samples."""
    steady = [size(s) for s in samples if s.at_s >= WARM_UP_S] or [size(s) for s in samples]
    return Trend(statistics.median(steady[:window]), statistics.median(steady[-window:]))


def process_peaks(samples: Sequence[Sample], faults: Sequence[Fault], worker: int) -> list[int]:
    """The peak RSS (KiB) of each process the worker ran, one per life between its kills: a
    leak shows as peaks that rise from one life to the next (each lives as long)."""
    kills = [fault.at_s for fault in faults if fault.kind == KILL and fault.worker == worker]
    bounds = pairwise([0.0, *kills, float("inf")])
    return [max((s.rss_kb[worker] for s in samples if start <= s.at_s < end), default=0) for start, end in bounds]


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (what the state takes on disk), 0 if it is missing."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile (a compaction)
                total += (Path(root) / name).stat().st_size
    return total


def table(samples: Sequence[Sample], every_s: float = 60.0) -> list[str]:
    """One row per `every_s` (the first sample at or after each mark), and the last sample."""
    rows = [
        "  minute   lag " + "".join(f"  RSS w{i} MiB  state w{i} MB" for i in range(WORKERS)) + "   events sent",
    ]
    mark = 0.0
    for sample in samples:
        if sample.at_s >= mark or sample is samples[-1]:
            lag = "-" if sample.lag is None else f"{sample.lag:,}"
            sizes = "".join(
                f"  {rss / 1024:>10,.0f}  {state / 1e6:>10,.1f}"
                for rss, state in zip(sample.rss_kb, sample.state_bytes, strict=True)
            )
            rows.append(f"  {sample.at_s / 60:>6.1f}  {lag:>5}{sizes}  {sample.sent:>12,}")
            while mark <= sample.at_s:
                mark += every_s
    return rows


def write_chart(samples: Sequence[Sample], faults: Sequence[Fault], path: Path) -> None:
    """Three panels over time (RSS, state size, lag), one line per worker, faults as marks."""
    width, panel, left = 720, 150, 70
    end_s = max(samples[-1].at_s, 1.0)
    series: list[tuple[str, str, list[list[float]]]] = [
        ("RSS, MiB", "", [[s.rss_kb[i] / 1024 for s in samples] for i in range(WORKERS)]),
        ("state on disk, MB", "", [[s.state_bytes[i] / 1e6 for s in samples] for i in range(WORKERS)]),
        ("input lag, records", "", [[float(s.lag or 0) for s in samples]]),
    ]
    colours = ("#3b7dd8", "#d8703b")
    parts = []
    for index, (title, _unit, lines) in enumerate(series):
        top = 30 + index * (panel + 40)
        high = max((value for line in lines for value in line), default=1.0) or 1.0
        parts.append(f'<text x="{left}" y="{top - 8}" font-size="13">{title} (max {high:,.0f})</text>')
        parts.append(
            f'<rect x="{left}" y="{top}" width="{width - left - 10}" height="{panel}" fill="none" stroke="#999"/>'
        )
        for fault in faults:
            x = left + (width - left - 10) * fault.at_s / end_s
            colour = "#c00" if fault.kind == BROKER else "#888"
            parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + panel}" stroke="{colour}"/>')
        for number, line in enumerate(lines):
            points = " ".join(
                f"{left + (width - left - 10) * s.at_s / end_s:.1f},{top + panel - panel * value / high:.1f}"
                for s, value in zip(samples, line, strict=True)
            )
            parts.append(f'<polyline fill="none" stroke="{colours[number]}" points="{points}"/>')
    height = 30 + len(series) * (panel + 40)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">'
        + "".join(parts)
        + f'<text x="{left}" y="{height - 8}" font-size="12">minutes 0-{end_s / 60:.0f}; grey: {KILL}, red: '
        f"{BROKER}; blue worker-0, orange worker-1</text></svg>\n"
    )


class Soak:
    """The broker, the workers, the producer and the samples of one run."""

    def __init__(self, args: argparse.Namespace, work: Path, lines: list[bytes]) -> None:
        self.args = args
        self.broker = LocalBroker(broker_port(), work / "kafka")
        tag = f"soak-{int(time.time())}"
        self.settings = Settings(
            broker=f"kafka://127.0.0.1:{self.broker.port}",
            app_id=tag,
            topic_prefix=f"{tag}.",
            input_topic=f"{tag}.events",
            partitions=args.partitions,
            data_dir=work / "data",
            cooling_interval_s=0.0,  # no timer outputs: the final tables are the offline scorer's
            standby_replicas=1,
        )
        self.workers = [
            WorkerProcess(
                replace(self.settings, data_dir=work / "data" / f"worker-{i}", web_port=free_port()),
                work / f"worker-{i}.log",
            )
            for i in range(WORKERS)
        ]
        self.producer = SteadyProducer(self.settings, lines, args.rate)
        self.samples: list[Sample] = []
        self.started = 0.0

    def sample(self) -> Sample:
        lag = asyncio.run(_lag_or_none(self.settings))
        taken = Sample(
            time.monotonic() - self.started,
            lag,
            tuple(status_kb(worker.pid, "VmRSS") if worker.running() else 0 for worker in self.workers),
            tuple(folder_bytes(worker.settings.data_dir) for worker in self.workers),
            self.producer.acknowledged,
        )
        self.samples.append(taken)
        return taken

    def inject(self, fault: Fault) -> None:
        if fault.kind == KILL:
            worker = self.workers[fault.worker]
            worker.kill()
            worker.start(wait_ready=False)  # on the same data folder, as a pod's restart with its volume
        else:
            self.broker.stop()
            self.broker.start()

    def run(self, faults: list[Fault]) -> dict[str, Any]:
        """Run the schedule, drain, and return the outputs (read before the broker stops)."""
        self.broker.start()
        try:
            for worker in self.workers:
                worker.start(wait_ready=False)
            self.started = time.monotonic()
            self.producer.start()
            pending = list(faults)
            end_s = self.args.minutes * 60
            while (now := time.monotonic() - self.started) < end_s:
                if pending and pending[0].at_s <= now:
                    fault = pending.pop(0)
                    print(f"  {now / 60:5.1f} min: {fault}", flush=True)
                    self.inject(fault)
                    continue
                self.sample()
                for worker in self.workers:
                    if not worker.running():
                        raise RuntimeError(f"a worker exited by itself; see {worker.log_path}")
                wake = min(self.samples[-1].at_s + self.args.sample, pending[0].at_s if pending else end_s)
                time.sleep(max(0.0, wake - (time.monotonic() - self.started)))
            if not self.producer.wait(DRAIN_S):
                raise RuntimeError("the producer did not get every event acknowledged")
            self.drain()
            return self.outputs()
        finally:
            self.producer.stop()
            for worker in self.workers:
                worker.stop()
            self.broker.stop()

    def drain(self) -> None:
        deadline = time.monotonic() + DRAIN_S
        while self.sample().lag != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the group did not commit every input record within {DRAIN_S:.0f} s")
            time.sleep(self.args.sample)

    def outputs(self) -> dict[str, Any]:
        async def read(topic: str) -> list[tuple[bytes | None, bytes | None]]:
            records = read_topic(self.settings, topic, from_beginning=True, idle_timeout_s=2.0)
            return [record async for record in records]

        scores, stages, hot, letters = (
            asyncio.run(read(self.settings.topic(name)))
            for name in ("contact-scores", "stage-changes", "hot-leads", "dead-letters")
        )
        return {
            "snapshots": latest_by_key(scores),
            "stage_change_ids": {orjson.loads(value)["id"] for _, value in stages if value},
            "hot_lead_ids": {orjson.loads(value)["id"] for _, value in hot if value},
            "dead_letters": len(letters),
        }


async def _lag_or_none(settings: Settings) -> int | None:
    try:
        return await asyncio.wait_for(input_lag(settings), 10)
    except Exception:  # the broker away (restarting): the lag is unknown, not an error of the run
        return None


def compare(outputs: dict[str, Any], oracle: Oracle) -> list[str]:
    """What differs between the stream's outputs and the offline scorer's (empty: equal)."""
    differences = []
    if outputs["snapshots"] != oracle.snapshots:
        keys = oracle.snapshots.keys() | outputs["snapshots"].keys()
        differ = {key for key in keys if outputs["snapshots"].get(key) != oracle.snapshots.get(key)}
        differences.append(f"contact-scores: {len(differ)} of {len(oracle.snapshots)} contacts differ")
    for name in ("stage_change_ids", "hot_lead_ids"):
        expected = getattr(oracle, name)
        if outputs[name] != expected:
            missing, extra = len(expected - outputs[name]), len(outputs[name] - expected)
            differences.append(f"{name}: {missing} missing, {extra} extra of {len(expected)}")
    if outputs["dead_letters"]:
        differences.append(f"{outputs['dead_letters']} dead letters")
    return differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=200, help="events/s")
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--kill-every", type=float, default=5, help="minutes between two kill -9")
    parser.add_argument("--sample", type=float, default=5, help="seconds between two samples")
    parser.add_argument("--chart", type=Path, default=RESULTS / "soak.svg")
    args = parser.parse_args()
    # The producer's clients here log every reconnect while the broker restarts (the workers'
    # logs are their own files); a send that fails for good is sent again (bench/steady.py).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    traffic = Traffic(seed=41, start_ms=now_ms() - 60 * DAY_MS, span_ms=50 * DAY_MS, contacts=args.contacts)
    lines = [orjson.dumps(event) for event in traffic.events(int(args.rate * args.minutes * 60))]
    oracle = Oracle(lines)
    faults = fault_schedule(args.minutes, args.kill_every)
    print(
        f"soak: {args.minutes:g} min at {args.rate:g} events/s ({len(lines):,} events, {len(oracle.snapshots):,} "
        f"contacts), {WORKERS} workers, {args.partitions} partitions, RocksDB, 1 standby replica; faults: "
        + ", ".join(f"{fault} at {fault.at_s / 60:.1f} min" for fault in faults),
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="leadpulse-soak-"))
    soak = Soak(args, work, lines)
    try:
        outputs = soak.run(faults)
    except BaseException:
        print(f"work folder kept: {work}")
        raise
    report(soak, faults, oracle, outputs)
    write_chart(soak.samples, faults, args.chart)
    print(f"chart: {args.chart}")
    shutil.rmtree(work, ignore_errors=True)
    if compare(outputs, oracle):
        raise SystemExit(1)


def report(soak: Soak, faults: list[Fault], oracle: Oracle, outputs: dict[str, Any]) -> None:
    samples = soak.samples
    print("\n".join(table(samples)))
    floor = int(soak.args.rate * 5)  # a few commit intervals' worth of events is no lag
    for recovery in lag_recovery(samples, faults, floor):
        back = "not before the next fault" if recovery.seconds is None else f"{recovery.seconds:.0f} s"
        unknown = f", unknown for {recovery.unknown_s:.0f} s" if recovery.unknown_s else ""
        print(
            f"  {recovery.fault} at {recovery.fault.at_s / 60:.1f} min: lag peaked at {recovery.peak:,} records "
            f"(level before {recovery.baseline:,}{unknown}); back to that level for good after {back}"
        )
    for worker in range(WORKERS):
        peaks = ", ".join(f"{kb / 1024:,.0f}" for kb in process_peaks(samples, faults, worker))
        print(f"  worker-{worker}: peak RSS of each of its processes (a kill -9 starts the next): {peaks} MiB")
    state = trend(samples, lambda s: sum(s.state_bytes) / 1e6)
    print(
        f"  state on disk, both workers: {state.early:,.1f} MB after the first minute, {state.late:,.1f} MB at "
        f"the end ({state.growth:+.0%})"
    )
    differences = compare(outputs, oracle)
    if differences:
        print("  outputs DIFFER from the offline scorer: " + "; ".join(differences))
    else:
        print(
            f"  every output equal to the offline scorer: {len(oracle.snapshots):,} contact-scores, "
            f"{len(oracle.stage_change_ids):,} stage changes, {len(oracle.hot_lead_ids):,} hot leads, no dead letter"
        )


if __name__ == "__main__":
    main()
