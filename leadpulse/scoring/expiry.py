"""Ageing out: anonymous contacts nobody identified, and accounts' departure markers, are not
kept forever (docs/scoring.md#ageing-out).

**Anonymous contacts.** A contact that *ages* is one no event identified (no contact id, no
e-mail: `ContactState.identified`) and that takes part in no identity link (no claim on it,
refused or not, no ids of its own linked, no parts): a cookie or a bot id seen on its own.
It is **due** `[retention] anonymous_after` (90 days) after its latest event, and a due
contact is **expired**: deleted, as if never seen. So:

- an event for it that occurred after it was due starts a new contact (the rule that needs
  no clock: `expired(state, event time)`), in the worker and in the offline scorer alike;
- the worker also expires it once its **clock** passes the due time: the record timestamp
  of the partition's records (capped by the worker's clock; cooling ticks count, and every
  cooling interval a tick reaches each partition), the clock erasure markers expire by. An
  event that arrives then for it starts a new contact whatever its own time;
- the offline scorer expires it at the end of its run as of `--at` (else the input's latest
  event time), and on the way when one of its events occurred after it was due.

The two decide alike except for an event of such a contact that reaches the worker after
the record clock passed the contact's due time although it occurred before it (a backfill,
an SDK that held events for weeks): the worker starts a new contact with it, the offline
scorer adds it to the old one. That is the record-timestamp seam erasure markers and
`max_future` share (docs/scoring.md#time). A linked id is never due: its history is its
contact's, and a later `identify` of an expired cookie finds nothing to hand over.

**Where the worker finds them.** An index in the contacts table, sorted by due time (one
key per ageing contact, written with its state): the worker reads the due part of it with
one seek per partition and batch, at most `AGING_BATCH` entries. An entry holds the due
time rounded up to a 1/1024th of `anonymous_after` (~2 h of 90 days), so that a visitor's
session moves it once, not at every batch; whether a contact is expired is always decided
on its exact due time.

**Departure markers** (scoring.accounts.Departure) keep a contact that left an account from
being brought back by an older record of it: only a re-delivered record can be older (one
contact's records reach an account in the order they were sent), and `account-members`
keeps a record at most its retention, so a marker is due that long after it was stored
(the accounts agent's record clock). An account with no members is already deleted; its
markers follow when due, and then nothing of it remains.
"""

from __future__ import annotations

from leadpulse.scoring.rules import Rules
from leadpulse.scoring.state import ContactState

AGING_PREFIX = b"\x00aging\x00"  # + partition (4 bytes) + due (8, big-endian: sorted by time) + contact id
DEPARTURES_PREFIX = b"\xfe"  # + partition + due + departure key: no account id (UTF-8) starts with 0xfe
AGING_BATCH = 200
"""Expired contacts (and departure markers) deleted per partition per batch, at most: a
million contacts due at once are deleted over the next batches and ticks, never in one."""
TICK_KEY = b"\x00tick"  # a tick's key (agents.scoring.cool_down): no contact, account or marker has it
Entry = tuple[bytes, bytes | None]  # a table key and its value; None deletes it


def ages(state: ContactState) -> bool:
    """Whether the contact can expire: anonymous, never identified, in no identity link."""
    return not (state.identified or state.claim is not None or state.claims or state.parts)


def due_ms(state: ContactState, rules: Rules) -> int | None:
    """When the contact expires (None: never)."""
    return state.last_event_ms + rules.anonymous_after_ms if ages(state) else None


def indexed_due(state: ContactState, rules: Rules) -> int | None:
    """The due time the contact's index entry holds: rounded up to the index's step."""
    due = due_ms(state, rules)
    return None if due is None else rounded_due(due, rules)


def rounded_due(due: int, rules: Rules) -> int:
    """`due` rounded up to the index's step, 1/1024th of `anonymous_after`."""
    step = max(rules.anonymous_after_ms // 1024, 1)
    return -(-due // step) * step


def expired(state: ContactState, at_ms: int, rules: Rules) -> bool:
    """Whether the contact is gone at `at_ms`: an event at that time starts a new one."""
    due = due_ms(state, rules)
    return due is not None and due < at_ms


def _partition(prefix: bytes, partition: int) -> bytes:
    return prefix + partition.to_bytes(4, "big")


def _entry(prefix: bytes, partition: int, due: int, rest: bytes) -> bytes:
    return _partition(prefix, partition) + max(due, 0).to_bytes(8, "big") + rest


def _end(prefix: bytes, partition: int, before_ms: int) -> bytes:
    """The first index key of `partition` not due before `before_ms`: due entries sort below it."""
    return _partition(prefix, partition) + max(before_ms, 0).to_bytes(8, "big")


def _due_of(prefix: bytes, key: bytes) -> int:
    start = len(prefix) + 4
    return int.from_bytes(key[start : start + 8], "big")


def aging_key(partition: int, due: int, contact_id: str) -> bytes:  # due: `indexed_due`
    """The contact's entry in its partition's index (partition first, for stores that keep
    every partition in one mapping)."""
    return _entry(AGING_PREFIX, partition, due, contact_id.encode())


def aging_range(partition: int, before_ms: int) -> tuple[bytes, bytes]:
    """The keys of `partition`'s index due before `before_ms`: [start, end)."""
    return _partition(AGING_PREFIX, partition), _end(AGING_PREFIX, partition, before_ms)


def aging_entry(key: bytes) -> tuple[int, str]:
    """(due, contact id) of an index key."""
    return _due_of(AGING_PREFIX, key), key[len(AGING_PREFIX) + 12 :].decode()


def index_moves(partition: int, contact_id: str, stored: int | None, due: int | None) -> list[Entry]:
    """The index records for a contact whose stored state was due at `stored` (None: not
    ageing, or not stored) and is now due at `due`: the old entry deleted, the new written."""
    if stored == due:
        return []
    moves: list[Entry] = []
    if stored is not None:
        moves.append((aging_key(partition, stored, contact_id), None))
    if due is not None:
        moves.append((aging_key(partition, due, contact_id), b""))
    return moves


def departure_entry(partition: int, due: int, key: bytes) -> bytes:
    """The index entry of the departure stored under `key` (scoring.accounts.departed_key)."""
    return _entry(DEPARTURES_PREFIX, partition, due, key)


def departures_range(partition: int, before_ms: int) -> tuple[bytes, bytes]:
    return _partition(DEPARTURES_PREFIX, partition), _end(DEPARTURES_PREFIX, partition, before_ms)


def departure_of(entry: bytes) -> tuple[int, bytes]:
    """(due, departure key) of an index entry."""
    return _due_of(DEPARTURES_PREFIX, entry), entry[len(DEPARTURES_PREFIX) + 12 :]
