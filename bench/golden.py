"""The golden corpus of the core's speed work: what the offline scorer prints for a large
generated history that exercises every feature, written to files to compare byte for byte.

    python -m bench.golden DIR [--events 100000] [--contacts 8000]
    diff -r DIR_BEFORE DIR_AFTER        # empty: the change scores every event alike

The history is synthetic traffic (leadpulse/cli/traffic.py) with cookies linked later and
shared (identity merges), accounts, job titles (derived seniority), CRM events, duplicates,
late events, erasures and contacts that come back after them. It is scored with the shipped
rules and with bench/rules/many_models.toml (10 models, 50 segments); for each: contact
snapshots at each contact's latest event and at one time for all, account snapshots,
nurture records, stage changes and hot leads (`--events-out`), every key's stored state and
the summary line.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

import orjson

from leadpulse.cli.offline import Totals, account_lines, contact_records, score_lines
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.schemas.outputs import dumps, output_record
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.state import to_bytes
from leadpulse.scoring.timeutil import format_ms, parse_rfc3339_ms

START = parse_rfc3339_ms("2026-01-01T00:00:00Z")
SPAN = 200 * DAY_MS
RULES = {"shipped": None, "many_models": str(Path(__file__).parent / "rules" / "many_models.toml")}
_TITLES = ("VP Engineering", "Head of Sales", "Marketing Intern", "Chief Revenue Officer", "Sales Assistant")


def history(events: int, contacts: int) -> list[bytes]:
    """Traffic with every feature, then disorder: duplicates, late events, erasures."""
    draw = random.Random(11)
    traffic = Traffic(seed=3, start_ms=START, span_ms=SPAN, contacts=contacts, accounts=60, identities=0.4)
    lines: list[dict[str, Any]] = []
    for event in traffic.events(events):
        properties = event.get("properties", {})
        if event["type"] == "profile_updated" and draw.random() < 0.3:
            event["properties"] = {key: value for key, value in properties.items() if key != "seniority"}
            event["properties"]["job_title"] = draw.choice(_TITLES)
        lines.append(event)
        if draw.random() < 0.02:
            lines.append(event)  # a retry: the same event id
    for index in range(0, len(lines) - 50, 97):  # late events: a window reversed now and then
        lines[index : index + 20] = reversed(lines[index : index + 20])
    for serial in range(contacts // 200):  # erasures, some contacts coming back after them
        at = START + draw.randrange(SPAN)
        contact = f"c-{draw.randrange(contacts):07d}"
        erasure = {"event_id": f"erase-{serial}", "type": "contact_erased", "contact_id": contact}
        lines.insert(draw.randrange(len(lines)), {**erasure, "occurred_at": format_ms(at)})
    return [orjson.dumps(event) for event in lines]


def write_corpus(folder: Path, lines: list[bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "history.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    at_ms = START + SPAN
    for name, path in RULES.items():
        rules = load_rules(path)
        run = score_lines(lines, rules, now_ms=at_ms + DAY_MS)
        files = {
            "snapshots-last-event": [line for _, line in contact_records(run, "contacts", None)],
            "snapshots-at-end": [line for _, line in contact_records(run, "contacts", at_ms)],
            "accounts": account_lines(run.accounts(at_ms)),
            "nurture": [line for _, line in contact_records(run, "nurture", at_ms)],
            "events-out": [dumps(output_record(output)) for output in run.outputs],
            "states": [contact.encode() + b" " + to_bytes(state) for contact, state in sorted(run.contacts.items())],
            "summary": [Totals.of(run).summary().encode()],
        }
        for kind, records in files.items():
            (folder / f"{name}.{kind}.jsonl").write_bytes(b"".join(record + b"\n" for record in records))
        print(f"{name}: {Totals.of(run).summary()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=8_000)
    args = parser.parse_args()
    write_corpus(args.folder, history(args.events, args.contacts))


if __name__ == "__main__":
    main()
