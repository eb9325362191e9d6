"""How fast a worker on an empty state folder rebuilds its contact table from the changelog,
and what the table costs in memory per million contacts.

    python -m bench.restore [--contacts 1000000] [--partitions 8] [--store rocksdb://] [--broker URL]

Writes N contact states (real states from the synthetic traffic, under new contact ids) to
the contact table's changelog, as a worker that had scored them would have left it, then
starts a worker on an empty state folder and sends one event per partition for a restored
contact. The worker reads the changelogs in bulk before Faust's recovery (streams/recovery.py)
and logs how long that took; Faust holds the inputs back until the table is recovered, so
the time to those events' snapshots, less the same time for a worker with an empty
changelog (measured in the same run), is the restore time. Each snapshot is checked against the offline engine
applied to the restored state: a worker that skipped the restore would score the event
alone. Prints the restore rate, the worker's RSS with and without the table, and the
state folder's size; then, as the ceiling to compare with, the rate of a plain consumer
writing the same changelog into one RocksDB database per partition with the worker's own
fetch sizes and write batches, without Faust around them.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import orjson
import rocksdict
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.broker import broker_url
from bench.reading import records_to_end
from leadpulse.cli.kafka_clients import produce_lines
from leadpulse.cli.offline import score_lines
from leadpulse.cli.processes import WorkerProcess, free_port
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.schemas.events import decode_event
from leadpulse.scoring.engine import apply, new_state, snapshot
from leadpulse.scoring.rules import Rules, load_rules
from leadpulse.scoring.state import ContactState, to_bytes
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.partitioning import home_partition
from leadpulse.streams.recovery import FETCH_BYTES, FETCH_RECORDS, PARTITION_FETCH_BYTES, write_records
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings
from leadpulse.streams.startup import changelog_topic, prepare_topics

PROGRESS_EVERY = 100_000


REBUILT = re.compile(r"rebuilt (.*?records/s\))")


@dataclass(frozen=True)
class Start:
    seconds: float  # worker start -> every probe's snapshot read back
    rss_kb: int  # the worker's resident memory then
    disk_bytes: int  # its state folder's size then
    rebuilt: str  # what the worker logged of its bulk read of the changelogs (streams/recovery.py)


def restored_states(count: int, rules: Rules) -> Iterator[ContactState]:
    """`count` states shaped like real ones: the traffic's contacts, cycled under new ids,
    with no input offsets (a restored contact's next event is new to it)."""
    traffic = Traffic(seed=5, start_ms=now_ms() - 60 * DAY_MS, span_ms=50 * DAY_MS, contacts=5_000)
    templates = list(score_lines((orjson.dumps(event) for event in traffic.events(50_000)), rules).contacts.values())
    for index in range(count):
        template = templates[index % len(templates)]
        yield replace(template, contact_id=f"restored-{index:08d}", positions={})


async def write_changelog(settings: Settings, states: Iterator[ContactState], count: int) -> None:
    """Keyed and partitioned as the worker writes its table (streams/tables.py)."""
    await prepare_topics(settings, create=True)
    topic = changelog_topic(settings)
    producer = AIOKafkaProducer(**client_options(settings), linger_ms=20, max_batch_size=512 * 1024, acks="all")
    await producer.start()
    try:
        pending = []
        for index, state in enumerate(states, 1):
            key = state.contact_id.encode()
            pending.append(
                await producer.send(topic, to_bytes(state), key=key, partition=home_partition(key, settings.partitions))
            )
            if index % PROGRESS_EVERY == 0 or index == count:
                await asyncio.gather(*pending)
                pending.clear()
                print(f"  changelog: {index:,}/{count:,} states written", flush=True)
    finally:
        await producer.stop()


def probes(states: list[ContactState]) -> list[bytes]:
    at = format_ms(now_ms())
    return [
        orjson.dumps(
            {
                "event_id": f"probe-{state.contact_id}",
                "type": "page_viewed",
                "contact_id": state.contact_id,
                "occurred_at": at,
                "properties": {"path": "/pricing"},
            }
        )
        for state in states
    ]


async def read_snapshots(
    settings: Settings, ids: set[str], timeout_s: float, worker: WorkerProcess
) -> dict[str, dict[str, object]]:
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    found: dict[str, dict[str, object]] = {}
    try:
        partitions = [TopicPartition(settings.topic("contact-scores"), p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        for tp, offset in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        while ids - found.keys():
            if time.monotonic() > deadline:
                raise SystemExit(f"no snapshot within {timeout_s:.0f} s for {sorted(ids - found.keys())[:3]}")
            if not worker.running():
                raise SystemExit(f"the worker exited before its snapshots: see {worker.log_path}")
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    if record.key.decode() in ids:
                        found[record.key.decode()] = orjson.loads(record.value)
    finally:
        await consumer.stop()
    return found


def start_worker(settings: Settings, work: Path, probed: list[ContactState], rules: Rules) -> Start:
    """Start a worker on an empty state folder, send the probes, and time their snapshots."""
    lines = probes(probed)
    worker = WorkerProcess(settings, work / f"{settings.app_id}.log")
    began = time.monotonic()
    worker.start(wait_ready=False)
    try:
        asyncio.run(produce_lines(settings, lines))
        found = asyncio.run(
            read_snapshots(settings, {state.contact_id for state in probed}, timeout_s=3600, worker=worker)
        )
        seconds = time.monotonic() - began
        rss_kb = _rss_kb(worker.pid)
    finally:
        worker.stop()
    for state, line in zip(probed, lines, strict=True):
        expected = apply(state, decode_event(line), rules).state
        at = max(expected.last_event_ms, expected.published_ms)
        if found[state.contact_id]["score"] != snapshot(expected, at, rules).score:
            raise SystemExit(f"{state.contact_id}: its snapshot is not its restored state's (see {worker.log_path})")
    disk = sum(path.stat().st_size for path in settings.data_dir.rglob("*") if path.is_file())
    rebuilt = REBUILT.findall(Path(worker.log_path).read_text(errors="replace"))
    return Start(seconds, rss_kb, disk, "; ".join(rebuilt) or "nothing")


async def plain_rebuild(settings: Settings, folder: Path) -> float:
    """Records per second of reading the contact changelog to its end and writing it into a
    RocksDB database per partition, with the worker's own fetch sizes and writes but no Faust
    around them: the ceiling of its restore."""
    partitions = [TopicPartition(changelog_topic(settings), p) for p in range(settings.partitions)]
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        enable_auto_commit=False,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        fetch_max_bytes=FETCH_BYTES,
    )
    await consumer.start()
    databases = {
        tp.partition: rocksdict.Rdict(str(folder / f"{tp.partition}.db"), options=rocksdict.Options(raw_mode=True))
        for tp in partitions
    }
    records = 0
    try:
        began = time.perf_counter()
        async for tp, fetched in records_to_end(consumer, partitions, max_records=FETCH_RECORDS):
            write_records(databases[tp.partition], fetched)
            records += len(fetched)
        return records / (time.perf_counter() - began)
    finally:
        await consumer.stop()
        for database in databases.values():
            database.close()


def _rss_kb(pid: int | None) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--store", default="rocksdb://")
    parser.add_argument("--broker", default=None, help="use this broker instead of starting one")
    args = parser.parse_args()
    rules = load_rules()
    work = Path(tempfile.mkdtemp(prefix="leadpulse-restore-"))
    with broker_url(args.broker, work) as url:
        base = Settings(
            broker=url, partitions=args.partitions, store=args.store, web_port=free_port(), cooling_interval_s=0.0
        )

        def settings(tag: str) -> Settings:
            name = f"restore-{tag}-{int(time.time())}"
            return replace(
                base, app_id=name, topic_prefix=f"{name}.", input_topic=f"{name}.events", data_dir=work / tag
            )

        # One restored contact per partition is probed; the empty worker gets the same ids.
        states = list(restored_states(args.contacts, rules))
        by_partition = {home_partition(state.contact_id.encode(), args.partitions): state for state in states}
        probed = [by_partition[p] for p in sorted(by_partition)]
        print(f"{args.contacts:,} contacts, {args.partitions} partitions, store {args.store}", flush=True)
        full = settings("full")
        asyncio.run(write_changelog(full, iter(states), len(states)))
        empty = settings("empty")
        asyncio.run(prepare_topics(empty, create=True))
        fresh = [new_state(state.contact_id) for state in probed]
        baseline = start_worker(empty, work, fresh, rules)
        restored = start_worker(full, work, probed, rules)
        (work / "plain").mkdir()
        plain = asyncio.run(plain_rebuild(full, work / "plain"))
    restore_s = max(restored.seconds - baseline.seconds, 1e-3)
    print(
        f"  empty changelog: ready and scoring in {baseline.seconds:.1f} s, RSS {baseline.rss_kb / 1024:,.0f} MiB\n"
        f"  {args.contacts:,} contacts: ready and scoring in {restored.seconds:.1f} s, "
        f"RSS {restored.rss_kb / 1024:,.0f} MiB, state folder {restored.disk_bytes / 1e6:,.0f} MB\n"
        f"  the worker's bulk read of the changelogs: {restored.rebuilt}\n"
        f"  restore: {args.contacts / restore_s:,.0f} records/s ({restore_s:.1f} s); table in memory: "
        f"{(restored.rss_kb - baseline.rss_kb) / 1024 * 1e6 / args.contacts:,.0f} MiB per million contacts\n"
        f"  a plain consumer writing RocksDB write batches (no Faust): {plain:,.0f} records/s, "
        f"{plain * restore_s / args.contacts:.1f}x the worker's restore"
    )


if __name__ == "__main__":
    main()
