"""Per-record cost of the accounts agent's core for one large account (pure core, one core).

    python -m bench.accounts [--members 100000] [--updates 2000] [--runs 3] [--reference]

Builds one account of `--members` members, then times `--updates` member records (score
changes of existing members, a tenth of them leaves and returns), each folded and settled as
the stream does (`receive`: the snapshot read for the hot-account hysteresis), plus the
changes a batch stores. Prints the median time per record over `--runs`, the time to read
the account back from its stored entries (what a worker does on first touch after a
restart), and the largest stored record. `--reference` also times the sort-based
definition (`account_snapshot` over every member per record: what every record cost before
the account was indexed).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from functools import partial

from leadpulse.scoring.accounts import (
    AccountState,
    Member,
    account_snapshot,
    aggregate_from_bytes,
    changes,
    entries_prefix,
    leaving,
    receive,
    restore,
)
from leadpulse.scoring.rules import Rules, load_rules
from leadpulse.scoring.timeutil import parse_rfc3339_ms

START = parse_rfc3339_ms("2026-06-01T00:00:00Z")
ACCOUNT = "bigcorp.example"
DEPARTMENTS = ("executive", "it", "finance", "marketing", "sales", "operations")
SENIORITIES = ("c_level", "vp", "director", "manager", "individual")


def member(index: int, at_ms: int, score: int, rules: Rules) -> Member:
    attributes = (("department", DEPARTMENTS[index % 6]), ("seniority", SENIORITIES[index % 5]))
    return Member(
        f"m{index:06d}@{ACCOUNT}", at_ms, False, score, float(index % 97), rules.temperature(score), "lead", attributes
    )


def updates(members: int, count: int, seed: int, rules: Rules) -> list[Member]:
    """Score changes of random members; every tenth a leave (its return comes later)."""
    rng = random.Random(seed)
    records = []
    for step in range(count):
        index = rng.randrange(members)
        at_ms = START + members + step
        if step % 10 == 9:
            records.append(leaving(f"m{index:06d}@{ACCOUNT}", at_ms))
        else:
            records.append(member(index, at_ms, rng.randrange(101), rules))
    return records


def built(members: int, rules: Rules) -> AccountState:
    state = AccountState(ACCOUNT, rules)
    for index in range(members):
        receive(state, member(index, START + index, (index * 7_919) % 101, rules), index)
    changes(state, b"{}")
    return state


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--updates", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1_000, help="records per stored batch (the worker's batch size)")
    parser.add_argument("--reference", action="store_true", help="also time account_snapshot over every member")
    args = parser.parse_args()
    rules = load_rules()

    incremental, reference, reads = [], [], []
    largest = 0
    for run in range(args.runs):
        state = built(args.members, rules)
        records = updates(args.members, args.updates, run, rules)

        def stream(state: AccountState = state, records: list[Member] = records) -> None:
            for offset, record in enumerate(records, start=args.members):
                receive(state, record, offset)
                if (offset + 1) % args.batch == 0:
                    changes(state, b"{}")

        incremental.append(timed(stream) / args.updates)
        stored = changes(state, b"{}") + [(k, v) for k, v in _entries(state)]
        largest = max(largest, *(len(v) for _, v in stored if v is not None))
        aggregate = aggregate_from_bytes(_aggregate(state))
        entries = sorted(_entries(state))
        reads.append(timed(partial(restore, ACCOUNT, aggregate, entries, rules)))
        if args.reference:  # the definition's sort of every member, a few dozen times (it is slow)
            members, repeats = list(state.members.values()), 20
            reference.append(timed(partial(_snapshots, members, repeats, rules)) / repeats)

    print(f"one account of {args.members:,} members, {args.updates:,} member records per run, {args.runs} runs")
    print(f"  incremental (receive + stored changes): {statistics.median(incremental) * 1e6:,.1f} us per record")
    if reference:
        print(f"  sort-based account_snapshot per record: {statistics.median(reference) * 1e6:,.1f} us per record")
    print(f"  read back from its stored entries: {statistics.median(reads):.2f} s")
    print(f"  largest stored record: {largest:,} bytes")


def _snapshots(members: list[Member], repeats: int, rules: Rules) -> None:
    for _ in range(repeats):
        account_snapshot(ACCOUNT, members, rules)


def _entries(state: AccountState) -> list[tuple[bytes, bytes]]:
    """Every entry as the table holds it: the account's changes with every entry marked."""
    state.changed_members.update(state.members)
    state.changed_departed.update(state.departed)
    prefix = entries_prefix(ACCOUNT)
    return [(key, value) for key, value in changes(state, b"{}") if value is not None and key.startswith(prefix)]


def _aggregate(state: AccountState) -> bytes:
    [(_, value)] = changes(state, b"{}")
    assert value is not None
    return value


if __name__ == "__main__":
    main()
