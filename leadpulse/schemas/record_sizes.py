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

The accounts agent's records (an account's snapshot, hot-account alert, aggregate and member
entries) are bounded per member instead (`AccountGuard`): an account takes a member only if
its records would fit with that member in every one of its top places. Whether a member is
taken depends on that member alone, never on the others or their order, so the stream and
the offline scorer, which builds accounts from the final contacts, keep the same members.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import orjson

from leadpulse.schemas.fields import MAX_ID
from leadpulse.schemas.limits import RECORD_OVERHEAD, RecordLimits, RecordTooLarge, record_bytes
from leadpulse.schemas.outputs import account_record, dumps, hot_account_record, output_record, snapshot_record
from leadpulse.scoring.accounts import (
    AccountSnapshot,
    AccountState,
    HotAccount,
    Member,
    TopContact,
    account_updates,
    aggregate_key,
    aggregate_to_bytes,
    member_key,
    member_to_bytes,
)
from leadpulse.scoring.engine import Applied, Event, HotLead, Reason, StageChange, output_id, snapshot, view_of
from leadpulse.scoring.rules import FUNNEL_STAGES, SIDE_STAGES, Rules, RulesError
from leadpulse.scoring.state import ContactState, to_bytes
from leadpulse.scoring.timeutil import MAX_MS

# How the offline scorer names the topics in its refusals (the worker names them as created).
CHANGELOG, SCORES, MEMBERS, HOT_LEADS, STAGE_CHANGES = (
    "contacts-changelog",
    "contact-scores",
    "account-members",
    "hot-leads",
    "stage-changes",
)
ACCOUNT_SCORES, HOT_ACCOUNTS, ACCOUNTS_CHANGELOG = "account-scores", "hot-accounts", "accounts-changelog"
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
    """`check_event` is called by the offline fold (scoring.replay.ScoreRun.guard) with each
    event's result before it is kept; it raises RecordTooLarge to refuse it."""

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

    def check_event(self, event: Event, applied: Applied) -> None:
        """Raise RecordTooLarge if keeping `applied` would make the worker write a record
        over the limit: one of its outputs, or the contact's publication. Called at every
        event as a bound method (an instance's `__call__` costs ~2,000 machine instructions
        more per call in CPython 3.11)."""
        for output in applied.outputs:
            if isinstance(output, HotLead):
                self.limits.check(HOT_LEADS, output.contact_id.encode(), dumps(output_record(output)))
            elif stage_change_bound(output) > self.limits.of(STAGE_CHANGES):  # else it fits: not encoded
                self.limits.check(STAGE_CHANGES, output.contact_id.encode(), dumps(output_record(output)))
        state = applied.state
        contact = state.contact_id
        # The most bytes one event can add to its contact's stored state.
        bound = self.measured.get(contact, 0) + len(orjson.dumps(event.properties)) + self._fixed_growth
        if bound + BOOKKEEPING_BYTES > self._limit:
            self._check(state)
            bound = len(to_bytes(state))
        self.measured[contact] = bound

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


# The widest value of each field an account record holds besides its top contacts: any
# member's id (best fit, the alert's cause), a float, a count, a stream position.
WIDEST_ID = "\x01" * MAX_ID  # 6 bytes a character in JSON, 1 in a key
WIDEST_KEY_ID = "\U0010ffff" * MAX_ID  # 4 bytes a character in both
WIDEST_FLOAT = -1.2345678901234567e300
WIDEST_COUNT = 2**63 - 1


@dataclass(frozen=True)
class AccountTopics:
    """The topics the accounts agent writes, by the names its limits know them by (the
    offline scorer's names by default; the worker's are its topics' own)."""

    scores: str = ACCOUNT_SCORES
    hot: str = HOT_ACCOUNTS
    changelog: str = ACCOUNTS_CHANGELOG


