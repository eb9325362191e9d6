"""Benchmark of identity stitching for one contact identified with many devices, on one core.

    python -m bench.identity [--devices 100000] [--browsing-every 50] [--window 1000] [--rules FILE]

One user sends `--devices` identify events, each with a new device id (a 160-character push
token); every `--browsing-every`-th device first browses the pricing page anonymously. Timed:

- *stream core*: the worker's identity protocol without Kafka (what `agents/scoring.py`
  calls per record): the identify applied to the contact, its link recorded by the device,
  the device's hand-over attached to the contact;
- *offline scorer*: `leadpulse score`'s fold (`scoring.replay.ScoreRun.add`, every link
  and hand-over delivered at once), after decoding each line as the stream does;

each per identify, as medians of windows of `--window` identifies over the first window,
the next 10 and the next 100, so that a cost growing with the ids already linked shows;
then one hand-over of a merged device to the contact and one page view of the contact
itself (each with the snapshot after it), and the contact's state in bytes. Both must end with the same snapshots.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid

import orjson

from leadpulse.schemas.events import decode_event
from leadpulse.scoring.engine import Event, apply, attach, new_state, snapshot, view_of
from leadpulse.scoring.identity import hand_over, is_published, record_claim
from leadpulse.scoring.replay import ScoreRun
from leadpulse.scoring.rules import Rules, load_rules
from leadpulse.scoring.state import ContactState, Part, to_bytes
from leadpulse.scoring.timeutil import format_ms, parse_rfc3339_ms

START = parse_rfc3339_ms("2026-06-01T00:00:00Z")
USER = "ada@bigcorp.example"


def identify_lines(devices: int, browsing_every: int) -> list[bytes]:
    rnd, lines = random.Random(18), []
    for index in range(devices):
        device = ":".join(str(uuid.UUID(int=rnd.getrandbits(128))) for _ in range(4))[:160]
        at = START + index * 1_000
        if index % browsing_every == 0:
            browse = {"event_id": f"p{index}", "type": "page_viewed", "anonymous_id": device}
            lines.append(
                orjson.dumps({**browse, "properties": {"path": "/pricing"}, "occurred_at": format_ms(at - 500)})
            )
        identify = {"event_id": f"i{index}", "type": "profile_updated", "contact_id": USER, "anonymous_id": device}
        lines.append(orjson.dumps({**identify, "occurred_at": format_ms(at)}))
    return lines


class StreamCore:
    """The stream's per-record steps with every identity record delivered at once."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.states: dict[str, ContactState] = {}
        self.version = 0

    def event(self, event: Event) -> None:
        state = self.states.get(event.contact_id) or new_state(event.contact_id)
        applied = apply(state, event, self.rules)
        self.store(event.contact_id, applied.state)
        for link in applied.links:
            device = self.states.get(link.anonymous_id) or new_state(link.anonymous_id)
            self.store(link.anonymous_id, record_claim(device, link.claim))

    def store(self, key: str, state: ContactState) -> None:
        self.version += 1
        state, sends = hand_over(state, self.version)
        self.states[key] = state
        for target, part in sends:
            self.states[target] = attach(self.states[target], key, part, self.rules).state


def per_identify(fold: object, lines: list[bytes], window: int) -> list[tuple[int, float]]:
    """(identifies so far, µs per identify over the last `window`), for `fold(line)`."""
    marks, identifies, started = [], 0, time.perf_counter()
    for line in lines:
        fold(line)  # type: ignore[operator]
        if b'"contact_id"' in line:
            identifies += 1
            if identifies % window == 0:
                now = time.perf_counter()
                marks.append((identifies, (now - started) / window * 1e6))
                started = now
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--browsing-every", type=int, default=50)
    parser.add_argument("--window", type=int, default=1_000)
    parser.add_argument("--rules")
    args = parser.parse_args()
    rules = load_rules(args.rules)
    lines = identify_lines(args.devices, args.browsing_every)
    print(f"{args.devices:,} identifies of one user, max_linked_ids = {rules.max_linked_ids}, {len(lines):,} events")

    core = StreamCore(rules)
    stream_marks = per_identify(lambda line: core.event(decode_event(line, mapping=rules.mapping)), lines, args.window)
    run = ScoreRun(rules)
    offline_marks = per_identify(lambda line: run.add(decode_event(line, mapping=rules.mapping)), lines, args.window)
    print(f"{'identifies':>18} | stream core µs/identify | offline µs/identify (medians of {args.window:,})")
    low = 0
    for high in (args.window, 10 * args.window, 100 * args.window, args.devices):
        if high <= low or high > args.devices:
            continue
        stream_us = statistics.median(us for count, us in stream_marks if low < count <= high)
        offline_us = statistics.median(us for count, us in offline_marks if low < count <= high)
        print(f"{f'{low + 1:,}-{high:,}':>18} | {stream_us:>23.0f} | {offline_us:>19.0f}")
        low = high
    contact = core.states[USER]
    visit = decode_event(
        orjson.dumps(
            {
                "event_id": "visit",
                "type": "page_viewed",
                "contact_id": USER,
                "properties": {"path": "/pricing"},
                "occurred_at": format_ms(START + args.devices * 1_000),
            }
        )
    )
    repeats = 200
    started = time.perf_counter()
    for _ in range(repeats):
        after = apply(contact, visit, rules).state
        snapshot(after, view_of(after, rules).last_event_ms, rules)
    own_us = (time.perf_counter() - started) / repeats * 1e6
    merged = min(contact.parts)
    started = time.perf_counter()
    for version in range(repeats):  # a merged device hands over again (it had an event): one fold of the parts
        again = attach(contact, merged, Part(core.version + 1 + version, core.states[merged]), rules).state
        snapshot(again, view_of(again, rules).last_event_ms, rules)
    merge_us = (time.perf_counter() - started) / repeats * 1e6
    print(f"a hand-over to it after that (attach + snapshot): {merge_us:.0f} µs")
    print(
        f"the contact's own event after that (apply + snapshot): {own_us:.0f} µs; "
        f"its state: {len(to_bytes(contact)):,} bytes, {len(contact.claims)} linked ids, {len(contact.parts)} parts"
    )
    at_ms = START + args.devices * 1_000
    stream = [snapshot(state, at_ms, rules) for _, state in sorted(core.states.items()) if is_published(state)]
    if stream != run.snapshots(at_ms):
        raise SystemExit("the stream core and the offline scorer differ")
    print(f"stream core = offline scorer: {len(stream):,} published contacts")


if __name__ == "__main__":
    main()
