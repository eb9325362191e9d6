"""Table recovery from the changelogs in bulk (streams/recovery.py), on the real broker: a
worker killed in the middle of the rebuild resumes from what it wrote, and ends with exactly
what the changelog says, key for key."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from pathlib import Path

import pytest
import rocksdict
from aiokafka import AIOKafkaProducer

from leadpulse.scoring.engine import new_state
from leadpulse.scoring.state import to_bytes
from leadpulse.streams.partitioning import home_partition
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings
from leadpulse.streams.startup import TABLE, changelog_topic, prepare_topics
from tests.integration.harness import read_all, wait_for

pytestmark = pytest.mark.integration
OFFSET_KEY = b"__faust\0offset__"  # where Faust's RocksDB store keeps a partition's changelog offset
PROGRESS = "rebuilding tables:"  # logged after each tenth of the rebuild
REBUILT = re.compile(r"rebuilt ([\d,]+) table records")


def changelog_records(contacts: int) -> list[tuple[bytes, bytes | None]]:
    """Every contact once, then a newer state for one in ten and a tombstone for one in a
    hundred: the rebuild must end with the last value of each key, and without the deleted."""
    first = [(f"c{i:07d}".encode(), to_bytes(replace(new_state(f"c{i:07d}"), published_ms=1))) for i in range(contacts)]
    newer = [(key, to_bytes(replace(new_state(key.decode()), published_ms=2))) for key, _ in first[::10]]
    deleted: list[tuple[bytes, bytes | None]] = [(key, None) for key, _ in first[5::100]]
    return [*first, *newer, *deleted]


async def write_changelog(settings: Settings, records: list[tuple[bytes, bytes | None]]) -> None:
    """Keyed and partitioned as the worker writes its table."""
    await prepare_topics(settings, create=True)
    producer = AIOKafkaProducer(**client_options(settings), linger_ms=20, max_batch_size=512 * 1024, acks="all")
    await producer.start()
    try:
        topic = changelog_topic(settings)
        sends = [
            await producer.send(topic, value, key=key, partition=home_partition(key, settings.partitions))
            for key, value in records
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


def table_contents(data_dir: Path, partitions: int) -> tuple[dict[bytes, bytes], dict[int, int]]:
    """The contact table as the worker left it on disk (it must not be running): every key's
    value, and each partition's stored changelog offset."""
    contents: dict[bytes, bytes] = {}
    offsets: dict[int, int] = {}
    for partition in range(partitions):
        for path in data_dir.glob(f"**/{TABLE}-{partition}.db"):
            db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
            try:
                for key, value in db.items():
                    if key == OFFSET_KEY:
                        offsets[partition] = int(value)
                    else:
                        contents[key] = value
            finally:
                db.close()
    return contents, offsets


def test_a_worker_killed_while_rebuilding_its_table_resumes_and_ends_with_the_changelogs_contents(
    make_settings, workers
):
    settings = make_settings(store="rocksdb://")
    records = changelog_records(100_000)
    asyncio.run(write_changelog(settings, records))
    expected: dict[bytes, bytes] = {}
    for key, value in read_all(settings, changelog_topic(settings), idle_s=1.0):
        assert key is not None
        if value is None:
            expected.pop(key, None)
        else:
            expected[key] = value
    assert len(expected) == 99_000

    worker = workers(settings, wait_ready=False)
    assert wait_for(lambda: PROGRESS in worker.log_path.read_text(errors="replace"), 120, 0.01)
    worker.kill()
    partial, offsets = table_contents(settings.data_dir, settings.partitions)
    written = sum(offset + 1 for offset in offsets.values())  # each partition's changelog starts at 0
    assert 0 < written < len(records), "the kill came after the last write: nothing tested"
    held: dict[bytes, set[bytes | None]] = {}
    for key, value in records:
        held.setdefault(key, set()).add(value)
    assert all(value in held[key] for key, value in partial.items())

    worker.start()  # ready: the table is recovered
    worker.stop()
    log = worker.log_path.read_text(errors="replace")
    rebuilt = [int(count.replace(",", "")) for count in REBUILT.findall(log)]
    assert rebuilt and rebuilt[-1] < len(records), f"the restart read the whole changelog again: {rebuilt}"
    contents, final_offsets = table_contents(settings.data_dir, settings.partitions)
    assert contents == expected
    assert all(final_offsets[p] >= offsets.get(p, -1) for p in range(settings.partitions))
