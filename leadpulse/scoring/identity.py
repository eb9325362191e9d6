"""Identity stitching: an anonymous id (a cookie, a device) linked to a contact counts for it.

The protocol between an anonymous id and its contact, which usually live on different
partitions (docs/scoring.md#identity, docs/guarantees.md#identity-stitching):

1. the contact's own event that links an id records the link in the contact's `claims`,
   which keep only the `max_linked_ids` earliest links by (event time, event-id hash, id)
   (`add_links`: the cap, which bounds a contact's state whatever it is sent). The link is
   sent to the anonymous id when it is new or earlier than the one sent before, marked
   `refused` when it is beyond the cap; a link the cap pushes out later (an earlier one
   arrived late) is sent again, refused. A refused link never comes back: the links before
   it only grow in number;
2. the anonymous id keeps the winning link, the earliest by (event time, event-id hash,
   contact id), refused if any copy of it was (`record_claim`): the same winner whatever
   order links arrive in. An id that links ids of its own is a contact and is never merged,
   so links never chain, and an id whose winning link was refused stands on its own
   (`winner`): the earliest link decides the contact, the contact's cap whether it merges;
3. whenever an anonymous id is stored while it has a winner, it hands its whole own state
   over to the winner, and a detach to a contact it no longer belongs to (`hand_over`);
   full-state replacements with a version that grows with the anonymous id's stream
   position, never deltas, so a replayed or redelivered hand-over changes nothing;
4. the contact keeps the latest part per anonymous id among its claims, and refuses a part
   of any other (`engine.attach`), so it holds at most `max_linked_ids` parts; it is scored
   on the merged view (`merge.merged_view`). A merged anonymous id is published nowhere.

The offline scorer runs the same steps with immediate delivery (`scoring.replay`).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def add_links(
    contact_id: str, claims: dict[str, tuple[int, int]], linked: tuple[str, ...], at: tuple[int, int], cap: int
) -> tuple[dict[str, tuple[int, int]], tuple[Link, ...]]:
    """A contact's claims after an event at `at` (event time, event-id hash) linked the ids
    `linked`, and the links to send: each link that is new or earlier than the contact's
    own for that id, refused if it is beyond the `cap` earliest, and, refused, the link of
    each id the cap pushed out. Returns `claims` itself when nothing changed.

    The claims are the `cap` smallest of all links by (event time, event-id hash, id), one
    per id (its earliest): a function of the set of events, so of no arrival order."""
    updated = claims
    sends: list[Link] = []
    for anonymous_id in linked:
        first = updated.get(anonymous_id)
        if first is not None and at >= first:
            continue
        if first is None and len(updated) >= cap and (*at, anonymous_id) > _latest(updated):
            sends.append(Link(anonymous_id, Claim(contact_id, *at, refused=True)))  # beyond the cap from the start
            continue
        if updated is claims:
            updated = dict(claims)
        updated[anonymous_id] = at
        sends.append(Link(anonymous_id, Claim(contact_id, *at)))
        while len(updated) > cap:  # one at a time, unless the rules lowered the cap
            occurred_ms, tie, pushed_out = _latest(updated)
            del updated[pushed_out]
            sends.append(Link(pushed_out, Claim(contact_id, occurred_ms, tie, refused=True)))
    return updated, tuple(sends)


def _latest(claims: dict[str, tuple[int, int]]) -> tuple[int, int, str]:
    """The last of a contact's claims in the cap's order: (event time, event-id hash, id)."""
    return max((*first, anonymous_id) for anonymous_id, first in claims.items())


def record_claim(state: ContactState, claim: Claim) -> ContactState:
    """Keep the winning link of an anonymous id: the earliest (a shared computer's cookie
    stays with the first person identified on it); refused once any copy of it was (its
    contact's cap pushed it out). Returns `state` itself if nothing changed."""
    known = state.claim
    if known is not None and (known.key(), not known.refused) <= (claim.key(), not claim.refused):
        return state
    claimed = state.copy()
    claimed.claim = claim
    return claimed


def winner(state: ContactState) -> str | None:
    """The contact an id is merged into, or None: no link, the winning link was refused (the
    contact has its `max_linked_ids` earlier ones), or the id has linked ids of its own (it
    is a contact; a contact is never merged into another, so links never chain)."""
    if state.claim is None or state.claim.refused or state.claims:
        return None
    return state.claim.contact_id


def is_published(state: ContactState) -> bool:
    """Whether a key has a snapshot of its own: not merged, and not a mere refused link
    (an id that only ever appeared in links beyond a contact's cap has nothing to score)."""
    return winner(state) is None and (state.claim is None or bool(state.seen))


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
        state = state.copy()
        state.sent_to = target
    return state, sends


def detach(state: ContactState, version: int) -> list[tuple[str, Part]]:
    """An id erased: the contact holding its part lets it go."""
    return [] if state.sent_to is None else [(state.sent_to, Part(version, None))]


def part_of(state: ContactState) -> ContactState:
    """What a contact needs of an anonymous id's state: its history; not its stream
    positions, de-duplication window or identity bookkeeping."""
    part = state.copy()
    part.seen, part.positions, part.claims, part.parts, part.folded = b"", {}, {}, {}, None
    part.claim = part.sent_to = part.account_sent = None
    return part


def version_of(positions: dict[str, int]) -> int:
    """A hand-over's (and an account record's) version: grows with every record applied to
    the id, from any input, and is the same when a replay after a crash recomputes the
    state. A profile started after an erasure has no positions yet: its versions start again."""
    return sum(offset + 1 for offset in positions.values())


def link_bytes(link: Link) -> bytes:
    claim = link.claim
    refused = (1,) if claim.refused else ()
    return orjson.dumps(
        [IDENTITY_FORMAT, "link", link.anonymous_id, claim.contact_id, claim.occurred_ms, claim.tie, *refused]
    )


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
    if kind == "link" and len(fields) in (6, 7):
        contact_id, occurred_ms, tie, *refused = fields[3:]
        if (
            isinstance(contact_id, str)
            and isinstance(occurred_ms, int)
            and isinstance(tie, int)
            and refused in ([], [1])
        ):
            return Link(anonymous_id, Claim(contact_id, occurred_ms, tie, bool(refused)))
    elif kind == "part" and len(fields) == 5 and isinstance(fields[3], int):
        nested = fields[4]
        return Handover(anonymous_id, Part(fields[3], None if nested is None else from_fields(nested)))
    raise ValueError(f"malformed identity record of kind {kind!r}")
