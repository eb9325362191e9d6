"""Benchmark of the scoring core on one core: parse+validate+apply, and apply alone.

    python -m bench.core [--events 1000000] [--contacts 100000] [--runs 3] [--rules FILE]

Prints medians of `--runs` runs, a ratio against the decode-only floor and against a
jsonschema-validated baseline measured in the same run, and bytes of state per contact.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from importlib import resources

import orjson

from leadpulse.cli.offline import score_lines
from leadpulse.cli.traffic import Traffic
from leadpulse.schemas.events import decode_event, validate_event
from leadpulse.scoring.engine import Event, apply, new_state
from leadpulse.scoring.rules import Rules, load_rules
from leadpulse.scoring.state import ContactState, to_bytes
from leadpulse.scoring.timeutil import parse_rfc3339_ms
from leadpulse.streams.runtime import tune_gc

START = parse_rfc3339_ms("2026-06-01T00:00:00Z")


def synthetic_lines(events: int, contacts: int) -> list[bytes]:
    traffic = Traffic(seed=7, start_ms=START, span_ms=180 * 86_400_000, contacts=contacts)
    return [orjson.dumps(event) for event in traffic.events(events)]


def fold(events: list[Event], rules: Rules) -> dict[str, ContactState]:
    states: dict[str, ContactState] = {}
    for event in events:
        states[event.contact_id] = apply(
            states.get(event.contact_id) or new_state(event.contact_id), event, rules
        ).state
    return states


def parse_validate_apply(lines: list[bytes], rules: Rules) -> dict[str, ContactState]:
    """The offline scorer's own loop: decode, validate, apply, one line at a time."""
    return score_lines(lines, rules).contacts


def jsonschema_baseline(lines: list[bytes], rules: Rules) -> dict[str, ContactState]:
    """What a first implementation would write: a generic JSON Schema validator per event."""
    from jsonschema import Draft202012Validator

    schema = orjson.loads(resources.files("leadpulse.schemas").joinpath("json", "event.schema.json").read_bytes())
    validator = Draft202012Validator(schema)
    events = []
    for line in lines:
        document = orjson.loads(line)
        validator.validate(document)
        events.append(validate_event(document))
    return fold(events, rules)


def timed(label: str, runs: int, count: int, work: Callable[[], object]) -> float:
    """Median events per wall-clock second; also per second of this process's CPU time,
    the figure to compare on a shared machine, where other processes take the core away."""
    rates, cpu_rates = [], []
    for _ in range(runs):
        began, began_cpu = time.perf_counter(), time.process_time()
        work()
        rates.append(count / (time.perf_counter() - began))
        cpu_rates.append(count / max(time.process_time() - began_cpu, 1e-9))
    median = statistics.median(rates)
    print(
        f"  {label:<38} {median:>10,.0f} events/s   (runs: {', '.join(f'{r:,.0f}' for r in rates)}; "
        f"per CPU second: {statistics.median(cpu_rates):,.0f})"
    )
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rules", help="rules file (default: the shipped rules), e.g. to measure named models")
    args = parser.parse_args()
    rules = load_rules(args.rules)
    tune_gc()
    print(f"generating {args.events:,} events for {args.contacts:,} contacts...", flush=True)
    lines = synthetic_lines(args.events, args.contacts)
    print(f"median of {args.runs} runs, one core:")
    decoded = [decode_event(line) for line in lines]
    floor = timed("orjson.loads only (floor)", args.runs, len(lines), lambda: [orjson.loads(x) for x in lines])
    full = timed("parse + validate + apply", args.runs, len(lines), lambda: parse_validate_apply(lines, rules))
    timed("apply alone", args.runs, len(lines), lambda: fold(decoded, rules))
    sample = lines[: max(1, len(lines) // 10)]
    baseline = timed(
        f"baseline: jsonschema + apply ({len(sample):,})",
        args.runs,
        len(sample),
        lambda: jsonschema_baseline(sample, rules),
    )
    print(
        f"  ratio parse+validate+apply / jsonschema baseline: {full / baseline:.1f}x; share of the decode floor: "
        f"{full / floor:.0%}"
    )
    sizes = sorted(len(to_bytes(state)) for state in fold(decoded, rules).values())
    print(
        f"state bytes per contact: median {statistics.median(sizes):.0f}, p99 {sizes[int(len(sizes) * 0.99)]}, "
        f"max {sizes[-1]}, total {sum(sizes) / 1e6:.1f} MB for {len(sizes):,} contacts"
    )


if __name__ == "__main__":
    main()
