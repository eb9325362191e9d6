"""A worker's RocksDB databases hold a bounded amount of writes in memory (and in their
write-ahead logs): past its write buffers a database flushes them to a table file, and all of
them together stay within one budget however many partitions they are
(docs/guarantees.md#bounds)."""

import os
import time
from pathlib import Path

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from leadpulse.streams.tables import WRITE_BUFFER_BYTES, WRITE_BUFFERS, ErasingOptions, RocksDBMemory

VALUE = b"v" * 400


def open_database(path: Path, memory: RocksDBMemory) -> rocksdict.Rdict:
    options = RocksDBOptions(use_rocksdict=True)  # as Faust makes them; Table swaps the class
    options.__class__ = ErasingOptions
    options.memory = memory  # type: ignore[attr-defined]
    return rocksdict.Rdict(str(path), options=options.as_options())


def write(db: rocksdict.Rdict, total: int) -> None:
    written = 0
    while written < total:
        key = os.urandom(16)
        db[key] = VALUE + key
        written += len(key) + len(VALUE) + 16


def memtables(databases: list[rocksdict.Rdict]) -> int:
    """What the databases' memtables hold, as each database counts it (not the budget's own counter)."""
    return sum(db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0 for db in databases)


def test_writes_past_the_write_buffers_are_flushed_to_table_files_not_kept_in_memory(tmp_path):
    db = open_database(tmp_path / "db", RocksDBMemory(256 * 1024 * 1024))
    write(db, 3 * WRITE_BUFFERS * WRITE_BUFFER_BYTES)
    db.flush_wal()
    files = {name: (tmp_path / "db" / name).stat().st_size for name in os.listdir(tmp_path / "db")}
    logs = sum(size for name, size in files.items() if name.endswith(".log"))
    db.close()
    assert any(name.endswith(".sst") for name in files), "nothing was flushed: the writes are all in memory"
    assert logs <= (WRITE_BUFFERS + 1) * WRITE_BUFFER_BYTES, f"{logs:,} bytes of write-ahead log"


def test_the_memtables_of_many_partitions_together_are_flushed_back_within_the_workers_budget(tmp_path):
    budget, partitions = 64 * 1024 * 1024, 32
    memory = RocksDBMemory(budget)
    databases = [open_database(tmp_path / f"db-{partition}", memory) for partition in range(partitions)]
    try:
        # 3 MB a database, under each one's own write buffers, 1.5x the budget in all,
        # written the way a worker writes its partitions: a batch to each in turn
        for _ in range(15):
            for db in databases:
                write(db, 200 * 1024)
        # flushes run on RocksDB's background threads: on a busy machine they lag the writes
        deadline = time.monotonic() + 60
        while (held := memtables(databases)) > budget and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for db in databases:
            db.close()
    assert held <= budget, f"memtables hold {held:,} bytes against a budget of {budget:,}"
