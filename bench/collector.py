"""Load on `leadpulse collect`: Segment batch calls through the real HTTP server into a real
local broker (acks=all), counted only when answered 200 with every message accepted.

    python -m bench.collector [--requests 1000] [--batch 100] [--concurrency 16] [--runs 3]
    python -m bench.collector --browser [--requests 5000] [--addresses N]

`--browser` sends what analytics.js sends from a page instead: one page call per request to
`/v1/p` with a browser key, an allowed `Origin`, a person's user agent and a `text/plain`
body, from `--addresses` client addresses (`X-Forwarded-For`, the collector set to trust
it; default: one per request). A request answered 429 (the address over its rate) is
counted apart: with `--addresses 1` the figure is the per-address limit at work.

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
BROWSER_KEY = "bench-browser-key-0001"
ORIGIN = "https://acme.io"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36"
EVENTS = ("Email Opened", "Email Link Clicked", "Demo Requested", "Video Played", "Form Submitted")


@dataclass(frozen=True)
class RunResult:
    seconds: float
    requests: int
    events: int
    latencies_s: list[float]
    limited: int = 0  # requests answered 429 (an address over its rate)

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


def page_body(run: int, request: int, contacts: int) -> bytes:
    """One page call as analytics.js posts it to /v1/p (the key also in the body)."""
    at = format_ms(now_ms() - 60_000)
    url = f"{ORIGIN}/pricing?utm_source=linkedin&utm_medium=cpc&utm_campaign=spring"
    page = {"path": "/pricing", "url": url, "referrer": "https://www.google.com/", "title": "Pricing", "search": ""}
    return orjson.dumps(
        {
            "type": "page",
            "messageId": f"ajs-r{run}-{request}",
            "anonymousId": f"cookie-{request % contacts}",
            "timestamp": at,
            "properties": page,
            "context": {
                "page": page,
                "campaign": {"source": "linkedin", "medium": "cpc", "name": "spring"},
                "userAgent": USER_AGENT,
                "library": {"name": "analytics.js", "version": "next-1.84.3"},
            },
            "writeKey": BROWSER_KEY,
            "sentAt": at,
        }
    )


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


async def one_run(url: str, run: int, args: argparse.Namespace) -> RunResult:
    requests, size, concurrency = args.requests, args.batch, args.concurrency
    if args.browser:
        size = 1
        addresses = args.addresses or requests
        bodies = [page_body(run, r, args.contacts) for r in range(requests)]
        common = {"Authorization": basic(BROWSER_KEY), "Content-Type": "text/plain", "Origin": ORIGIN}
        headers = [
            common
            | {"User-Agent": USER_AGENT, "X-Forwarded-For": f"127.{run}.{r % addresses // 256}.{r % addresses % 256}"}
            for r in range(requests)
        ]
        path = "/v1/p"
    else:
        bodies = [batch_body(run, r, size, args.contacts) for r in range(requests)]
        headers = [{"Authorization": basic(WRITE_KEY), "Content-Type": "application/json"}] * requests
        path = "/v1/batch"
    latencies: list[float] = []
    limited = 0
    queue = iter(zip(bodies, headers, strict=True))

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal limited
        for body, sent in queue:
            started = time.perf_counter()
            async with session.post(path, data=body, headers=sent) as response:
                answer = await response.json(content_type=None)
            latencies.append(time.perf_counter() - started)
            if response.status == 429 and args.browser:
                limited += 1
            elif response.status != 200 or answer.get("accepted") != size:
                raise SystemExit(f"unexpected answer {response.status}: {answer}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return RunResult(seconds, requests, (requests - limited) * size, latencies, limited)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000, help="batch requests per run")
    parser.add_argument("--batch", type=int, default=100, help="messages per batch")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--contacts", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--broker", default=None, help="use this broker instead of starting one")
    parser.add_argument("--browser", action="store_true", help="page calls from browsers to /v1/p")
    parser.add_argument("--addresses", type=int, default=0, help="--browser: client addresses (0: one a request)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="leadpulse-bench-collector-"))
    keys = work / "write-keys"
    keys.write_text(f"{WRITE_KEY}\n{BROWSER_KEY}  browser  origins={ORIGIN}\n")
    with broker_url(args.broker, work) as url:
        settings = Settings(
            broker=url,
            input_topic=f"bench-collector-{int(time.time())}",
            partitions=args.partitions,
            collect_port=free_port(),
            write_keys_file=keys,
            collect_forwarded_for=True,  # the bench's client addresses
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
                    f"latency p50 {result.percentile(0.5) * 1000:.1f} ms, p99 {result.percentile(0.99) * 1000:.1f} ms"
                    + (f", {result.limited} answered 429" if result.limited else ""),
                    flush=True,
                )
        finally:
            collector.stop()
    sent = f"{args.requests} page calls" if args.browser else f"{args.requests} batches of {args.batch}"
    print(
        f"median of {args.runs} ({sent}, {args.concurrency} in flight): "
        f"{statistics.median(r.requests_per_s for r in results):,.0f} requests/s, "
        f"{statistics.median(r.events_per_s for r in results):,.0f} events/s, "
        f"p99 {statistics.median(r.percentile(0.99) for r in results) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
