"""Identity stitching: an anonymous id (a cookie, a device) linked to a contact counts for it.

The protocol between an anonymous id and its contact, which usually live on different
partitions (docs/scoring.md#identity, docs/guarantees.md#identity-stitching):

1. the contact's own event that links an id (`engine.linked_ids`) records the link in the
   contact's `claims`; the link is sent to the anonymous id when it is new or earlier than
   the one sent before (`links_to_send`);
2. the anonymous id keeps the winning link, the earliest by (event time, event-id hash,
   contact id) (`record_claim`): the same winner whatever order links arrive in. An id that
   links ids of its own is a contact and is never merged (`winner`), so links never chain;
3. whenever an anonymous id is stored while it has a winner, it hands its whole own state
   over to the winner, and a detach to a contact it no longer belongs to (`hand_over`);
   full-state replacements with a version that grows with the anonymous id's stream
   position, never deltas, so a replayed or redelivered hand-over changes nothing;
4. the contact keeps the latest part per anonymous id (`engine.attach`) and is scored on
   the merged view (`merge.merged_view`). A merged anonymous id is published nowhere.

The offline scorer runs the same steps with immediate delivery (`scoring.replay`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import orjson

from leadpulse.scoring.state import Claim, ContactState, Part, from_fields, to_fields

IDENTITY_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Link:
    """A contact claims an anonymous id (a record keyed by the anonymous id)."""

    anonymous_id: str
    claim: Claim


@dataclass(frozen=True, slots=True)
class Handover:
    """An anonymous id's part for a contact (a record keyed by the contact)."""

    anonymous_id: str
    part: Part


def links_to_send(before: ContactState, after: ContactState) -> list[Link]:
    """The links an event added to a contact's claims, or moved earlier: the anonymous id
    keeps the earliest, so nothing else can change its winner."""
    if after.claims is before.claims:
        return []
    return [
        Link(anonymous_id, Claim(after.contact_id, *first))
        for anonymous_id, first in after.claims.items()
        if before.claims.get(anonymous_id) != first
    ]


def record_claim(state: ContactState, claim: Claim) -> ContactState:
    """Keep the winning link of an anonymous id: the earliest (a shared computer's cookie
    stays with the first person identified on it). Returns `state` itself if it did not win."""
    if state.claim is not None and state.claim.key() <= claim.key():
        return state
    return replace(state, claim=claim)


def winner(state: ContactState) -> str | None:
    """The contact an id is merged into, or None: no link, or the id has linked ids of its
    own (it is a contact; a contact is never merged into another, so links never chain)."""
    if state.claim is None or state.claims:
        return None
    return state.claim.contact_id


def hand_over(state: ContactState, version: int) -> tuple[ContactState, list[tuple[str, Part]]]:
    """What an id sends after it was stored: its part to its winner, and a detach to the
    contact it last sent a part to if that is no longer its winner. Returns the state with
    the contact it sent to."""
    target = winner(state)
    sends: list[tuple[str, Part]] = []
    if state.sent_to is not None and state.sent_to != target:
        sends.append((state.sent_to, Part(version, None)))
    if target is not None:
        sends.append((target, Part(version, part_of(state))))
    if state.sent_to != target:
        state = replace(state, sent_to=target)
    return state, sends


def detach(state: ContactState, version: int) -> list[tuple[str, Part]]:
    """An id erased: the contact holding its part lets it go."""
    return [] if state.sent_to is None else [(state.sent_to, Part(version, None))]


def part_of(state: ContactState) -> ContactState:
    """What a contact needs of an anonymous id's state: its history; not its stream
    positions, de-duplication window or identity bookkeeping."""
    return replace(state, seen=(), positions={}, claims={}, parts={}, claim=None, sent_to=None, account_sent=None)


def version_of(positions: dict[str, int]) -> int:
    """A hand-over's version: grows with every record applied to the id, from any input, and
    is the same when a replay after a crash recomputes the state."""
    return sum(offset + 1 for offset in positions.values())


def link_bytes(link: Link) -> bytes:
    claim = link.claim
    return orjson.dumps([IDENTITY_FORMAT, "link", link.anonymous_id, claim.contact_id, claim.occurred_ms, claim.tie])


def handover_bytes(handover: Handover) -> bytes:
    part = handover.part
    state = None if part.state is None else to_fields(part.state)
    return orjson.dumps([IDENTITY_FORMAT, "part", handover.anonymous_id, part.version, state])


def is_identity_record(data: bytes | None) -> bool:
    """Identity records travel with re-keyed events (`events-by-contact`): they are JSON
    arrays, and a re-keyed event is always a JSON object (it was decoded before re-keying)."""
    return data is not None and data[:1] == b"["


def identity_from_bytes(data: bytes) -> Link | Handover:
    """An identity record; ValueError (with why) for anything else."""
    fields = orjson.loads(data)
    if not isinstance(fields, list) or len(fields) < 3 or fields[0] != IDENTITY_FORMAT:
        raise ValueError("not an identity record of format 1")
    kind, anonymous_id = fields[1], fields[2]
    if not isinstance(anonymous_id, str):
        raise ValueError("an identity record names its anonymous id")
    if kind == "link" and len(fields) == 6:
        _, _, _, contact_id, occurred_ms, tie = fields
        if isinstance(contact_id, str) and isinstance(occurred_ms, int) and isinstance(tie, int):
            return Link(anonymous_id, Claim(contact_id, occurred_ms, tie))
    elif kind == "part" and len(fields) == 5 and isinstance(fields[3], int):
        nested = fields[4]
        return Handover(anonymous_id, Part(fields[3], None if nested is None else from_fields(nested)))
    raise ValueError(f"malformed identity record of kind {kind!r}")
