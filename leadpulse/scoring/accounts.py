"""Accounts: which company a contact belongs to, and what an account looks like from its
members' latest snapshots.

An account snapshot is a pure function of the set of its members' latest records (and the
rules), evaluated at the newest member time: the stream, which folds member records in
whatever order Kafka delivers them, and the offline scorer, which builds them from the
final contact states, therefore publish the same account snapshot.

The stream keeps each account under many keys, none of which grows with the account (one
per member, one per departure, one small aggregate), and an index derived from them that
updates the snapshot in O(log n) per member record: an account of 100,000 members stays
far below the broker's record limit and costs about what a small one costs per record.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sortedcontainers import SortedKeyList, SortedList

from leadpulse.scoring.domains import account_of_state
from leadpulse.scoring.engine import Reason, Snapshot, output_id
from leadpulse.scoring.rules import AccountRules, PropertyValue, Rules, band_of, hot_hysteresis
from leadpulse.scoring.state import ContactState

# 1: one value of every member, positioned in the prefix-named account-members (read to migrate)
MEMBER_FORMAT, LEGACY_ACCOUNT_FORMAT, ACCOUNT_FORMAT = 1, 1, 2
DEPARTED = "departed:"  # prefix of the digest a leave is kept under (departed())


@dataclass(frozen=True, slots=True)
class Member:
    """What an account keeps of one contact: its latest snapshot, cut to what the account
    snapshot reads, at the snapshot's time; `left` marks a contact that moved to another
    account or was erased (kept, so that an older record arriving late cannot bring it
    back, under `departed(contact_id)`), `erased` a leave because the contact was erased.
    `version` orders one contact's records (`supersedes`): it grows with every record the
    contact's state applied, and a replay recomputes it."""

    contact_id: str
    at_ms: int
    left: bool = False
    score: int = 0
    fit: float = 0.0
    temperature: int = 0
    stage: str = ""
    attributes: tuple[tuple[str, PropertyValue], ...] = ()
    reasons: tuple[Reason, ...] = ()
    version: int = 0
    erased: bool = False


def member_of(view: Snapshot, state: ContactState, rules: Rules, version: int = 0) -> Member:
    wanted = rules.accounts.member_attributes
    attributes = tuple((name, state.profile[name].value) for name in wanted if name in state.profile)
    return Member(
        contact_id=view.contact_id,
        at_ms=view.updated_ms,
        score=view.score,
        fit=view.fit,
        temperature=view.temperature,
        stage=view.stage,
        attributes=attributes,
        reasons=view.reasons[: rules.accounts.member_reasons],
        version=version,
    )


def leaving(contact_id: str, at_ms: int, version: int = 0, *, erased: bool = False) -> Member:
    return Member(contact_id, at_ms, left=True, version=version, erased=erased)


def account_updates(
    state: ContactState, view: Snapshot, rules: Rules, version: int = 0
) -> tuple[str | None, list[tuple[str, Member]]]:
    """What publishing `view` sends to accounts: a leave record to the account the contact
    was last sent to if it has changed, and the member record to its current one, both at
    the contact's `version` (identity.version_of its positions). Returns the current
    account, to keep with the stored state: the view's (`state`'s own, account_of_state,
    which the snapshot has read already)."""
    account = view.account_id
    updates: list[tuple[str, Member]] = []
    if state.account_sent is not None and state.account_sent != account:
        updates.append((state.account_sent, leaving(state.contact_id, view.updated_ms, version)))
    if account is not None:
        updates.append((account, member_of(view, state, rules, version)))
    return account, updates


@dataclass(frozen=True, slots=True)
class TopContact:
    contact_id: str
    score: int
    temperature: int
    stage: str
    attributes: tuple[tuple[str, PropertyValue], ...]
    reasons: tuple[Reason, ...]


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    account_id: str
    score: int
    temperature: int
    temperature_label: str
    contacts: int
    engaged_contacts: int
    committee_covered: tuple[str, ...]
    committee_missing: tuple[str, ...]
    coverage: float
    best_fit: float
    best_fit_contact: str
    top_contacts: tuple[TopContact, ...]
    rules_version: str
    updated_ms: int


