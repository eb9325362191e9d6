"""Scoring a whole sequence of events in one pass: the offline scorer's fold, and the oracle
the stream is tested against. Decoding the input is the caller's job (schemas/)."""

from __future__ import annotations

from dataclasses import dataclass, field

from leadpulse.scoring.accounts import AccountSnapshot, accounts_of
from leadpulse.scoring.engine import Event, Outcome, Output, Snapshot, apply, new_state, snapshot
from leadpulse.scoring.erasure import ERASE_EVENT, Erasure, erasure_of
from leadpulse.scoring.nurture import Nurture, nurtures_at
from leadpulse.scoring.rules import Rules
from leadpulse.scoring.state import ContactState

LAST_EVENT = "last-event"  # evaluate each contact at its own latest event, as the stream publishes it


@dataclass
class ScoreRun:
    """What one pass over events produced; `contacts` is keyed by contact id."""

    rules: Rules
    contacts: dict[str, ContactState] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    erased: dict[str, Erasure] = field(default_factory=dict)
    events: int = 0
    bad: int = 0
    duplicates: int = 0
    unscored: int = 0
    unmapped: int = 0  # of the unscored: Segment track names the rules' [mapping] does not know (counted by the caller)
    forgotten: int = 0  # events dropped because their contact was erased
    latest_ms: int | None = None

    def add(self, event: Event) -> Outcome:
        """Fold one valid event, in the order given; an erasure drops the contact, and the
        events for it that it forgets (scoring.erasure): both score nothing."""
        if self.latest_ms is None or event.occurred_ms > self.latest_ms:
            self.latest_ms = event.occurred_ms
        self.events += 1
        state = self.contacts.get(event.contact_id)
        if event.type == ERASE_EVENT:
            erasure = erasure_of(event.occurred_ms, self.rules.erasure_grace_ms)
            self.erased[event.contact_id] = erasure.merged(self.erased.get(event.contact_id))
            self.contacts.pop(event.contact_id, None)
            return "unscored"
        if state is None:
            erased = self.erased.get(event.contact_id)
            if erased is not None and erased.forgets(event.occurred_ms):
                self.forgotten += 1
                return "unscored"
            state = new_state(event.contact_id)
        applied = apply(state, event, self.rules)
        self.contacts[event.contact_id] = applied.state
        if applied.outcome == "duplicate":
            self.duplicates += 1
        elif applied.outcome == "unscored":
            self.unscored += 1
        self.outputs.extend(applied.outputs)
        return applied.outcome

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

    def nurtures(self, at_ms: int | None) -> list[Nurture]:
        """The nurture records due at `at_ms` (None: each contact at its own latest event),
        by contact id then track order: what the stream's cooling timer sends when it re-reads
        these contacts in the same period, having sent nothing in it before."""
        return [
            record
            for _, state in sorted(self.contacts.items())
            for record in nurtures_at(
                state, state.last_event_ms if at_ms is None else max(at_ms, state.last_event_ms), self.rules
            )
        ]
