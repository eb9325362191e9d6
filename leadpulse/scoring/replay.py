"""Scoring a whole sequence of events in one pass: the offline scorer's fold, and the oracle
the stream is tested against. Decoding the input is the caller's job (schemas/)."""

from __future__ import annotations

from dataclasses import dataclass, field

from leadpulse.scoring.accounts import AccountSnapshot, accounts_of
from leadpulse.scoring.engine import Event, Output, Snapshot, apply, new_state, snapshot
from leadpulse.scoring.rules import Rules
from leadpulse.scoring.state import ContactState

LAST_EVENT = "last-event"  # evaluate each contact at its own latest event, as the stream publishes it


@dataclass
class ScoreRun:
    """What one pass over events produced; `contacts` is keyed by contact id."""

    rules: Rules
    contacts: dict[str, ContactState] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    events: int = 0
    bad: int = 0
    duplicates: int = 0
    unscored: int = 0
    latest_ms: int | None = None

    def add(self, event: Event) -> None:
        """Fold one valid event, in the order given."""
        state = self.contacts.get(event.contact_id) or new_state(event.contact_id)
        applied = apply(state, event, self.rules)
        self.contacts[event.contact_id] = applied.state
        self.events += 1
        if applied.outcome == "duplicate":
            self.duplicates += 1
        elif applied.outcome == "unscored":
            self.unscored += 1
        self.outputs.extend(applied.outputs)
        if self.latest_ms is None or event.occurred_ms > self.latest_ms:
            self.latest_ms = event.occurred_ms

    def snapshots(self, at_ms: int | None) -> list[Snapshot]:
        """Sorted by contact id; `at_ms` None evaluates each contact at its own latest event,
        which is what the stream publishes after that event."""
        return [
            snapshot(state, state.last_event_ms if at_ms is None else at_ms, self.rules)
            for _, state in sorted(self.contacts.items())
        ]

    def accounts(self, at_ms: int | None) -> list[AccountSnapshot]:
        """Account snapshots from the contacts' snapshots at `at_ms` (None: each at its own
        latest event, as the stream publishes them), sorted by account id."""
        states = [state for _, state in sorted(self.contacts.items())]
        return accounts_of(zip(states, self.snapshots(at_ms), strict=True), self.rules)
