"""Accounts: which company a contact belongs to, and what an account looks like from its
members' latest snapshots.

An account snapshot is a pure function of the set of its members' latest records (and the
rules), evaluated at the newest member time: the stream, which folds member records in
whatever order Kafka delivers them, and the offline scorer, which builds them from the
final contact states, therefore publish the same account snapshot.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from leadpulse.scoring.domains import account_of_state
from leadpulse.scoring.engine import Reason, Snapshot, output_id
from leadpulse.scoring.rules import AccountRules, PropertyValue, Rules, band_of, hot_hysteresis
from leadpulse.scoring.state import ContactState

MEMBER_FORMAT, ACCOUNT_FORMAT = 1, 2
# An account state whose position is an offset of PREFIX account-members, before the app id named
# the topic (streams/migration.py): read with no position, as the new topic's records are new.
PREFIX_NAMED_FORMAT = 1
DEPARTED = "departed:"  # prefix of the digest a leave is kept under (departed())


@dataclass(frozen=True, slots=True)
class Member:
    """What an account keeps of one contact: its latest snapshot, cut to what the account
    snapshot reads, at the snapshot's time; `left` marks a contact that moved to another
    account or was erased (kept, so that an older record arriving late cannot bring it
    back, under `departed(contact_id)`)."""

    contact_id: str
    at_ms: int
    left: bool = False
    score: int = 0
    fit: float = 0.0
    temperature: int = 0
    stage: str = ""
    attributes: tuple[tuple[str, PropertyValue], ...] = ()
    reasons: tuple[Reason, ...] = ()


def member_of(view: Snapshot, state: ContactState, rules: Rules) -> Member:
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
    )


def leaving(contact_id: str, at_ms: int) -> Member:
    return Member(contact_id, at_ms, left=True)


def account_updates(state: ContactState, view: Snapshot, rules: Rules) -> tuple[str | None, list[tuple[str, Member]]]:
    """What publishing `view` sends to accounts: a leave record to the account the contact
    was last sent to if it has changed, and the member record to its current one. Returns
    the current account, to keep with the stored state."""
    account = account_of_state(state)
    updates: list[tuple[str, Member]] = []
    if state.account_sent is not None and state.account_sent != account:
        updates.append((state.account_sent, leaving(state.contact_id, view.updated_ms)))
    if account is not None:
        updates.append((account, member_of(view, state, rules)))
    return account, updates


@dataclass(slots=True)
class AccountState:
    """The stream's per-account state: the latest record per contact, the hot-account
    hysteresis, and the offset of the last `account-members` record applied (a replay after
    a crash re-delivers offsets at or below it)."""

    account_id: str
    members: dict[str, Member] = field(default_factory=dict)
    hot_armed: bool = True
    temperature: int = 0
    position: int | None = None


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


def newer(record: Member, known: Member | None) -> bool:
    """Newest by snapshot time wins. A tie goes to the record that arrives later: one
    contact's records reach one account in the order they were sent (the same partition,
    each batch sent after the previous one was acknowledged)."""
    return known is None or record.at_ms >= known.at_ms


def departed(contact_id: str) -> str:
    """The key and id an account keeps a contact's leave under: a digest, so that the
    account's compacted changelog does not keep an erased contact's id in clear
    (docs/guarantees.md, "Erasure")."""
    return DEPARTED + hashlib.sha256(contact_id.encode()).hexdigest()


def fold(state: AccountState, record: Member) -> bool:
    """Keep `record` if it is the contact's newest; say whether the account changed."""
    members, marker = state.members, departed(record.contact_id)
    if not newer(record, members.get(record.contact_id) or members.get(marker)):
        return False
    if record.left:
        members.pop(record.contact_id, None)
        members[marker] = Member(marker, record.at_ms, left=True)
    else:
        members.pop(marker, None)
        members[record.contact_id] = record
    return True


