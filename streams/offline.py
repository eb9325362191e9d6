"""The offline scorer: the same engine over a file of events, for replays, rule changes and
as the oracle the stream is tested against."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from schemas.events import InvalidEvent, decode_event
from scoring.engine import Output, Snapshot, apply, future_reason, new_state, snapshot
from scoring.rules import Rules
from scoring.state import ContactState

LAST_EVENT = "last-event"


@dataclass
class ScoreRun:
    """What one pass over a file produced; `contacts` is keyed by contact id."""

    contacts: dict[str, ContactState] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    events: int = 0
    bad: int = 0
    duplicates: int = 0
    unscored: int = 0
    latest_ms: int | None = None

    def snapshots(self, at_ms: int | None, rules: Rules) -> list[Snapshot]:
        """Sorted by contact id; `at_ms` None evaluates each contact at its own latest event,
        which is what the stream publishes after that event."""
        return [
            snapshot(state, state.last_event_ms if at_ms is None else at_ms, rules)
            for _, state in sorted(self.contacts.items())
        ]


def score_lines(
    lines: Iterable[bytes],
    rules: Rules,
    *,
    now_ms: int | None = None,
    on_bad: Callable[[int, InvalidEvent], None] = lambda line, error: None,
) -> ScoreRun:
    """Apply every valid line in order. `now_ms`, when given, refuses events further ahead
    of it than the rules allow, as the stream does with its clock."""
    run = ScoreRun()
    contacts = run.contacts
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = decode_event(line)
            if now_ms is not None and (reason := future_reason(event, now_ms, rules)) is not None:
                raise InvalidEvent("occurred_at", reason)
        except InvalidEvent as error:
            run.bad += 1
            on_bad(number, error)
            continue
        state = contacts.get(event.contact_id) or new_state(event.contact_id)
        applied = apply(state, event, rules)
        contacts[event.contact_id] = applied.state
        run.events += 1
        if applied.outcome == "duplicate":
            run.duplicates += 1
        elif applied.outcome == "unscored":
            run.unscored += 1
        run.outputs.extend(applied.outputs)
        if run.latest_ms is None or event.occurred_ms > run.latest_ms:
            run.latest_ms = event.occurred_ms
    return run


def report_bad_line(line: int, error: InvalidEvent) -> None:
    print(f"line {line}: {error}", file=sys.stderr)


def progress_lines(stream: BinaryIO, total_bytes: int | None, label: str) -> Iterable[bytes]:
    """Yield lines with a progress bar on stderr (shown only on a terminal)."""
    from tqdm import tqdm

    with tqdm(total=total_bytes, unit="B", unit_scale=True, desc=label, disable=None, mininterval=0.5) as bar:
        pending = 0
        for line in stream:
            pending += len(line)
            if pending >= 1 << 20:
                bar.update(pending)
                pending = 0
            yield line
        bar.update(pending)
