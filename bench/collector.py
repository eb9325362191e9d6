"""Load on `leadpulse collect`: Segment batch calls through the real HTTP server into a real
local broker (acks=all), counted only when answered 200 with every message accepted.

    python -m bench.collector [--requests 1000] [--batch 100] [--concurrency 16] [--runs 3]

Each run sends a fixed number of `POST /v1/batch` requests (bounded: it stops by itself)
from `--concurrency` aiohttp clients to the collector, a process of its own on 127.0.0.1,
and prints requests/s, events/s and the latency percentiles of the answers; the summary is
the median of the runs. Client, collector and broker share the machine, so the figure is a
local one, for comparing versions, not a capacity plan.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from bench.broker import broker_url
from leadpulse.cli.processes import CollectorProcess, free_port
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.settings import Settings

WRITE_KEY = "bench-write-key-00001"
EVENTS = ("Email Opened", "Email Link Clicked", "Demo Requested", "Video Played", "Form Submitted")


@dataclass(frozen=True)
class RunResult:
    seconds: float
    requests: int
    events: int
    latencies_s: list[float]

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def batch_body(run: int, request: int, size: int, contacts: int) -> bytes:
    """A batch as analytics.js-style senders build it: tracks and pages with a context."""
    at = format_ms(now_ms() - 60_000)
    messages = []
    for i in range(size):
        serial = request * size + i
        user = f"user-{serial % contacts}@bench.io"
        message = {
            "type": "track" if i % 4 else "page",
            "messageId": f"r{run}-{serial}",
            "userId": user,
            "anonymousId": f"cookie-{serial % contacts}",
            "timestamp": at,
            "context": {"library": {"name": "bench"}, "page": {"path": "/pricing", "url": "https://acme.io/pricing"}},
            "properties": {"plan": "teams", "value": serial},
        }
        if message["type"] == "track":
            message["event"] = EVENTS[serial % len(EVENTS)]
        messages.append(message)
    return orjson.dumps({"batch": messages, "sentAt": at})


async def one_run(url: str, run: int, args: argparse.Namespace) -> RunResult:
    requests, size, concurrency = args.requests, args.batch, args.concurrency
    bodies = [batch_body(run, r, size, args.contacts) for r in range(requests)]
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
        "Content-Type": "application/json",
    }
    latencies: list[float] = []
    queue = iter(bodies)

    async def client(session: aiohttp.ClientSession) -> None:
        for body in queue:
            started = time.perf_counter()
            async with session.post("/v1/batch", data=body, headers=headers) as response:
                answer = await response.json(content_type=None)
            latencies.append(time.perf_counter() - started)
            if response.status != 200 or answer.get("accepted") != size:
                raise SystemExit(f"unexpected answer {response.status}: {answer}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return RunResult(seconds, requests, requests * size, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000, help="batch requests per run")
    parser.add_argument("--batch", type=int, default=100, help="messages per batch")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--contacts", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--broker", default=None, help="use this broker instead of starting one")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="leadpulse-bench-collector-"))
    keys = work / "write-keys"
    keys.write_text(WRITE_KEY + "\n")
    with broker_url(args.broker, work) as url:
        settings = Settings(
            broker=url,
            input_topic=f"bench-collector-{int(time.time())}",
            partitions=args.partitions,
            collect_port=free_port(),
            write_keys_file=keys,
        )
        collector = CollectorProcess(settings, work / "collector.log")
        collector.start()
        try:
            results = []
            for run in range(args.runs):
                result = asyncio.run(one_run(collector.base_url, run, args))
                results.append(result)
                print(
                    f"  run {run + 1}: {result.requests_per_s:,.0f} requests/s, {result.events_per_s:,.0f} events/s, "
                    f"latency p50 {result.percentile(0.5) * 1000:.1f} ms, p99 {result.percentile(0.99) * 1000:.1f} ms",
                    flush=True,
                )
        finally:
            collector.stop()
    print(
        f"median of {args.runs} ({args.requests} batches of {args.batch}, {args.concurrency} in flight): "
        f"{statistics.median(r.requests_per_s for r in results):,.0f} requests/s, "
        f"{statistics.median(r.events_per_s for r in results):,.0f} events/s, "
        f"p99 {statistics.median(r.percentile(0.99) for r in results) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