@dataclass(frozen=True, slots=True)
class HotAccount:
    id: str
    account_id: str
    occurred_ms: int
    cause_contact_id: str
    snapshot: AccountSnapshot


def account_snapshot(account_id: str, records: Iterable[Member], rules: Rules) -> AccountSnapshot | None:
    """The account read from a set of its members' latest records (the definition, and how
    the offline scorer reads it); None once no contact is a member.

    score = Σ top_weights[i] * (i-th best member score) + committee_points * coverage,
    clamped to 0-100 and rounded; coverage = share of the committee roles held by an engaged
    member (score ≥ engaged_score). Evaluated at the newest member time: a function of the
    set of records alone, whatever order they were folded in. The stream keeps the same
    parts up to date in an `AccountState` instead of sorting every member again."""
    config = rules.accounts
    members = sorted((m for m in records if not m.left), key=_rank)
    if not members:
        return None
    engaged = [m for m in members if m.score >= config.engaged_score]
    covered = tuple(
        role.name for role in config.committee if any(role.contains(dict(m.attributes), m.fit) for m in engaged)
    )
    best = min(members, key=_fit_rank)
    updated_ms = max(m.at_ms for m in members)
    return _assemble(
        account_id,
        rules,
        top=members[: _ranked(config)],
        contacts=len(members),
        engaged=len(engaged),
        covered=covered,
        best=best,
        updated_ms=updated_ms,
    )


def _rank(member: Member) -> tuple[int, str]:
    """Best score first; the contact id breaks ties."""
    return -member.score, member.contact_id


def _fit_rank(member: Member) -> tuple[float, str]:
    return -member.fit, member.contact_id


def _ranked(config: AccountRules) -> int:
    """How many of the best members an account snapshot reads: its weights and its top contacts."""
    return max(len(config.top_weights), config.top_contacts)


def _assemble(
    account_id: str,
    rules: Rules,
    *,
    top: Sequence[Member],
    contacts: int,
    engaged: int,
    covered: tuple[str, ...],
    best: Member,
    updated_ms: int,
) -> AccountSnapshot:
    """The snapshot from its parts (the best members by score, counts, roles covered, best
    fit, newest time), however they were found: one formula for the offline scorer and
    the stream."""
    config = rules.accounts
    coverage = len(covered) / len(config.committee) if config.committee else 0.0
    weighted = math.fsum(w * m.score for w, m in zip(config.top_weights, top, strict=False))
    score = int(min(max(weighted + config.committee_points * coverage, 0.0), 100.0) + 0.5)
    temperature = band_of(score, config.band_floors)
    return AccountSnapshot(
        account_id=account_id,
        score=score,
        temperature=temperature,
        temperature_label=config.band_labels[temperature - 1],
        contacts=contacts,
        engaged_contacts=engaged,
        committee_covered=covered,
        committee_missing=tuple(role.name for role in config.committee if role.name not in covered),
        coverage=round(coverage, 3),
        best_fit=best.fit,
        best_fit_contact=best.contact_id,
        top_contacts=tuple(
            TopContact(m.contact_id, m.score, m.temperature, m.stage, m.attributes, m.reasons)
            for m in top[: config.top_contacts]
        ),
        rules_version=rules.version,
        updated_ms=updated_ms,
    )


@dataclass(frozen=True, slots=True)
class Departure:
    """What an account keeps of a contact that left (moved or was erased): when, under
    `departed(contact_id)`, so that an older record arriving late cannot bring it back."""

    at_ms: int
    offset: int | None  # of the `account-members` record it came with
    version: int = 0  # the leave record's (Member.version)
    erased: bool = False
    due_ms: int | None = None  # when it expires (scoring.expiry; None: stored before markers expired)


