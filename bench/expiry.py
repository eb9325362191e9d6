"""What a batch's sweep of expired anonymous contacts costs (scoring/expiry.py), on RocksDB.

    python -m bench.expiry [--contacts 200000] [--runs 5]

Fills a RocksDB database (rocksdict, as the worker's contacts table) with `--contacts`
anonymous contacts, one page view each, all due, and their expiry index entries; then times
the sweeps a partition makes, each of `AGING_BATCH` contacts as the scoring agent runs it:
the index range read from its start, each contact read and decoded and checked, and one
write batch deleting its key and index entry. Prints the median time per sweep and per
contact, and how long a million due contacts take at one sweep per batch: the work a batch
adds, and the pace at which a backlog drains without stalling scoring.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import rocksdict

from leadpulse.scoring.engine import Event, apply, new_state
from leadpulse.scoring.expiry import AGING_BATCH, aging_entry, aging_key, aging_range, expired, indexed_due
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.state import from_bytes, to_bytes
from leadpulse.scoring.timeutil import parse_rfc3339_ms

START = parse_rfc3339_ms("2026-01-01T00:00:00Z")
PARTITION = 0


def fill(db: rocksdict.Rdict, contacts: int) -> int:
    """Every contact a cookie with one page view, all due; returns the clock they are due at."""
    rules = load_rules()
    batch = rocksdict.WriteBatch(raw_mode=True)
    for number in range(contacts):
        cookie = f"cookie-{number:09d}-7f3a9c1e"
        at = START + number
        view = Event(f"e{number}", "page_viewed", cookie, False, at, {"path": "/blog/post"}, anonymous_id=cookie)
        state = apply(new_state(cookie), view, rules).state
        batch.put(cookie.encode(), to_bytes(state))
        batch.put(aging_key(PARTITION, indexed_due(state, rules) or 0, cookie), b"")
        if number % 50_000 == 49_999:
            db.write(batch)
            batch = rocksdict.WriteBatch(raw_mode=True)
    db.write(batch)
    return START + contacts + 2 * rules.anonymous_after_ms


def sweep(db: rocksdict.Rdict, clock: int) -> int:
    """One partition's sweep in one batch: what ScoringAgent._expire and _store do to RocksDB."""
    rules = load_rules()
    start, end = aging_range(PARTITION, clock)
    batch = rocksdict.WriteBatch(raw_mode=True)
    swept = 0
    for key in db.keys(from_key=start):
        if not isinstance(key, bytes) or key >= end or swept >= AGING_BATCH:
            break
        _, contact_id = aging_entry(key)
        data = db.get(contact_id.encode())
        if data is not None and expired(from_bytes(data), clock, rules):
            batch.delete(contact_id.encode())
        batch.delete(key)
        swept += 1
    db.write(batch)
    return swept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-expiry-") as folder:
        options = rocksdict.Options(raw_mode=True)
        db = rocksdict.Rdict(folder, options=options)
        started = time.perf_counter()
        clock = fill(db, args.contacts)
        print(f"{args.contacts:,} due contacts stored in {time.perf_counter() - started:.1f} s")
        times = []
        for _ in range(args.runs):
            began = time.perf_counter()
            swept = sweep(db, clock)
            times.append(time.perf_counter() - began)
        median = statistics.median(times)
        print(
            f"sweep of {swept:,} contacts: {median * 1000:.1f} ms (median of {args.runs}: "
            + ", ".join(f"{t * 1000:.1f}" for t in times)
            + f"), {median / swept * 1e6:.1f} µs per contact; "
            f"a million due contacts: {1_000_000 / swept:.0f} sweeps, {1_000_000 / swept * median:.0f} s of work"
        )
        db.close()


if __name__ == "__main__":
    main()
