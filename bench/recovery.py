"""How long the event loop stalls while a worker rebuilds its cooling schedule after a
rebalance, for a table of N contacts (default 1M): the rebuild decodes every local state.

    python -m bench.recovery [--contacts 1000000]

A ticker task measures the loop's lag (how late a 10 ms sleep wakes up) during the rebuild,
once as the agent does it now (a scan that yields, reading the due time stored with each
contact) and once as before (decoding and bisecting every contact in one go); prints
the rebuild time, the longest stall and the median lag for both.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace

import orjson

from leadpulse.cli.offline import score_lines
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.scoring.cooling import CoolingSchedule
from leadpulse.scoring.engine import cooling_due_ms
from leadpulse.scoring.rules import Rules, load_rules
from leadpulse.scoring.state import from_bytes, to_bytes
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.tables import ContactTable


@dataclass
class LocalTable:
    """What ContactTable.scan reads of a Faust table: its items, as the store holds them."""

    rows: dict[bytes, bytes]

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self.rows.items())


def build_rows(contacts: int, rules: Rules) -> dict[bytes, bytes]:
    """`contacts` distinct states: a few thousand real journeys, copied under new ids."""
    traffic = Traffic(seed=3, start_ms=now_ms() - 30 * DAY_MS, span_ms=25 * DAY_MS, contacts=5_000)
    run = score_lines((orjson.dumps(event) for event in traffic.events(50_000)), rules)
    clock = now_ms()
    templates = [
        to_bytes(replace(state, cooling_due_ms=cooling_due_ms(state, rules, clock))) for state in run.contacts.values()
    ]
    rows = {}
    for i in range(contacts):
        template = from_bytes(templates[i % len(templates)])
        template.contact_id = f"contact-{i:08d}"
        rows[template.contact_id.encode()] = to_bytes(template)
    return rows


async def measure(rebuild: Callable[[], Awaitable[None]]) -> tuple[float, float, float]:
    lags: list[float] = []
    done = False

    async def ticker() -> None:
        while not done:
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - started - 0.01)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await rebuild()
    elapsed = time.perf_counter() - started
    done = True
    await task
    return elapsed, max(lags), statistics.median(lags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    args = parser.parse_args()
    rules = load_rules()
    print(f"building {args.contacts:,} contact states...", flush=True)
    rows = build_rows(args.contacts, rules)
    table = ContactTable(LocalTable(rows))
    clock = now_ms()

    async def chunked() -> None:
        schedule = CoolingSchedule()
        async for contact_id, state in table.scan():
            schedule.set(contact_id, state.cooling_due_ms)

    async def in_one_go() -> None:
        schedule = CoolingSchedule()
        for key, data in rows.items():
            state = from_bytes(data)
            schedule.set(key.decode(), cooling_due_ms(state, rules, clock))

    for name, rebuild in (("chunked scan (worker)", chunked), ("one pass, no yield (before)", in_one_go)):
        elapsed, stall, median = asyncio.run(measure(rebuild))
        print(
            f"{name:<28} rebuild {elapsed:6.1f} s   longest stall {stall * 1000:8.1f} ms   "
            f"median lag {median * 1000:.2f} ms"
        )


if __name__ == "__main__":
    main()