@dataclass
class AccountGuard:
    """Whether an account may take a member record: every record the accounts agent writes
    for an account fits its topic whichever members are its top contacts, as long as each
    one was taken. The rule, for one member alone: its own changelog entry fits, and so do
    the account's snapshot, hot-account alert and aggregate with this member in each of the
    `top_contacts` places and every other field at its widest (the longest ids, counts and
    labels, every committee role). A member refused is not one of the account's members:
    the worker dead-letters its record and keeps the contact's leave instead; the offline
    scorer leaves it out of the account.

    With the shipped rules and limits, the widest member any contact can send fits
    (`check_widest`, once): then every member is taken without a look."""

    rules: Rules
    limits: RecordLimits
    max_string: int  # LEADPULSE_MAX_STRING: the longest value a member record carries, in bytes as stored
    topics: AccountTopics = field(default_factory=AccountTopics)
    all_fit: bool = field(init=False)

    def __post_init__(self) -> None:
        try:
            self.check_widest()
        except RecordTooLarge:
            self.all_fit = False
        else:
            self.all_fit = True

    def check(self, account_id: str, member: Member) -> None:
        """Raise RecordTooLarge (naming the topic, the widest record's size and the limit)
        if `account_id` may not take `member` (a leave is always taken)."""
        if not self.all_fit and not member.left:
            self._check_member(account_id, member)

    def check_widest(self) -> None:
        """RecordTooLarge unless the widest member the rules let a contact send (every
        member attribute and reason at `max_string`, the widest ids) fits the widest
        account (an id as long as a value)."""
        account_id = "a" * self.max_string  # as many bytes in a key as in JSON: the widest in both
        for contact_id in (WIDEST_ID, WIDEST_KEY_ID):
            self._check_member(account_id, widest_member(self.rules, self.max_string, contact_id))

    def _check_member(self, account_id: str, member: Member) -> None:
        many = f"with this contact in each of its {self.rules.accounts.top_contacts} top places"
        entry = orjson.dumps([WIDEST_COUNT, orjson.Fragment(member_to_bytes(member))])
        self._check(self.topics.changelog, member_key(account_id, member.contact_id), entry, "its member entry")
        view = self._widest(account_id, member)
        published = dumps(account_record(view))
        key = aggregate_key(account_id)
        self._check(self.topics.scores, key, published, f"the account's snapshot {many}")
        alert = HotAccount(output_id(account_id), account_id, MAX_MS, WIDEST_ID, view)
        self._check(self.topics.hot, key, dumps(hot_account_record(alert)), f"a hot-account alert {many}")
        widest = AccountState(account_id, self.rules)  # the aggregate's own fields at their widest
        widest.hot_armed, widest.temperature, widest.position = False, view.temperature, WIDEST_COUNT
        aggregate = aggregate_to_bytes(widest, published)
        self._check(self.topics.changelog, key, aggregate, f"the account's own record {many}")

    def _check(self, topic: str, key: bytes, value: bytes, what: str) -> None:
        size, limit = record_bytes(key, value), self.limits.of(topic)
        if size > limit:
            raise RecordTooLarge(topic, size, limit, what)

    def _widest(self, account_id: str, member: Member) -> AccountSnapshot:
        config = self.rules.accounts
        top = TopContact(
            member.contact_id, member.score, member.temperature, member.stage, member.attributes, member.reasons
        )
        return AccountSnapshot(
            account_id=account_id,
            score=100,
            temperature=len(config.band_labels),
            temperature_label=max(config.band_labels, key=_json_size),
            contacts=WIDEST_COUNT,
            engaged_contacts=WIDEST_COUNT,
            committee_covered=tuple(role.name for role in config.committee),
            committee_missing=(),
            coverage=0.333,
            best_fit=WIDEST_FLOAT,
            best_fit_contact=WIDEST_ID,
            top_contacts=(top,) * config.top_contacts,
            rules_version=self.rules.version,
            updated_ms=MAX_MS,
        )


def widest_member(rules: Rules, max_string: int, contact_id: str = WIDEST_ID) -> Member:
    """The largest member record the rules let a contact send, with values at most
    `max_string` bytes as stored (LEADPULSE_MAX_STRING): every member attribute at its
    longest, and as many reasons as a member keeps, each naming the longest value."""
    config = rules.accounts
    value = "\x01" * (max_string // 6)  # 6 bytes a character as stored
    names = [*rules.fit, *rules.signal_categories]
    reason = Reason(f"{max(names, key=_json_size, default='')}: {value}", "engagement", WIDEST_FLOAT)
    return Member(
        contact_id=contact_id,
        at_ms=MAX_MS,
        score=100,
        fit=WIDEST_FLOAT,
        temperature=len(rules.band_labels),
        stage=max((*FUNNEL_STAGES, *SIDE_STAGES), key=len),
        attributes=tuple((name, value) for name in config.member_attributes),
        reasons=(reason,) * min(config.member_reasons, rules.top_reasons),
        version=WIDEST_COUNT,
    )


def check_account_bounds(rules: Rules, max_string: int, limits: RecordLimits, source: str) -> None:
    """RulesError naming the `[accounts]` keys if the widest member the rules let a contact
    send would make an account record over `limits`: with such rules the worker would
    refuse members for their size (AccountGuard)."""
    try:
        AccountGuard(rules, limits, max_string).check_widest()
    except RecordTooLarge as error:
        config = rules.accounts
        raise RulesError(
            f"{source}: accounts.top_contacts: {config.top_contacts} top contacts, each with "
            f"{len(config.member_attributes)} attributes and "
            f"{min(config.member_reasons, rules.top_reasons)} reasons (accounts.member_reasons, "
            f"at most engagement.top_reasons) at their longest, make {error.reason}; lower "
            "accounts.top_contacts or accounts.member_reasons"
        ) from None


def _json_size(text: str) -> int:
    return len(orjson.dumps(text))
