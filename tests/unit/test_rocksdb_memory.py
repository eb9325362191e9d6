"""A partition's RocksDB database holds a bounded amount of writes in memory (and in its
write-ahead log): past its write buffers it flushes them to a table file (docs/guarantees.md#bounds)."""

import os

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from leadpulse.streams.tables import WRITE_BUFFER_BYTES, WRITE_BUFFERS, ErasingOptions


def test_writes_past_the_write_buffers_are_flushed_to_table_files_not_kept_in_memory(tmp_path):
    options = RocksDBOptions(use_rocksdict=True)  # as Faust makes them; Table swaps the class
    options.__class__ = ErasingOptions
    db = rocksdict.Rdict(str(tmp_path / "db"), options=options.as_options())
    value = b"v" * 400
    written = 0
    while written < 3 * WRITE_BUFFERS * WRITE_BUFFER_BYTES:
        key = os.urandom(16)
        db[key] = value + key
        written += len(key) + len(value) + 16
    db.flush_wal()
    files = {name: (tmp_path / "db" / name).stat().st_size for name in os.listdir(tmp_path / "db")}
    logs = sum(size for name, size in files.items() if name.endswith(".log"))
    db.close()
    assert any(name.endswith(".sst") for name in files), "nothing was flushed: the writes are all in memory"
    assert logs <= (WRITE_BUFFERS + 1) * WRITE_BUFFER_BYTES, f"{logs:,} bytes of write-ahead log"
