"""Erasure: a `contact_erased` event deletes everything known about a contact.

Who may erase: only `leadpulse erase` (or a CRM/admin tool writing the same records), through
the erasure-requests topic that only its principal may write (docs/erasure.md). The input
topic is written by web pages' public write keys and by every marketing tool: a
`contact_erased` found there is refused (a dead letter naming why), and the rules'
`[mapping]` may not turn a Segment `track` into one.

What remains is a marker under a hash of the contact id (never the id itself) saying until
when events for that contact are to be dropped: events that occurred before the erasure
arrive late or are replayed after a crash, and a CRM sync or a queued campaign can still
send a few more. An event that occurred up to `[erasure] grace` after the erasure is
dropped; a later one starts a new profile (the person came back). Several erasures of one
contact keep the latest deadline, so the marker does not depend on arrival order. A dropped
event that links anonymous ids erases them as of the erasure: the ids an erased person
linked are erased whether the linking event arrived before the erasure or after it (a replay
reads the erasure topic and the input in no fixed order).

A marker expires: it is deleted when its contact starts a new profile after the deadline,
and at the latest once a record whose time is past the deadline reaches its partition (an
expiry index, sorted by deadline, finds them without reading every marker).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

ERASE_EVENT = "contact_erased"
INTERNAL_PREFIX = b"\x00"  # no contact id starts with NUL: markers and contacts share a table
MARKER_PREFIX = b"\x00erased\x00"
EXPIRY_PREFIX = b"\x00expiry\x00"  # + deadline (8 bytes, big-endian: sorted by time) + the marker's digest
NOT_HERE = (
    "contact_erased is accepted only from the erasure-requests topic (leadpulse erase): "
    "producers of the input topic may not erase contacts"
)


@dataclass(frozen=True, slots=True)
class Erasure:
    until_ms: int  # events that occurred up to then are dropped

    def forgets(self, occurred_ms: int) -> bool:
        return occurred_ms <= self.until_ms

    def occurred_ms(self, grace_ms: int) -> int:
        """When the erasure that left this marker occurred (`erasure_of` inverted)."""
        return self.until_ms - grace_ms

    def merged(self, other: Erasure | None) -> Erasure:
        return self if other is None or other.until_ms <= self.until_ms else other


def erasure_of(occurred_ms: int, grace_ms: int) -> Erasure:
    return Erasure(occurred_ms + grace_ms)


def _digest(contact_id: str) -> bytes:
    return hashlib.blake2b(contact_id.encode(), digest_size=16).digest()


def marker_key(contact_id: str) -> bytes:
    """Where the marker of `contact_id` is stored: a keyed-free hash, so the table and its
    changelog keep no e-mail address once the contact's own records are compacted away."""
    return MARKER_PREFIX + _digest(contact_id)


def expiry_prefix(partition: int) -> bytes:
    """Where a partition's expiry index starts: the partition first, for stores that keep
    every partition in one mapping (Faust's memory store)."""
    return EXPIRY_PREFIX + partition.to_bytes(4, "big")


def expiry_key(partition: int, marker: bytes, erasure: Erasure) -> bytes:
    """The marker's entry in its partition's expiry index: its deadline next, so a range read
    from the start of the index finds exactly the markers that are due."""
    return expiry_prefix(partition) + max(erasure.until_ms, 0).to_bytes(8, "big") + marker[len(MARKER_PREFIX) :]


def expiry_end(partition: int, before_ms: int) -> bytes:
    """The first index key of `partition` not due before `before_ms`: due entries sort below it."""
    return expiry_prefix(partition) + max(before_ms, 0).to_bytes(8, "big")


def expiry_until(key: bytes) -> int:
    start = len(EXPIRY_PREFIX) + 4
    return int.from_bytes(key[start : start + 8], "big")


def marker_of_expiry(key: bytes) -> bytes:
    return MARKER_PREFIX + key[len(EXPIRY_PREFIX) + 12 :]


def is_marker(key: bytes) -> bool:
    """A marker or an expiry index entry: kept among the contacts, never one of them."""
    return key.startswith(INTERNAL_PREFIX)


def marker_bytes(erasure: Erasure) -> bytes:
    return b"%d" % erasure.until_ms


def marker_from_bytes(data: bytes) -> Erasure:
    return Erasure(int(data))