class AccountState:
    """The stream's account: the latest record per contact, indexed so that a member record
    costs O(log n) whatever the account's size (sorted by score and by fit, member times,
    engaged members per committee role), the hot-account hysteresis, and stream positions.

    What is stored (streams.tables.AccountTable) is one key per member, one per departure
    and one small aggregate per account: each bounded by a member record, none growing with
    the account. This index is derived from them (`restore`), so it is never stored."""

    def __init__(self, account_id: str, rules: Rules) -> None:
        self.account_id = account_id
        self.rules = rules
        self.hot_armed = True
        self.temperature = 0
        self.position: int | None = None  # the last `account-members` offset settled: a replay alerts no more
        self.members: dict[str, Member] = {}
        self.offsets: dict[str, int] = {}  # contact id -> offset of the record its member entry came with
        self.departed: dict[str, Departure] = {}  # departed(contact id) -> its leave
        # What every member was last checked against (agents.accounts: the size rule of the
        # record limits then read), so that an index is checked once per rule; an attribute
        # rather than a weak reference to the index, which a compiled class does not take.
        self.checked_against: object | None = None
        self.changed_members: set[str] = set()  # entries to store (a member gone: deleted)
        self.changed_departed: set[str] = set()
        self._by_score: Any = SortedKeyList(key=_rank)
        self._by_fit: Any = SortedKeyList(key=_fit_rank)
        self._times: Any = SortedList()
        self._roles: dict[str, tuple[int, ...]] = {}  # engaged member -> indexes of the committee roles it holds
        self._held = [0] * len(rules.accounts.committee)  # engaged members holding each role

    def __len__(self) -> int:
        """Entries held (members and departures): what the worker's cache of accounts counts."""
        return len(self.members) + len(self.departed)

    def snapshot(self) -> AccountSnapshot | None:
        """`account_snapshot` over the members, from the index: O(log n)."""
        if not self.members:
            return None
        config = self.rules.accounts
        covered = tuple(role.name for role, held in zip(config.committee, self._held, strict=True) if held)
        return _assemble(
            self.account_id,
            self.rules,
            top=self._by_score[: _ranked(config)],
            contacts=len(self.members),
            engaged=len(self._roles),
            covered=covered,
            best=self._by_fit[0],
            updated_ms=self._times[-1],
        )

    def add(self, member: Member, offset: int | None) -> None:
        self._enter(member, offset, self._roles_of(member))
        self._by_score.add(member)
        self._by_fit.add(member)
        self._times.add(member.at_ms)

    def add_all(self, entries: Iterable[tuple[Member, int | None]]) -> None:
        """`add` for many members at once (reading an account back): the indexes are sorted
        once, and members with the same attributes and fit share their roles."""
        members: list[Member] = []
        known: dict[tuple[Any, ...], tuple[int, ...] | None] = {}
        for member, offset in entries:
            traits = (member.attributes, member.fit, member.score >= self.rules.accounts.engaged_score)
            roles = known.get(traits)
            if roles is None:
                roles = known[traits] = self._roles_of(member)
            self._enter(member, offset, roles)
            members.append(member)
        self._by_score.update(members)
        self._by_fit.update(members)
        self._times.update(member.at_ms for member in members)

    def _roles_of(self, member: Member) -> tuple[int, ...] | None:
        """The committee roles an engaged member holds (indexes); None for a member not engaged."""
        config = self.rules.accounts
        if member.score < config.engaged_score:
            return None
        profile = dict(member.attributes)
        return tuple(i for i, role in enumerate(config.committee) if role.contains(profile, member.fit))

    def _enter(self, member: Member, offset: int | None, roles: tuple[int, ...] | None) -> None:
        self.members[member.contact_id] = member
        if offset is not None:
            self.offsets[member.contact_id] = offset
        if roles is not None:
            self._roles[member.contact_id] = roles
            for index in roles:
                self._held[index] += 1

    def remove(self, member: Member) -> None:
        del self.members[member.contact_id]
        self.offsets.pop(member.contact_id, None)
        self._by_score.remove(member)
        self._by_fit.remove(member)
        self._times.remove(member.at_ms)
        for index in self._roles.pop(member.contact_id, ()):
            self._held[index] -= 1


def departed(contact_id: str) -> str:
    """The key and id an account keeps a contact's leave under: a digest, so that the
    account's compacted changelog does not keep an erased contact's id in clear
    (docs/guarantees.md, "Erasure")."""
    return DEPARTED + hashlib.sha256(contact_id.encode()).hexdigest()


