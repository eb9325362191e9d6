"""Scoring a whole sequence of events in one pass: the offline scorer's fold, and the oracle
the stream is tested against. Decoding the input is the caller's job (schemas/).

Identity stitching runs the stream's protocol (scoring.identity) with every link and
hand-over delivered at once: since the winner of an anonymous id, the ids within a contact's
cap (`[identity] max_linked_ids`) and the merged view do not depend on the order of
arrival, the final snapshots equal the stream's.

Anonymous contacts nobody identified expire as in the stream (scoring.expiry): one of
their events that occurred after they were due starts a new contact, and `age` deletes
those due at the end of the run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from leadpulse.scoring.accounts import AccountSnapshot, Member, account_members, accounts_from
from leadpulse.scoring.engine import (
    Applied,
    Event,
    Outcome,
    Output,
    Snapshot,
    apply,
    attach,
    linked_ids,
    new_state,
    snapshot,
    view_of,
)
from leadpulse.scoring.erasure import ERASE_EVENT, Erasure, erasure_of
from leadpulse.scoring.expiry import expired
from leadpulse.scoring.identity import Link, detach, hand_over, is_published, record_claim, winner
from leadpulse.scoring.nurture import Nurture, nurtures_at
from leadpulse.scoring.rules import Rules
from leadpulse.scoring.state import ContactState, Part

LAST_EVENT = "last-event"  # evaluate each contact at its own latest event, as the stream publishes it


@dataclass
class ScoreRun:
    """What one pass over events produced; `contacts` is keyed by contact id."""

    rules: Rules
    contacts: dict[str, ContactState] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    keep_outputs: bool = True  # False: outputs only counted, for a caller that prints none (memory)
    output_count: int = 0
    erased: dict[str, Erasure] = field(default_factory=dict)
    events: int = 0
    bad: int = 0
    duplicates: int = 0
    unscored: int = 0
    unmapped: int = 0  # of the unscored: Segment track names the rules' [mapping] does not know (counted by the caller)
    forgotten: int = 0  # events dropped because their contact was erased
    aged: int = 0  # anonymous contacts expired (scoring.expiry)
    latest_ms: int | None = None
    position: int = 0  # of the event being folded: the version of the hand-overs it causes
    # Sees each event's result before it is kept and raises to refuse it (nothing kept, nothing
    # counted): the record limits (schemas.record_sizes), which the core knows nothing of.
    guard: Callable[[Event, Applied], None] | None = None
    # Says whether an account takes a member (account id, member): the accounts agent's record
    # limits (schemas.record_sizes.AccountGuard), which the core knows nothing of either.
    admit: Callable[[str, Member], bool] | None = None

    def add(self, event: Event, position: int | None = None) -> Outcome:
        """Fold one valid event, in the order given; an erasure drops the contact, and the
        events for it that it forgets (scoring.erasure): both score nothing. `position` is
        the event's place in the input (its line number; default: the count of events so
        far), growing from one call to the next. It versions the hand-overs the event causes,
        as the stream's grow with stream positions: a property of the input, not of the
        fold, so a run over a subset of the contacts (cli.parallel) names the same versions."""
        latest = self.latest_ms
        if self.latest_ms is None or event.occurred_ms > self.latest_ms:
            self.latest_ms = event.occurred_ms
        self.events += 1
        self.position = self.events if position is None else position
        state = self._current(event.contact_id, event.occurred_ms)
        if event.type == ERASE_EVENT:
            self._erase(event.contact_id, event.occurred_ms)
            return "unscored"
        if state is None:
            erased = self.erased.get(event.contact_id)
            if erased is not None and erased.forgets(event.occurred_ms):
                self.forgotten += 1
                for linked in linked_ids(event):  # as the stream forwards it (scoring.erasure)
                    self._erase(linked, erased.occurred_ms(self.rules.erasure_grace_ms))
                return "unscored"
            self.erased.pop(event.contact_id, None)  # back after the grace: its marker expires, as in the stream
            state = new_state(event.contact_id)
        applied = apply(state, event, self.rules)
        if self.guard is not None and winner(applied.state) is None:
            try:
                self.guard(event, applied)
            except Exception:
                self.events -= 1
                self.latest_ms = latest
                raise
        self.contacts[event.contact_id] = applied.state
        if applied.outcome == "duplicate":
            self.duplicates += 1
        elif applied.outcome == "unscored":
            self.unscored += 1
        if applied.outputs and is_published(applied.state):  # a merged anonymous id speaks through its contact
            self._emit(applied.outputs)
        for link in applied.links:
            self._link(link)
        self._hand_over(event.contact_id)
        return applied.outcome

    def _emit(self, outputs: tuple[Output, ...]) -> None:
        self.output_count += len(outputs)
        if self.keep_outputs:
            self.outputs.extend(outputs)

    def _erase(self, contact_id: str, occurred_ms: int) -> None:
        """Erase a contact and every anonymous id it linked (as the stream sends each of them
        an erasure); an erased id that was merged is detached from its contact."""
        erasure = erasure_of(occurred_ms, self.rules.erasure_grace_ms)
        self.erased[contact_id] = erasure.merged(self.erased.get(contact_id))
        state = self.contacts.pop(contact_id, None)
        if state is None:
            return
        for target, part in detach(state, self.position):
            self._attach(target, contact_id, part)
        for linked in sorted(state.claims):
            self._erase(linked, occurred_ms)

    def _current(self, contact_id: str, at_ms: int) -> ContactState | None:
        """The contact's state for something that happened at `at_ms`: none if it expired by then."""
        state = self.contacts.get(contact_id)
        # An identified contact never expires (scoring.expiry.ages): asked first, it spares
        # nearly every event the three calls of `expired`.
        if state is not None and not state.identified and expired(state, at_ms, self.rules):
            del self.contacts[contact_id]
            self.aged += 1
            return None
        return state

    def age(self, at_ms: int | None = None) -> None:
        """Delete the contacts expired at `at_ms` (default: the latest event time of the run),
        as the worker has deleted them once its clock passed their due time."""
        at = self.latest_ms if at_ms is None else at_ms
        if at is None:
            return
        for contact_id in [key for key, state in self.contacts.items() if expired(state, at, self.rules)]:
            del self.contacts[contact_id]
            self.aged += 1

    def _link(self, link: Link) -> None:
        state = self._current(link.anonymous_id, link.claim.occurred_ms)
        if state is None:
            erased = self.erased.get(link.anonymous_id)
            if erased is not None and erased.forgets(link.claim.occurred_ms):
                return
            state = new_state(link.anonymous_id)
        self.contacts[link.anonymous_id] = record_claim(state, link.claim)
        self._hand_over(link.anonymous_id)

    def _hand_over(self, contact_id: str) -> None:
        state = self.contacts[contact_id]
        if state.claim is None and state.sent_to is None:  # linked to no contact: nothing to send (hand_over)
            return
        state, sends = hand_over(state, self.position)
        self.contacts[contact_id] = state
        for target, part in sends:
            self._attach(target, contact_id, part)

    def _attach(self, contact_id: str, anonymous_id: str, part: Part) -> None:
        state = self.contacts.get(contact_id)
        if state is None:  # erased: it claims nothing (engine.attach)
            return
        applied = attach(state, anonymous_id, part, self.rules)
        self.contacts[contact_id] = applied.state
        self._emit(applied.outputs)
        if winner(applied.state) is not None:  # a contact merged itself (after an erasure): passes it on
            self._hand_over(contact_id)

    def published(self) -> list[ContactState]:
        """The merged views of the contacts that are published (merged anonymous ids are not),
        sorted by contact id."""
        return list(self._published())

    def _published(self) -> Iterator[ContactState]:
        for contact_id in sorted(self.contacts):
            state = self.contacts[contact_id]
            if is_published(state):
                yield view_of(state, self.rules)

    def snapshots(self, at_ms: int | None) -> list[Snapshot]:
        """Sorted by contact id; `at_ms` None evaluates each contact at its own latest event,
        which is what the stream publishes after that event."""
        return list(self.each_snapshot(at_ms))

    def each_snapshot(self, at_ms: int | None) -> Iterator[Snapshot]:
        """`snapshots`, one at a time: a caller that prints them holds one, not all."""
        for state in self._published():
            yield snapshot(state, state.last_event_ms if at_ms is None else at_ms, self.rules)

    def accounts(self, at_ms: int | None) -> list[AccountSnapshot]:
        """Account snapshots from the contacts' snapshots at `at_ms` (None: each at its own
        latest event, as the stream publishes them), sorted by account id."""
        members = account_members(zip(self.published(), self.snapshots(at_ms), strict=True), self.rules)
        admit = self.admit
        return accounts_from(
            members if admit is None else ((account, member) for account, member in members if admit(account, member)),
            self.rules,
        )

    def nurtures(self, at_ms: int | None) -> list[Nurture]:
        """The nurture records due at `at_ms` (None: each contact at its own latest event),
        by contact id then track order: what the stream's cooling timer sends when it re-reads
        these contacts in the same period, having sent nothing in it before."""
        return [
            record
            for state in self.published()
            for record in nurtures_at(
                state, state.last_event_ms if at_ms is None else max(at_ms, state.last_event_ms), self.rules
            )
        ]
