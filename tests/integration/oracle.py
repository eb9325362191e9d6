"""The determinism oracle (bench/oracle.py, shared with the soak run) and the events the tests
feed it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bench.oracle import Oracle
from leadpulse.cli.offline import score_lines
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.schemas.events import contact_key
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import format_ms, now_ms, parse_rfc3339_ms

__all__ = ["Oracle", "nurture_example_lines", "scores_mismatch", "steady_nurture_lines", "traffic_lines"]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def traffic_lines(count: int, contacts: int, seed: int = 11, accounts: int = 0, identities: float = 0.0) -> list[bytes]:
    """Realistic events from the last 60 days (so none is in the future for the worker);
    `accounts` > 0: contacts name one of that many companies, and some change company;
    `identities` > 0: that share of identified contacts first browse under a cookie that
    their first identified event links (some cookies shared by several contacts)."""
    start = now_ms() - 60 * DAY_MS
    traffic = Traffic(
        seed=seed, start_ms=start, span_ms=50 * DAY_MS, contacts=contacts, accounts=accounts, identities=identities
    )
    return [orjson.dumps(event) for event in traffic.events(count)]


def nurture_example_lines(evaluated_at_ms: int) -> list[bytes]:
    """examples/nurture.jsonl (README's worked example, evaluated there at 2026-10-01T12:00Z)
    moved in time so that `evaluated_at_ms` plays that moment."""
    shift = evaluated_at_ms - parse_rfc3339_ms("2026-10-01T12:00:00Z")
    lines = []
    for line in (EXAMPLES / "nurture.jsonl").read_bytes().splitlines():
        document = orjson.loads(line)
        document["occurred_at"] = format_ms(parse_rfc3339_ms(document["occurred_at"]) + shift)
        lines.append(orjson.dumps(document))
    return lines


def steady_nurture_lines(lines: list[bytes], start_ms: int, window_ms: int) -> list[bytes]:
    """`lines` without the contacts whose nurture records would change between `start_ms` and
    `start_ms + window_ms` (a threshold crossed while the test runs): for the others, the
    stream's ticks and the offline scorer decide alike anywhere in the window."""
    run = score_lines(lines, load_rules())
    before, after = run.nurtures(start_ms), run.nurtures(start_ms + window_ms)
    moving = {record.contact_id for record in set(before) ^ set(after)}
    return [line for line in lines if contact_key(orjson.loads(line)) not in moving]


def scores_mismatch(latest: dict[str, Any], expected: dict[str, Any], shown: int = 5) -> str:
    """What separates `contact-scores` from the oracle, in a few lines a failure can print."""
    missing = sorted(expected.keys() - latest.keys())
    extra = sorted(latest.keys() - expected.keys())
    differing = sorted(k for k in expected.keys() & latest.keys() if expected[k] != latest[k])
    lines = [f"{len(missing)} contacts missing {missing[:shown]}, {len(extra)} extra {extra[:shown]}"]
    lines.append(f"{len(differing)} differ:")
    for key in differing[:shown]:
        stream, oracle = latest[key], expected[key]
        fields = sorted(f for f in stream.keys() | oracle.keys() if stream.get(f) != oracle.get(f))
        lines.append(f"  {key}: " + ", ".join(f"{f} stream={stream.get(f)!r} oracle={oracle.get(f)!r}" for f in fields))
    return "\n".join(lines)