def supersedes(record: Member, known: Member | Departure) -> bool:
    """Whether `record` is at least as new as the contact's record the account holds: by
    version, then by snapshot time; after an erasure, by time.

    Not by time alone: a contact that loses an anonymous id's part (identity stitching) is
    published again at its own history's time, earlier than its last record, yet it is the
    newer record; its version grew with the hand-over it applied. A replay after a crash
    re-sends older records with higher `account-members` offsets, and their older versions
    (the same state recomputed) refuse them. Records of one version hold one state published
    again (a cooling re-read): the later time wins. An erased contact's profile is gone, and
    one started after the grace counts its version from nothing: its records are told from
    the erased profile's by time, the erasure leave's being later than any of those."""
    if known.erased:
        return record.at_ms >= known.at_ms
    return (record.version, record.at_ms) >= (known.version, known.at_ms)


def fold(state: AccountState, record: Member, offset: int | None = None, expires_ms: int | None = None) -> bool:
    """Keep `record` if it is the contact's newest (`supersedes`); say whether the account changed.
    A leave is kept as a departure marker until `expires_ms` (scoring.expiry).

    A tie goes to the record that arrives later: one contact's records reach one account in
    the order they were sent (the same partition, each batch sent after the previous one
    was acknowledged). A record at or below the offset of the one the account holds for
    the contact is a replay and changes nothing."""
    contact, marker = record.contact_id, departed(record.contact_id)
    member, gone = state.members.get(contact), state.departed.get(marker)
    known: Member | Departure | None
    if member is not None:
        known, known_offset = member, state.offsets.get(contact)
    elif gone is not None:
        known, known_offset = gone, gone.offset
    else:
        known, known_offset = None, None
    if offset is not None and known_offset is not None and offset <= known_offset:
        return False
    if known is not None and not supersedes(record, known):
        return False
    if member is not None:
        state.remove(member)
        state.changed_members.add(contact)
    if gone is not None:
        del state.departed[marker]
        state.changed_departed.add(marker)
    if record.left:
        state.departed[marker] = Departure(record.at_ms, offset, record.version, record.erased, expires_ms)
        state.changed_departed.add(marker)
    else:
        state.add(record, offset)
        state.changed_members.add(contact)
    return True


def settle(state: AccountState, cause: Member) -> tuple[AccountSnapshot | None, HotAccount | None]:
    """The account's snapshot after `cause` was folded in, and the hot-account alert it
    fires, if any (one per episode: the hysteresis of hot leads, on the account's bands).
    Settling again without a change in between fires nothing."""
    view = state.snapshot()
    score = 0 if view is None else view.score
    config: AccountRules = state.rules.accounts
    state.hot_armed, fired = hot_hysteresis(state.hot_armed, score, config.hot_floor, config.rearm_gap)
    state.temperature = 0 if view is None else view.temperature
    if not fired or view is None:
        return view, None
    cause_id = f"{cause.contact_id}@{cause.at_ms}"
    alert = HotAccount(
        output_id(state.account_id, "hot-account", cause_id), state.account_id, cause.at_ms, cause.contact_id, view
    )
    return view, alert


def receive(
    state: AccountState, record: Member, offset: int, expires_ms: int | None = None
) -> tuple[bool, HotAccount | None]:
    """The stream's step for the `account-members` record at `offset`: (a replay, the alert
    it fires). After a crash, records are delivered again from the last commit: a member
    entry stored with a later record keeps it, and an offset at or below the account's
    position alerts no more (its alerts were delivered before the account was stored).
    Each entry carries its own offset, so an account whose entries reached the changelog
    only in part is completed by the replay."""
    fold(state, record, offset, expires_ms)
    if state.position is not None and offset <= state.position:
        return True, None
    state.position = offset
    return False, settle(state, record)[1]


def account_members(contacts: Iterable[tuple[ContactState, Snapshot]], rules: Rules) -> list[tuple[str, Member]]:
    """(account id, member) for each contact that names an account, in the order given (the
    offline scorer, from final contact states and their snapshots): the half of reading
    accounts that needs the contacts' states, so that processes holding disjoint contacts
    (cli.parallel) can each compute theirs."""
    members = []
    for state, view in contacts:
        account = account_of_state(state)
        if account is not None:
            members.append((account, member_of(view, state, rules)))
    return members


