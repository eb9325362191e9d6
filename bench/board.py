"""Benchmark of the lead board's read model: its size and ingest rate for a million contacts.

    python -m bench.board [--contacts 1000000] [--days 2] [--database FILE-or-postgresql://URL]

Feeds `Store.apply` what the worker publishes for `--contacts` contacts: a snapshot a day for
`--days` days (the second day moves every tenth contact up a temperature band: a change point
of its history), a stage change each and a hot-lead alert for one in twenty, in batches of
2,000 records per transaction as the board's consumer reads them (no Kafka: the board's
consumer reads far faster than one core writes the database). The records are real
snapshot, stage-change and hot-lead records of the scoring core, copied under other ids and
times. Prints records/s and contacts/s, the database's bytes (and per contact), and the time
of each page's query on the full model."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from leadpulse.board.model import DAY_MS
from leadpulse.board.store import Incoming, Store
from leadpulse.schemas.outputs import output_record, snapshot_record
from leadpulse.scoring.engine import Event, HotLead, Output, StageChange, apply, new_state, snapshot
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import format_ms, parse_rfc3339_ms

START = parse_rfc3339_ms("2026-10-01T09:00:00Z")
BATCH = 2_000  # the board's FETCH_RECORDS: one transaction each


def templates() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A snapshot, a stage change and a hot lead of a buyer, from the scoring core."""
    rules = load_rules()
    state, outputs = new_state("template@example.com"), list[Output]()
    for number, (kind, properties) in enumerate(
        [
            ("profile_updated", {"seniority": "c_level", "budget": 60_000, "company_size": 300, "industry": "saas"}),
            ("demo_requested", {}),
            ("webinar_attended", {}),
        ]
    ):
        event = Event(f"t-{number}", kind, "template@example.com", True, START, properties)
        state, produced, *_ = apply(state, event, rules)
        outputs.extend(produced)
    change = next(o for o in outputs if isinstance(o, StageChange))
    hot = next(o for o in outputs if isinstance(o, HotLead))
    return snapshot_record(snapshot(state, START, rules)), output_record(change), output_record(hot)


def records(contacts: int, days: int) -> Iterator[Incoming]:
    snap, change, hot = templates()
    offsets = {"contact-scores": 0, "stage-changes": 0, "hot-leads": 0}

    def incoming(role: str, key: str, value: dict[str, Any], at_ms: int) -> Incoming:
        offset = offsets[role]
        offsets[role] += 1
        return Incoming(role, role, 0, offset, key.encode(), orjson.dumps(value), at_ms)

    for day in range(days):
        for number in range(contacts):
            contact = f"person{number}@company{number % 50_000}.example"
            at = START + day * DAY_MS + number % 3_600_000
            warmer = day > 0 and number % 10 == 0
            value = dict(
                snap,
                contact_id=contact,
                score=30 + number % 70,
                temperature=min(4, 1 + (number % 70) // 25 + int(warmer)),
                account_id=f"company{number % 50_000}.example",
                updated_at=format_ms(at),
            )
            yield incoming("contact-scores", contact, value, at)
            if day == 0:
                yield incoming("stage-changes", contact, dict(change, id=f"s{number}", contact_id=contact), at)
                if number % 20 == 0:
                    yield incoming("hot-leads", contact, dict(hot, id=f"h{number}", contact_id=contact), at)


def size_of(store: Store) -> int:
    if store.writer.postgres:
        row = store.writer.one("SELECT pg_database_size(current_database())")
        return int(row[0]) if row else 0
    store.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in Path(store.url).parent.glob(Path(store.url).name + "*"))


def timed(what: str, call: Any) -> None:
    started = time.perf_counter()
    call()
    print(f"  {what}: {1000 * (time.perf_counter() - started):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--database", default=None, help="default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-board-")
    store = Store(args.database or os.path.join(folder, "board.sqlite3"), retention_days=90)
    applied, batch = 0, []
    started = time.perf_counter()
    for record in records(args.contacts, args.days):
        batch.append(record)
        if len(batch) == BATCH:
            applied += store.apply(batch).records
            batch = []
    applied += store.apply(batch).records
    seconds = time.perf_counter() - started
    size = size_of(store)
    counts = store.counts()
    print(f"read model ({'PostgreSQL' if store.writer.postgres else 'SQLite'}), {args.contacts:,} contacts:")
    print(f"  {applied:,} records in {seconds:.1f} s: {applied / seconds:,.0f} records/s")
    print(f"  {args.contacts * args.days / seconds:,.0f} snapshots/s ({args.days} per contact)")
    print(f"  rows: {', '.join(f'{table} {n:,}' for table, n in counts.items())}")
    print(f"  size {size / 1e6:,.0f} MB: {size / args.contacts:,.0f} bytes per contact")
    print("page queries on the full model:")
    timed("hot now", lambda: store.hot_contacts(limit=100))
    timed("hot now, one segment", lambda: store.hot_contacts(segment="decision makers", limit=100))
    timed("hot accounts", store.hot_accounts)
    timed("contact page", lambda: store.contact("person12345@company12345.example"))
    timed("account page", lambda: store.account("company12345.example"))
    timed("search by domain", lambda: store.search("company12345.example"))
    timed("funnel", store.funnel)
    store.close()


if __name__ == "__main__":
    main()
