"""Scale-out of the worker group on one machine: 1, 2 and 4 workers on 16 partitions (events/s
and CPU per event, every run's contact-scores checked against the offline scorer), then the
takeover after a `kill -9` of one of two workers, with and without a standby replica.

    python -m bench.scaling [--events 100000] [--contacts 10000] [--partitions 16]
                            [--workers 1 2 4] [--broker kafka://...]

Throughput runs are bench.pipeline's (`one_run`: events pre-loaded, ends when the group has
committed every input offset; CPU and peak RSS summed over the group). Takeover: two workers
score the events, then one is killed with SIGKILL; the figure is the time from the kill until
the survivor's /health says ready with every input partition assigned, which takes the
session timeout (LEADPULSE_SESSION_TIMEOUT, 10 s here) to notice the loss, the rebalance, and
the restore of the partitions it takes over: from their changelogs without a standby, from
its own warm copy with one. On a machine shared with the broker and the load generator the
events/s of several workers share the same cores: read CPU per event for the cost of
spreading, and the takeover times for the availability a standby buys.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import orjson

from bench.broker import broker_url
from bench.pipeline import IMPLEMENTATIONS, OURS, Bench, committed_everything, one_run
from leadpulse.cli.kafka_clients import produce_lines
from leadpulse.cli.offline import score_lines
from leadpulse.cli.processes import WorkerProcess, free_port
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.schemas.outputs import snapshot_record
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.settings import Settings

TIMEOUT_S = 600


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--broker", default=None, help="use this broker instead of starting one")
    args = parser.parse_args()

    traffic = Traffic(seed=21, start_ms=now_ms() - 90 * DAY_MS, span_ms=80 * DAY_MS, contacts=args.contacts)
    lines = [orjson.dumps(event) for event in traffic.events(args.events)]
    offline = score_lines(lines, load_rules())
    oracle = {view.contact_id: snapshot_record(view) for view in offline.snapshots(None)}
    print(f"{len(lines):,} events, {len(oracle):,} contacts, {args.partitions} partitions, RocksDB", flush=True)
    work = Path(tempfile.mkdtemp(prefix="leadpulse-scaling-"))
    with broker_url(args.broker, work) as url:
        base = Settings(broker=url, partitions=args.partitions, web_port=free_port(), cooling_interval_s=0.0)
        bench = Bench(lines, oracle, base, work)
        rates = {}
        for workers in args.workers:
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
        for standby in (1, 0):
            seconds = takeover(bench, standby)
            print(
                f"  takeover after kill -9 of 1 of 2 workers, standby replicas {standby}: {seconds:.1f} s", flush=True
            )


if __name__ == "__main__":
    main()
