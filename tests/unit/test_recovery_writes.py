"""The write behind the bulk table rebuild (streams/recovery.py): one RocksDB write batch per
fetch, holding the records and the offset Faust resumes from."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import rocksdict

from leadpulse.streams.recovery import write_records

OFFSET_KEY = b"__faust\0offset__"


class Record(NamedTuple):
    key: bytes
    value: bytes | None
    offset: int


def open_db(path: Path) -> rocksdict.Rdict:
    return rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))


def test_the_last_value_of_a_key_wins_a_tombstone_deletes_and_the_offset_is_the_last_records(tmp_path):
    db = open_db(tmp_path / "p0.db")
    db[b"gone"] = b"old"
    write_records(
        db,
        [Record(b"a", b"1", 10), Record(b"a", b"2", 11), Record(b"gone", None, 12), Record(b"b", b"3", 14)],
        OFFSET_KEY,
    )
    assert dict(db.items()) == {b"a": b"2", b"b": b"3", OFFSET_KEY: b"14"}
    db.close()


def test_without_an_offset_key_only_the_records_are_written(tmp_path):
    db = open_db(tmp_path / "p0.db")
    write_records(db, [Record(b"a", b"1", 3)])
    assert dict(db.items()) == {b"a": b"1"}
    db.close()


def test_a_write_batch_is_on_disk_whole_after_the_database_is_reopened(tmp_path):
    """A worker killed after a write finds records and offset together at its next start."""
    path = tmp_path / "p0.db"
    db = open_db(path)
    write_records(db, [Record(f"k{i}".encode(), b"v", i) for i in range(1000)], OFFSET_KEY)
    db.close()
    reopened = open_db(path)
    assert sum(1 for key, _ in reopened.items() if key != OFFSET_KEY) == 1000
    assert reopened[OFFSET_KEY] == b"999"
    reopened.close()
