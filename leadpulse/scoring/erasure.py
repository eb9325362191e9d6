"""Erasure: a `contact_erased` event deletes everything known about a contact.

What remains is a marker under a hash of the contact id (never the id itself) saying until
when events for that contact are to be dropped: events that occurred before the erasure
arrive late or are replayed after a crash, and a CRM sync or a queued campaign can still
send a few more. An event that occurred up to `[erasure] grace` after the erasure is
dropped; a later one starts a new profile (the person came back). Several erasures of one
contact keep the latest deadline, so the marker does not depend on arrival order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

ERASE_EVENT = "contact_erased"
MARKER_PREFIX = b"\x00erased\x00"  # no contact id starts with NUL: markers and contacts share a table


@dataclass(frozen=True, slots=True)
class Erasure:
    until_ms: int  # events that occurred up to then are dropped

    def forgets(self, occurred_ms: int) -> bool:
        return occurred_ms <= self.until_ms

    def merged(self, other: Erasure | None) -> Erasure:
        return self if other is None or other.until_ms <= self.until_ms else other


def erasure_of(occurred_ms: int, grace_ms: int) -> Erasure:
    return Erasure(occurred_ms + grace_ms)


def marker_key(contact_id: str) -> bytes:
    """Where the marker of `contact_id` is stored: a keyed-free hash, so the table and its
    changelog keep no e-mail address once the contact's own records are compacted away."""
    return MARKER_PREFIX + hashlib.blake2b(contact_id.encode(), digest_size=16).digest()


def is_marker(key: bytes) -> bool:
    return key.startswith(MARKER_PREFIX)


def marker_bytes(erasure: Erasure) -> bytes:
    return b"%d" % erasure.until_ms


def marker_from_bytes(data: bytes) -> Erasure:
    return Erasure(int(data))
