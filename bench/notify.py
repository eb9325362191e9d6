"""Alert-to-2xx latency of `leadpulse notify run` at a fixed alert rate, against a local
receiver: from an alert's `occurred_at` (stamped as it is handed to the producer) to the
moment a Standard Webhooks receiver on 127.0.0.1 has verified its signature and answers 200.

    python -m bench.notify [--rate 100] [--seconds 30] [--partitions 4] [--broker URL]

The hot-leads records are written straight to the topic (as the worker writes them, keyed
by contact), paced in 10 ms ticks, over `--contacts` contacts; the service runs as its own
process with one webhook destination and one route. Prints p50/p95/p99/max and how many
alerts never arrived (the run fails if any), and the notify process's CPU per alert and peak
resident size (what deploy/k8s/base/notify.yaml requests)."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from bench.broker import broker_url
from bench.pipeline import cpu_seconds_of, peak_rss_kb_of
from leadpulse.cli.kafka_clients import ensure_topic, input_producer
from leadpulse.cli.processes import NotifyProcess, free_port
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.settings import Settings

TICK_S = 0.01
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a fixed test secret (base64 of 24 bytes)


def hot_lead_record(
    contact: str, n: int, occurred_ms: int, *, score: int = 85, model: str = "default", segments: Sequence[str] = ()
) -> dict[str, Any]:
    """A hot-leads record with the fields the worker writes (schemas.outputs.hot_lead_record)."""
    return {
        "id": f"hot:{contact}:{n}",
        "kind": "hot_lead",
        "model": model,
        "contact_id": contact,
        "occurred_at": format_ms(occurred_ms),
        "cause_event_id": f"e-{contact}-{n}",
        "score": score,
        "fit": 80.0,
        "engagement": 88.0,
        "stage": "prospect",
        "rules_version": "bench-1",
        "reasons": [{"signal": "pricing_page", "part": "engagement", "points": 20.0}],
        "segments": list(segments),
        "interests": [],
    }


class Receiver:
    """Verifies each delivery as a receiver would and notes when the first copy of each id arrived."""

    def __init__(self) -> None:
        self.webhook = Webhook(SECRET)
        self.arrived: dict[str, int] = {}
        self.port = free_port()

    async def answer(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.webhook.verify(body, dict(request.headers))
        self.arrived.setdefault(request.headers["webhook-id"], now_ms())
        return web.Response(status=200)

    async def serve(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook", self.answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner


async def measure(settings: Settings, receiver: Receiver, rate: int, seconds: float, contacts: int) -> dict[str, int]:
    """Send rate·seconds alerts; returns each alert's id and occurred_ms."""
    topic = settings.topic("hot-leads")
    producer = input_producer(settings)
    await producer.start()
    sent: dict[str, int] = {}
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            while len(sent) < int(elapsed * rate) + 1:
                n = len(sent)
                occurred = now_ms()
                record = hot_lead_record(f"c{n % contacts}@bench.io", n, occurred)
                await producer.send(topic, orjson.dumps(record), key=record["contact_id"].encode())
                sent[record["id"]] = occurred
            await asyncio.sleep(TICK_S)
        await producer.flush()
    finally:
        await producer.stop()
    deadline = time.monotonic() + 30
    while len(receiver.arrived) < len(sent) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=100, help="alerts per second")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--contacts", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--broker", default=None, help="kafka://host:port (default: a local broker for the run)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, broker_url(args.broker, Path(work)) as url:
        tag = f"bench-notify-{int(time.time())}"
        settings = Settings(
            broker=url,
            app_id=tag,
            topic_prefix=f"{tag}.",
            input_topic=f"{tag}.events",
            partitions=args.partitions,
            notify_port=free_port(),
        )
        asyncio.run(ensure_topic(settings, settings.topic("hot-leads")))
        receiver = Receiver()
        (Path(work) / "secret.key").write_text(SECRET)
        config = Path(work) / "notify.toml"
        config.write_text(
            f'cooldown = "off"\n[destinations.bench]\nkind = "webhook"\nurl = "http://127.0.0.1:{receiver.port}/hook"\n'
            f'secret_file = "secret.key"\nrate_per_s = 1000\n[[routes]]\nto = ["bench"]\n'
        )
        notify = NotifyProcess(settings, config, Path(work) / "notify.log")
        notify.start()
        try:
            cpu_before, began = cpu_seconds_of(notify.pid), time.monotonic()
            sent, arrived = asyncio.run(_run(settings, receiver, args))
            cpu_s, wall_s = cpu_seconds_of(notify.pid) - cpu_before, time.monotonic() - began
            peak_kb = peak_rss_kb_of(notify.pid)
        finally:
            notify.stop()
    latencies = sorted(arrived[i] - occurred for i, occurred in sent.items() if i in arrived)
    lost = len(sent) - len(latencies)
    if not latencies:
        raise SystemExit(f"no alert arrived of {len(sent)} sent")

    def at(q: float) -> int:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    print(
        f"{args.rate} alerts/s for {args.seconds:g} s ({len(sent)} alerts over {args.contacts} contacts, "
        f"{args.partitions} partitions): alert to 2xx p50 {at(0.5)} ms, p95 {at(0.95)} ms, p99 {at(0.99)} ms, "
        f"max {latencies[-1]} ms; never arrived: {lost}"
    )
    print(
        f"notify process: {cpu_s * 1e6 / len(sent):,.0f} µs CPU per alert, {cpu_s / wall_s:.0%} of a core "
        f"over the run; peak RSS {peak_kb / 1024:,.0f} MiB"
    )
    if lost:
        raise SystemExit(1)


async def _run(
    settings: Settings, receiver: Receiver, args: argparse.Namespace
) -> tuple[dict[str, int], dict[str, int]]:
    runner = await receiver.serve()
    try:
        sent = await measure(settings, receiver, args.rate, args.seconds, args.contacts)
    finally:
        await runner.cleanup()
    return sent, dict(receiver.arrived)


if __name__ == "__main__":
    main()
