"""The offline scorer's side of the record limits (docs/guarantees.md#bounds): an event is
refused, as the worker dead-letters it, when a record it would make the worker write is
larger than the limit. The worker reads each topic's limit from the broker; the offline
scorer takes one limit for every topic (`LEADPULSE_MAX_MESSAGE_BYTES`, as the worker's
cap, default 1,000,000: the producer's, which a topic at the broker's default is above).

The worker checks the records it writes: an event's outputs as it is scored, a contact's
state, snapshot and member record when its batch is stored, one event at a time only once
the batch would write one too large. Checking every state after every event would double
the offline scorer's time, so a contact's state is encoded again only once the bytes its
events may have added since it was last measured could take it over the limit: each event
adds at most its own properties' stored size plus its ids and a fixed amount per signal,
interest and model the rules define (`growth`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import orjson

from leadpulse.schemas.fields import MAX_ID
from leadpulse.schemas.limits import RECORD_OVERHEAD, RecordLimits
from leadpulse.schemas.outputs import dumps, output_record, snapshot_record
from leadpulse.scoring.accounts import account_updates, member_to_bytes
from leadpulse.scoring.engine import Applied, Event, HotLead, StageChange, snapshot, view_of
from leadpulse.scoring.rules import Rules
from leadpulse.scoring.state import ContactState, to_bytes

# How the offline scorer names the topics in its refusals (the worker names them as created).
CHANGELOG, SCORES, MEMBERS, HOT_LEADS, STAGE_CHANGES = (
    "contacts-changelog",
    "contact-scores",
    "account-members",
    "hot-leads",
    "stage-changes",
)
ENTRY_BYTES = 120  # one signal, interest or model sum with its name (names are the rules' own, short)
# The stream's bookkeeping the offline state does not keep, at its largest: positions,
# publication and cooling times, the account last sent to.
BOOKKEEPING_BYTES = 2 * 24 + 2 * 14 + 6 * MAX_ID


_STAGE_CHANGE_FIXED = 512  # a stage change's keys, punctuation, id, stages, time and score: under 300 bytes


def stage_change_bound(change: StageChange) -> int:
    """The most bytes a stage change's record (key and value) can take: its texts at most 6
    bytes per character as stored (a control character), the key 4 (UTF-8), the rest fixed.
    A record under the limit by this bound needs no encoding to be checked: nearly all."""
    texts = (change.contact_id, change.cause_event_id, change.rules_version, change.merged_from or "")
    return RECORD_OVERHEAD + 4 * len(change.contact_id) + 6 * sum(map(len, texts)) + _STAGE_CHANGE_FIXED


@dataclass
class SizeGuard:
    """Called by the offline fold (scoring.replay.ScoreRun.guard) with each event's result
    before it is kept; raises RecordTooLarge to refuse it."""

    rules: Rules
    limits: RecordLimits
    measured: dict[str, int] = field(default_factory=dict)  # contact -> bytes its state may take, at most
    # Read once: the limit of a contact's records, and what every event may add besides its properties.
    _limit: int = field(init=False, repr=False)
    _fixed_growth: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._limit = min(self.limits.of(CHANGELOG), self.limits.of(SCORES), self.limits.of(MEMBERS))
        entries = 1 + len(self.rules.interests) + len(self.rules.models) + 3  # a signal, interests, models, CRM, flags
        self._fixed_growth = 6 * 3 * MAX_ID + entries * ENTRY_BYTES

    def __call__(self, event: Event, applied: Applied) -> None:
        """Raise RecordTooLarge if keeping `applied` would make the worker write a record
        over the limit: one of its outputs, or the contact's publication."""
        for output in applied.outputs:
            if isinstance(output, HotLead):
                self.limits.check(HOT_LEADS, output.contact_id.encode(), dumps(output_record(output)))
            elif stage_change_bound(output) > self.limits.of(STAGE_CHANGES):  # else it fits: not encoded
                self.limits.check(STAGE_CHANGES, output.contact_id.encode(), dumps(output_record(output)))
        state = applied.state
        contact = state.contact_id
        bound = self.measured.get(contact, 0) + self.growth(event)
        if bound + BOOKKEEPING_BYTES > self._limit:
            self._check(state)
            bound = len(to_bytes(state))
        self.measured[contact] = bound

    def growth(self, event: Event) -> int:
        """The most bytes one event can add to its contact's stored state."""
        return len(orjson.dumps(event.properties)) + self._fixed_growth

    def _check(self, state: ContactState) -> None:
        """The worker's publication of `state` (agents.scoring: _publication), each record
        checked against the limit, its bookkeeping fields at their largest."""
        view = snapshot(state, view_of(state, self.rules).last_event_ms, self.rules)
        account, updates = account_updates(view_of(state, self.rules), view, self.rules)
        largest = replace(
            state,
            positions={"e": 10**15, "r": 10**15},
            published_ms=10**14,
            cooling_due_ms=10**14,
            account_sent=account if account is not None else "x" * MAX_ID,
        )
        key = state.contact_id.encode()
        self.limits.check(CHANGELOG, key, to_bytes(largest))
        self.limits.check(SCORES, key, dumps(snapshot_record(view)))
        for target, record in updates:
            self.limits.check(MEMBERS, target.encode(), member_to_bytes(record))
