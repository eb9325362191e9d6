"""Latency of the worker at fixed input rates: from the moment an event is handed to the
producer to the moment its contact's snapshot is read back from `contact-scores`.

    python -m bench.latency [--rates 1000 5000] [--seconds 30] [--partitions 8] [--broker URL]
                            [--compiled] [--batch-within SECONDS...]

Each rate runs on a fresh worker and topics, after `--warm-up` seconds (3) at the same rate
whose probes are reported apart: the first second after a worker starts is slower
(bench/README.md). The traffic is the demo's (bench.pipeline's) generator, paced in 10 ms
ticks; one event in PROBE_EVERY goes to
a contact seen nowhere else (a probe), so the first snapshot of that contact follows that
event and no other. A hot lead of a batch is delivered before its snapshots (docs/guarantees.md),
so these figures bound the produce → hot-lead latency from above. The tail consumer waits at
most 5 ms per fetch. Prints p50/p95/p99/max per rate, and the worker's CPU per event sent
while the rate was held, and writes bench/results/latency.svg.
The issue's third rate is 70% of the worker's maximum: take it from `bench.pipeline` of the
same build. `--compiled` runs the worker on the compiled build (mypyc; bench/compiled.py);
`--batch-within` sets how long a batch waits to fill (LEADPULSE_BATCH_WITHIN, the settings'
default unless given), the worker's trade between events per batch and latency; given several
values, every rate runs with each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from itertools import product
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from bench.broker import broker_url
from bench.compiled import compiled_env, compiled_tree, require_compiled_worker
from bench.pipeline import cpu_seconds_of
from leadpulse.cli.kafka_clients import ensure_topic, input_producer
from leadpulse.cli.processes import WorkerProcess, free_port
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings

RESULTS = Path(__file__).parent / "results"
PROBE_EVERY = 20
TICK_S = 0.01


@dataclass(frozen=True)
class Latencies:
    rate: int
    within: float  # the batch window, seconds
    achieved: float  # events/s actually handed to the producer
    millis: list[float]  # per probe read back
    probes: int  # probes sent
    cpu_us: float  # the worker's CPU per event sent, while the rate was held
    warm_up: float  # seconds sent at the rate before the measured span
    warm_millis: list[float]  # per probe of the warm-up read back

    def percentile(self, q: float, warm: bool = False) -> float:
        ordered = sorted(self.warm_millis if warm else self.millis)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def measure(
    settings: Settings, rate: int, seconds: float, tag: str, *, worker: int | None, warm_up: float
) -> Latencies:
    """Send at `rate` for `warm_up` seconds, then for `seconds` more, measured: latency of the
    probes sent then, and the `worker` process's CPU over that span (its lag behind the
    producer, ~0.1 s, is not counted). The warm-up's probes are read back too, apart."""
    traffic = Traffic(seed=rate, start_ms=now_ms() - 30 * DAY_MS, span_ms=29 * DAY_MS, contacts=20_000)
    events = traffic.events(int(rate * (warm_up + seconds)) + rate)
    sent: dict[bytes, float] = {}
    received: dict[bytes, float] = {}
    warm: set[bytes] = set()  # probes sent during the warm-up
    tail = AIOKafkaConsumer(
        settings.topic("contact-scores"), **client_options(settings), auto_offset_reset="latest", fetch_max_wait_ms=5
    )
    await tail.start()
    await tail.getmany(timeout_ms=1000)  # joined and positioned before the first probe
    producer = input_producer(settings)
    await producer.start()
    reader = asyncio.create_task(_read_probes(tail, received, tag))
    started = time.monotonic()
    count, cpu_before = 0, 0.0
    measured_from: int | None = None  # events sent before the measured span
    try:
        while (elapsed := time.monotonic() - started) < warm_up + seconds:
            if elapsed >= warm_up and measured_from is None:
                measured_from, cpu_before = count, cpu_seconds_of(worker)
            due = int(elapsed * rate) + 1  # events owed by now: a burst per tick
            while count < due:
                count += 1
                probe = count % PROBE_EVERY == 0
                event = _probe(next(events), f"{tag}-{count}") if probe else next(events)
                key = str(event.get("contact_id") or event.get("anonymous_id")).encode()
                if probe:
                    sent[key] = time.monotonic()
                    if elapsed < warm_up:
                        warm.add(key)
                await producer.send(settings.input_topic, orjson.dumps(event), key=key)
            await asyncio.sleep(TICK_S)
        measured = count - (measured_from or 0)
        achieved = measured / (time.monotonic() - started - warm_up)
        cpu_us = (cpu_seconds_of(worker) - cpu_before) * 1e6 / measured
        await producer.flush()
        deadline = time.monotonic() + 60
        while len(received.keys() & sent.keys()) < len(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        reader.cancel()
        await producer.stop()
        await tail.stop()
    millis = [(received[key] - at) * 1000 for key, at in sent.items() if key in received and key not in warm]
    warm_millis = [(received[key] - sent[key]) * 1000 for key in warm if key in received]
    return Latencies(
        rate, settings.batch_within_s, achieved, millis, len(sent) - len(warm), cpu_us, warm_up, warm_millis
    )


def _probe(event: dict[str, Any], name: str) -> dict[str, Any]:
    probe = {k: v for k, v in event.items() if k != "anonymous_id"}
    probe.update(event_id=f"probe-{name}", contact_id=f"probe-{name}")
    return probe


async def _read_probes(tail: AIOKafkaConsumer, received: dict[bytes, float], tag: str) -> None:
    prefix = f"probe-{tag}-".encode()
    while True:
        batches = await tail.getmany(timeout_ms=100)
        at = time.monotonic()
        for records in batches.values():
            for record in records:
                if record.key is not None and record.key.startswith(prefix):
                    received.setdefault(record.key, at)


def write_chart(results: list[Latencies], path: Path) -> None:
    """Grouped bars: p50, p95, p99 per rate, on a linear scale up to the largest p99."""
    width, height, left, bottom = 640, 320, 60, 270
    top = max(r.percentile(0.99) for r in results) or 1.0
    colours = {"p50": "#9cc3f0", "p95": "#3b7dd8", "p99": "#1d3f73"}
    group = (width - left - 20) / len(results)
    windows = len({result.within for result in results})
    parts = []
    for index, result in enumerate(results):
        for slot, (name, q) in enumerate((("p50", 0.5), ("p95", 0.95), ("p99", 0.99))):
            value = result.percentile(q)
            bar = (bottom - 40) * value / top
            x = left + index * group + 10 + slot * (group - 20) / 3
            y = bottom - bar
            parts.append(
                f'<rect x="{x:.0f}" y="{y:.0f}" width="{(group - 20) / 3 - 4:.0f}" height="{bar:.0f}" '
                f'fill="{colours[name]}"/><text x="{x:.0f}" y="{y - 4:.0f}" font-size="11">{value:.0f}</text>'
            )
        label = f"{result.rate:,} ev/s" + (f", {result.within * 1000:g} ms" if windows > 1 else "")
        parts.append(f'<text x="{left + index * group + 10:.0f}" y="{bottom + 18}" font-size="13">{label}</text>')
    legend = "".join(
        f'<rect x="{left + i * 70}" y="{height - 22}" width="12" height="12" fill="{c}"/>'
        f'<text x="{left + i * 70 + 16}" y="{height - 12}" font-size="12">{n}</text>'
        for i, (n, c) in enumerate(colours.items())
    )
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">'
        '<text x="10" y="22" font-size="16">Produce → snapshot latency (ms) at fixed input rates</text>'
        + "".join(parts)
        + legend
        + "</svg>\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=int, nargs="+", default=[1_000, 5_000], help="input events/s, one run each")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per rate")
    parser.add_argument(
        "--warm-up", type=float, default=3.0, metavar="SECONDS", help="sent at the rate before measuring, apart"
    )
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--broker", default=None, help="use this broker instead of starting one")
    parser.add_argument("--chart", type=Path, default=RESULTS / "latency.svg", help="where the chart goes")
    parser.add_argument("--compiled", action="store_true", help="run the worker on the compiled build (mypyc)")
    parser.add_argument(
        "--batch-within", type=float, nargs="+", default=[Settings.batch_within_s], metavar="SECONDS",
        help="batch windows to run each rate with",
    )  # fmt: skip
    args = parser.parse_args()
    tree = compiled_tree() if args.compiled else None

    work = Path(tempfile.mkdtemp(prefix="leadpulse-latency-"))
    with broker_url(args.broker, work) as url:
        base = Settings(
            broker=url,
            partitions=args.partitions,
            web_port=free_port(),
            cooling_interval_s=0.0,
            core="pure",  # unless --compiled, which gives the worker the build (compiled_env)
        )
        results = []
        for within, rate in product(args.batch_within, args.rates):
            tag = f"lat{rate}-{within * 1000:g}ms-{int(time.time())}".replace(".", "_")
            settings = replace(
                base,
                app_id=tag,
                topic_prefix=f"{tag}.",
                input_topic=f"{tag}.events",
                data_dir=work / tag,
                batch_within_s=within,
            )
            asyncio.run(ensure_topic(settings, settings.input_topic))
            worker = WorkerProcess(
                settings, work / f"{tag}.log", cwd=tree, env=None if tree is None else compiled_env(tree)
            )
            worker.start()
            if tree is not None:
                require_compiled_worker(worker.log_path, "the worker")
            try:
                result = asyncio.run(
                    measure(settings, rate, args.seconds, tag, worker=worker.pid, warm_up=args.warm_up)
                )
            finally:
                worker.stop()
            results.append(result)
            lost = result.probes - len(result.millis)
            print(
                f"  {rate:>6,} ev/s, window {within * 1000:g} ms (sent {result.achieved:,.0f}/s): "
                f"worker CPU {result.cpu_us:.0f} µs/event, {len(result.millis):,} probes, "
                f"p50 {result.percentile(0.5):.0f} ms, p95 {result.percentile(0.95):.0f} ms, "
                f"p99 {result.percentile(0.99):.0f} ms, max {max(result.millis):.0f} ms, "
                f"mean {statistics.fmean(result.millis):.0f} ms" + (f", {lost} probes never seen" if lost else ""),
                flush=True,
            )
            if result.warm_up:
                print(
                    f"      the {result.warm_up:g} s of warm-up after the worker's start (not counted): "
                    f"p50 {result.percentile(0.5, warm=True):.0f} ms, p99 {result.percentile(0.99, warm=True):.0f} ms, "
                    f"max {max(result.warm_millis, default=float('nan')):.0f} ms",
                    flush=True,
                )
        write_chart(results, args.chart)
        print(f"chart: {args.chart}")


if __name__ == "__main__":
    main()