def accounts_from(members: Iterable[tuple[str, Member]], rules: Rules) -> list[AccountSnapshot]:
    """Account snapshots from members given in contact id order, sorted by account id."""
    grouped: dict[str, list[Member]] = {}
    for account, member in members:
        grouped.setdefault(account, []).append(member)
    views = (account_snapshot(account, members, rules) for account, members in sorted(grouped.items()))
    return [view for view in views if view is not None]


def member_to_bytes(record: Member) -> bytes:
    """The `account-members` record (internal): a compact JSON array, the version last (a
    record written before versions has none: version 0, older than any record since)."""
    if record.left:  # 2: erased
        return orjson.dumps([MEMBER_FORMAT, record.contact_id, record.at_ms, 2 if record.erased else 1, record.version])
    return orjson.dumps(
        [
            MEMBER_FORMAT,
            record.contact_id,
            record.at_ms,
            0,
            record.score,
            record.fit,
            record.temperature,
            record.stage,
            [list(pair) for pair in record.attributes],
            [[r.signal, r.part, r.points] for r in record.reasons],
            record.version,
        ]
    )


def member_from_bytes(data: bytes) -> Member:
    return _member(orjson.loads(data))


def _member(fields: Any) -> Member:
    if not isinstance(fields, list) or not fields or fields[0] != MEMBER_FORMAT:
        raise ValueError("not an account member record")
    if fields[3]:
        return Member(fields[1], fields[2], left=True, version=_version(fields, 4), erased=fields[3] == 2)
    _, contact_id, at_ms, _, score, fit, temperature, stage, attributes, reasons = fields[:10]
    return Member(
        contact_id,
        at_ms,
        False,
        score,
        fit,
        temperature,
        stage,
        tuple((name, value) for name, value in attributes),
        tuple(Reason(signal, part, points) for signal, part, points in reasons),
        _version(fields, 10),
    )


def _version(fields: list[Any], index: int) -> int:
    """The version at `index`, or 0 in a record written before versions."""
    if len(fields) == index:
        return 0
    version = fields[index]
    if len(fields) != index + 1 or not isinstance(version, int) or isinstance(version, bool):
        raise ValueError("malformed account member record")
    return version


# --- storage: one key per member and per departure, one small aggregate per account ---------

ENTRY_KEY = b"\xff"  # starts every entry key: no UTF-8 text (an account id, the aggregate's key) starts with 0xff
MEMBER_ENTRY, DEPARTED_ENTRY = b"m", b"d"


def aggregate_key(account_id: str) -> bytes:
    """The account's own record, under its id (as the whole account was before: the value
    of an older version is read there and migrated)."""
    return account_id.encode()


def entries_prefix(account_id: str) -> bytes:
    """What every entry key of the account starts with, and no other account's: the id's
    length comes first, so no id is a prefix of another's entries."""
    encoded = account_id.encode()
    return ENTRY_KEY + len(encoded).to_bytes(2, "big") + encoded


def member_key(account_id: str, contact_id: str) -> bytes:
    return entries_prefix(account_id) + MEMBER_ENTRY + contact_id.encode()


def departed_key(account_id: str, marker: str) -> bytes:
    return entries_prefix(account_id) + DEPARTED_ENTRY + marker.encode()


@dataclass(frozen=True, slots=True)
class Aggregate:
    """The account's own stored record: hysteresis, position and the record last published
    (served by GET /accounts/{id}); bounded, as that record is, by the top contacts.
    `legacy` holds the members of a value written by an older version, which kept every
    member in this one record (format 1), to be moved under their own keys."""

    account_id: str
    hot_armed: bool
    temperature: int
    position: int | None
    published: Any
    legacy: tuple[Member, ...] = ()


def aggregate_to_bytes(state: AccountState, published: bytes) -> bytes:
    return orjson.dumps(
        [
            ACCOUNT_FORMAT,
            state.account_id,
            state.hot_armed,
            state.temperature,
            state.position,
            orjson.Fragment(published),
        ]
    )