def account_snapshot(account_id: str, records: Iterable[Member], rules: Rules) -> AccountSnapshot | None:
    """The account read from its members' latest records; None once no contact is a member.

    score = Σ top_weights[i] * (i-th best member score) + committee_points * coverage,
    clamped to 0-100 and rounded; coverage = share of the committee roles held by an engaged
    member (score ≥ engaged_score). Evaluated at the newest member time: a function of the
    set of records alone, whatever order they were folded in."""
    config = rules.accounts
    members = sorted((m for m in records if not m.left), key=lambda m: (-m.score, m.contact_id))
    if not members:
        return None
    engaged = [m for m in members if m.score >= config.engaged_score]
    covered = tuple(
        role.name for role in config.committee if any(role.contains(dict(m.attributes), m.fit) for m in engaged)
    )
    coverage = len(covered) / len(config.committee) if config.committee else 0.0
    weighted = math.fsum(w * m.score for w, m in zip(config.top_weights, members, strict=False))
    score = int(min(max(weighted + config.committee_points * coverage, 0.0), 100.0) + 0.5)
    temperature = band_of(score, config.band_floors)
    best = min(members, key=lambda m: (-m.fit, m.contact_id))
    return AccountSnapshot(
        account_id=account_id,
        score=score,
        temperature=temperature,
        temperature_label=config.band_labels[temperature - 1],
        contacts=len(members),
        engaged_contacts=len(engaged),
        committee_covered=covered,
        committee_missing=tuple(role.name for role in config.committee if role.name not in covered),
        coverage=round(coverage, 3),
        best_fit=best.fit,
        best_fit_contact=best.contact_id,
        top_contacts=tuple(
            TopContact(m.contact_id, m.score, m.temperature, m.stage, m.attributes, m.reasons)
            for m in members[: config.top_contacts]
        ),
        rules_version=rules.version,
        updated_ms=max(m.at_ms for m in members),
    )


def settle(state: AccountState, cause: Member, rules: Rules) -> tuple[AccountSnapshot | None, HotAccount | None]:
    """The account's snapshot after `cause` was folded in, and the hot-account alert it
    fires, if any (one per episode: the hysteresis of hot leads, on the account's bands)."""
    view = account_snapshot(state.account_id, state.members.values(), rules)
    score = 0 if view is None else view.score
    config: AccountRules = rules.accounts
    state.hot_armed, fired = hot_hysteresis(state.hot_armed, score, config.hot_floor, config.rearm_gap)
    state.temperature = 0 if view is None else view.temperature
    if not fired or view is None:
        return view, None
    cause_id = f"{cause.contact_id}@{cause.at_ms}"
    alert = HotAccount(
        output_id(state.account_id, "hot-account", cause_id), state.account_id, cause.at_ms, cause.contact_id, view
    )
    return view, alert


def accounts_of(contacts: Iterable[tuple[ContactState, Snapshot]], rules: Rules) -> list[AccountSnapshot]:
    """Account snapshots from final contact states and their snapshots (the offline scorer),
    sorted by account id."""
    return accounts_from(account_members(contacts, rules), rules)


def account_members(contacts: Iterable[tuple[ContactState, Snapshot]], rules: Rules) -> list[tuple[str, Member]]:
    """(account id, member) for each contact that names an account, in the order given: the
    half of `accounts_of` that needs the contacts' states, so that processes holding
    disjoint contacts (cli.parallel) can each compute theirs."""
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
    """The `account-members` record (internal): a compact JSON array."""
    if record.left:
        return orjson.dumps([MEMBER_FORMAT, record.contact_id, record.at_ms, 1])
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
        ]
    )


def member_from_bytes(data: bytes) -> Member:
    return _member(orjson.loads(data))


def _member(fields: Any) -> Member:
    if not isinstance(fields, list) or not fields or fields[0] != MEMBER_FORMAT:
        raise ValueError("not an account member record")
    if fields[3]:
        return Member(fields[1], fields[2], left=True)
    _, contact_id, at_ms, _, score, fit, temperature, stage, attributes, reasons = fields
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
    )


def account_to_bytes(state: AccountState) -> bytes:
    """The account table's value: its member records as they travel, plus the hysteresis
    and the stream position."""
    return orjson.dumps(
        [
            ACCOUNT_FORMAT,
            state.account_id,
            state.hot_armed,
            state.temperature,
            state.position,
            [orjson.Fragment(member_to_bytes(m)) for m in state.members.values()],
        ]
    )


def account_from_bytes(data: bytes) -> AccountState:
    fields = orjson.loads(data)
    if not isinstance(fields, list) or not fields or fields[0] not in (PREFIX_NAMED_FORMAT, ACCOUNT_FORMAT):
        raise ValueError("unsupported account state format")
    format_, account_id, armed, temperature, position, members = fields
    if format_ == PREFIX_NAMED_FORMAT:  # an offset in the old account-members topic: none in the new one yet
        position = None
    state = AccountState(account_id, {}, armed, temperature, position)
    for record in map(_member, members):
        if record.left and not record.contact_id.startswith(DEPARTED):  # stored in clear by an older version
            fold(state, record)
        else:
            state.members[record.contact_id] = record
    return state
