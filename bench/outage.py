"""A broker outage in the middle of a stream, measured (not a test: tests/integration/
test_broker_outage.py asserts on a 30 s one).

    python -m bench.outage [--outage 300] [--events 20000] [--contacts 2000] [--port P]

Starts a broker of its own on a port below the ephemeral range (a client reconnecting to an
ephemeral port can connect to itself and hold the port), produces the events, starts a
worker, stops the broker once the worker has scored some, keeps it down for --outage
seconds and starts it again on the same port and data folder. Prints, for the outage: the
worker's log lines and bytes, its connection attempts (counted inside the worker process),
its CPU time; then the resume time (broker back -> first snapshot delivered) and whether the
final contact-scores equal the offline scorer's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from leadpulse.cli.kafka_clients import latest_by_key, produce_lines, read_topic
from leadpulse.cli.offline import score_lines
from leadpulse.cli.processes import LocalBroker, WorkerProcess, broker_port, free_port
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.schemas.outputs import snapshot_record
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.settings import Settings

COUNT_CONNECTS = "--count-connects"  # internal: run the worker, counting connection attempts into a file


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == COUNT_CONNECTS:
        counted_worker(Path(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.outage", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=300.0, help="seconds the broker stays down (default 300)")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--contacts", type=int, default=2_000)
    parser.add_argument(
        "--port", type=int, default=None, help="broker port (default: a free one below the ephemeral range)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (worker log, broker data)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lp-outage-"))
    try:
        run(args, work)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    broker = LocalBroker(port=args.port or broker_port(), data_dir=work / "kafka")
    settings = Settings(
        broker=f"kafka://127.0.0.1:{broker.port}",
        app_id="lp-outage-bench",
        topic_prefix="bench.",
        input_topic="bench.events",
        partitions=8,
        data_dir=work / "data",
        web_port=free_port(),
        cooling_interval_s=0.0,
        session_timeout_s=10.0,
    )
    traffic = Traffic(seed=31, start_ms=now_ms() - 60 * DAY_MS, span_ms=50 * DAY_MS, contacts=args.contacts)
    lines = [orjson.dumps(event) for event in traffic.events(args.events)]
    oracle = {view.contact_id: snapshot_record(view) for view in score_lines(lines, load_rules()).snapshots(None)}
    connects_file = work / "connects"
    command = [sys.executable, "-m", "bench.outage", COUNT_CONNECTS, str(connects_file)]
    worker = WorkerProcess(settings, work / "worker.log", command)
    broker.start()
    try:
        asyncio.run(produce_lines(settings, lines))
        worker.start()

        def scored() -> float:
            return worker.metric("leadpulse_events_total", 'outcome="scored"')

        def snapshots() -> float:
            return worker.metric("leadpulse_outputs_total", 'kind="snapshot"')

        wait_for(lambda: scored() >= min(1_000, args.events // 10), 120, 0.05)
        print(f"broker on 127.0.0.1:{broker.port}; stopping it with {scored():,.0f} of {args.events:,} events scored")
        assert worker.pid is not None
        start = Sample.take(worker.log_path, connects_file, worker.pid)  # the outage begins with the stop
        broker.stop()
        stopped = time.monotonic()
        while (left := args.outage - (time.monotonic() - stopped)) > 0:
            time.sleep(min(60.0, left))
            if not worker.running():
                raise RuntimeError(f"the worker exited during the outage; see {worker.log_path}")
            now = Sample.take(worker.log_path, connects_file, worker.pid)
            print(f"  down {now.at - start.at:5.0f} s: {now.minus(start)}", flush=True)
        end = Sample.take(worker.log_path, connects_file, worker.pid)
        before = snapshots()

        broker.start()
        back = time.monotonic()
        resumed = wait_for(lambda: snapshots() > before, 300, 0.1)
        resume_s = time.monotonic() - back
        equal = wait_for(lambda: latest_scores(settings) == oracle, 600, 1.0)
        complete_s = time.monotonic() - back
        outage = end.minus(start)
        down_s = end.at - start.at
        print(
            f"outage of {down_s:.0f} s: {outage}\n"
            f"  = {outage.lines / down_s * 60:.1f} lines/min, {outage.bytes / down_s * 3600 / 1e6:.2f} MB/h, "
            f"{outage.connects / down_s:.2f} connection attempts/s\n"
            f"resume: first snapshot delivered {resume_s:.1f} s after the broker was back"
            f"{'' if resumed else ' (NOT within 300 s)'}; contact-scores "
            f"{'equal to' if equal else 'DIFFERENT from'} the offline scorer after {complete_s:.1f} s; "
            f"worker {'running' if worker.running() else 'EXITED'}"
        )
        excerpt = outage_excerpt(worker.log_path, start.bytes, end.bytes)
        print("the worker's log during the outage" + (" (first and last 15 lines):" if len(excerpt) > 30 else ":"))
        for line in excerpt if len(excerpt) <= 30 else [*excerpt[:15], "  ...", *excerpt[-15:]]:
            print(f"  {line[:240]}")
    finally:
        worker.stop()
        broker.stop()


class Sample:
    """The worker's log size, connection attempts and CPU time at one moment."""

    def __init__(self, at: float, lines: int, size: int, connects: int, cpu_s: float) -> None:
        self.at, self.lines, self.bytes, self.connects, self.cpu_s = at, lines, size, connects, cpu_s

    @classmethod
    def take(cls, log: Path, connects_file: Path, pid: int) -> Sample:
        data = log.read_bytes()
        try:
            connects = int(connects_file.read_text() or 0)
        except (FileNotFoundError, ValueError):
            connects = 0
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        return cls(time.monotonic(), data.count(b"\n"), len(data), connects, cpu_s)

    def minus(self, start: Sample) -> Sample:
        return Sample(
            self.at - start.at,
            self.lines - start.lines,
            self.bytes - start.bytes,
            self.connects - start.connects,
            self.cpu_s - start.cpu_s,
        )

    def __str__(self) -> str:
        return (
            f"{self.lines:,} log lines, {self.bytes:,} bytes, {self.connects:,} connection attempts, "
            f"{self.cpu_s:.1f} s of worker CPU"
        )


def outage_excerpt(log: Path, start: int, end: int) -> list[str]:
    with log.open("rb") as file:
        file.seek(start)
        return file.read(end - start).decode(errors="replace").splitlines()


def latest_scores(settings: Settings) -> dict[str, Any]:
    async def collect() -> dict[str, Any]:
        topic = settings.topic("contact-scores")
        records = read_topic(settings, topic, from_beginning=True, idle_timeout_s=1.0)
        return latest_by_key([record async for record in records])

    return asyncio.run(collect())


def wait_for(condition: Callable[[], Any], timeout_s: float, interval_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True


def counted_worker(path: Path) -> None:
    """`leadpulse worker`, with every aiokafka connection attempt counted into `path`."""
    from aiokafka import conn

    attempts = [0]
    lock = threading.Lock()  # the consumer's client connects from its own thread
    connect = conn.AIOKafkaConnection.connect

    async def counted_connect(self: Any) -> Any:
        with lock:
            attempts[0] += 1
        return await connect(self)

    conn.AIOKafkaConnection.connect = counted_connect

    def write() -> None:
        while True:
            time.sleep(1.0)
            path.with_suffix(".tmp").write_text(str(attempts[0]))
            path.with_suffix(".tmp").replace(path)

    threading.Thread(target=write, name="count-connects", daemon=True).start()
    from leadpulse.cli.main import main as leadpulse

    sys.exit(leadpulse(["worker"]))


if __name__ == "__main__":
    main()