def aggregate_from_bytes(data: bytes) -> Aggregate:
    fields = orjson.loads(data)
    if not isinstance(fields, list) or not fields or fields[0] not in (LEGACY_ACCOUNT_FORMAT, ACCOUNT_FORMAT):
        raise ValueError("unsupported account state format")
    _, account_id, armed, temperature, position, rest = fields
    if fields[0] == LEGACY_ACCOUNT_FORMAT:
        # Its position is an offset of the prefix-named account-members topic, before the app id
        # named it (streams/migration.py): read with none, as the new topic's records are new.
        return Aggregate(account_id, armed, temperature, None, None, tuple(map(_member, rest)))
    return Aggregate(account_id, armed, temperature, position, rest)


def changes(state: AccountState, published: bytes | None) -> list[tuple[bytes, bytes | None]]:
    """The keys to store since the last call: changed entries (None: deleted), then the
    aggregate, deleted with the last member (`published` is then None)."""
    account_id, records = state.account_id, []
    for contact in sorted(state.changed_members):
        member = state.members.get(contact)
        value = (
            None
            if member is None
            else orjson.dumps([state.offsets.get(contact), orjson.Fragment(member_to_bytes(member))])
        )
        records.append((member_key(account_id, contact), value))
    for marker in sorted(state.changed_departed):
        gone = state.departed.get(marker)
        records.append(
            (
                departed_key(account_id, marker),
                None if gone is None else orjson.dumps(_departure_fields(gone)),
            )
        )
    state.changed_members.clear()
    state.changed_departed.clear()
    stored = None if published is None else aggregate_to_bytes(state, published)
    records.append((aggregate_key(account_id), stored))
    return records


def _departure_fields(gone: Departure) -> list[Any]:
    fields: list[Any] = [gone.offset, gone.at_ms, gone.version, gone.erased]
    return fields if gone.due_ms is None else [*fields, gone.due_ms]


def departure_due(value: bytes) -> int | None:
    """When a stored departure expires (None: stored before departures expired)."""
    fields = orjson.loads(value)
    return fields[4] if len(fields) > 4 else None


def departure_owner(key: bytes) -> tuple[str, str]:
    """(account id, marker) of a departure's key (`departed_key`)."""
    size = int.from_bytes(key[len(ENTRY_KEY) : len(ENTRY_KEY) + 2], "big")
    start = len(ENTRY_KEY) + 2
    return key[start : start + size].decode(), key[start + size + len(DEPARTED_ENTRY) :].decode()


def new_departures(state: AccountState) -> list[tuple[bytes, int]]:
    """(departure key, due time) of the departures changed since the last `changes`."""
    found = []
    for marker in sorted(state.changed_departed):
        gone = state.departed.get(marker)
        if gone is not None and gone.due_ms is not None:
            found.append((departed_key(state.account_id, marker), gone.due_ms))
    return found


def restore(
    account_id: str, aggregate: Aggregate | None, entries: Iterable[tuple[bytes, bytes]], rules: Rules
) -> AccountState:
    """The account from its stored aggregate and entries (the keys under `entries_prefix`).
    A format-1 aggregate's members are taken as entries at its position, all to be stored."""
    state = AccountState(account_id, rules)
    skip = len(entries_prefix(account_id))
    members = []
    for key, value in entries:
        kind = key[skip : skip + 1]
        offset, body, *since = orjson.loads(value)  # a departure stored before versions has no version, erased
        if kind == MEMBER_ENTRY:
            members.append((_member(body), offset))
        elif kind == DEPARTED_ENTRY:
            state.departed[key[skip + 1 :].decode()] = Departure(body, offset, *since)
    state.add_all(members)
    if aggregate is None:
        return state
    state.hot_armed, state.temperature, state.position = aggregate.hot_armed, aggregate.temperature, aggregate.position
    for record in aggregate.legacy:
        if record.left and record.contact_id.startswith(DEPARTED):
            state.departed[record.contact_id] = Departure(
                record.at_ms, aggregate.position, record.version, record.erased
            )
            state.changed_departed.add(record.contact_id)
        else:  # a member, or a leave an older version kept in clear
            fold(state, record, aggregate.position)
    return state
