"""The accounts agent: contacts' member records in (re-keyed by account through
`account-members`), account states, `account-scores` and `hot-accounts` out.

An account is stored under many keys of the account's partition (scoring.accounts): one
per member, one per departure, and a small aggregate (hysteresis, stream position, the
record last published). The worker keeps an index per account derived from them
(streams.tables.AccountTable), so that a member record costs O(log n), not a sort of
every member, and no stored record grows with the account.

Same discipline as the scoring agent (docs/guarantees.md), per batch:
1. each record is folded into its account's index (the newest record per contact wins); a
   record at or below the offset stored with the contact's entry changes nothing, and one
   at or below the account's position alerts no more (a replay after a crash);
2. hot-account alerts are delivered;
3. each touched account's changed entries and aggregate are stored once, and their
   changelog records and the account's snapshot delivered (an account whose last member
   left is deleted from `account-scores` and from the table: tombstones);
4. only then are the batch's offsets released for Faust's commit.

A leave is kept as a departure marker until `LEADPULSE_EVENT_RETENTION` +
`LEADPULSE_COMPACTION_LAG` after the batch that stored it (by its records' timestamps, capped
by the clock): `account-members` holds no record older than the marker by then, so none can
be re-delivered to bring the contact back. Each batch deletes up to `AGING_BATCH` markers due
at its partition's record clock, with the changelog records of step 3 (scoring/expiry.py).

No record it writes is larger than its topic takes (docs/guarantees.md#bounds): a member
record the account could not hold in its top places (schemas.record_sizes.AccountGuard) is
dead-lettered with its cause, and the account keeps the contact's leave instead, as the
offline scorer leaves that contact out of the account. A member taken under a higher limit
leaves when its account next receives a record (`_load`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from leadpulse.agents.batches import deliver_batches
from leadpulse.schemas.limits import RecordTooLarge
from leadpulse.schemas.outputs import (
    account_record,
    dead_letter_label,
    dead_letter_record,
    dumps,
    hot_account_record,
)
from leadpulse.schemas.record_sizes import AccountGuard, AccountTopics
from leadpulse.scoring.accounts import AccountState, fold, leaving, member_from_bytes, receive
from leadpulse.scoring.expiry import AGING_BATCH, TICK_KEY
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.chunks import Part, Record
from leadpulse.streams.outbox import BatchProducer, Outbox
from leadpulse.streams.pipeline import ACCOUNTS, Pipeline
from leadpulse.streams.tables import partition_of

log = logging.getLogger(__name__)


class AccountsAgent:
    def __init__(self, pipeline: Pipeline, producer: Any) -> None:
        self.pipeline = pipeline
        self.app = pipeline.app
        self.rules = pipeline.rules
        self.topics = pipeline.topics
        self.accounts = pipeline.accounts
        self.metrics = pipeline.metrics
        self.producer = producer
        self.agent: Any = None
        self._sized: AccountGuard | None = None  # for the record limits last read (_guard)

    @classmethod
    def attach(cls, pipeline: Pipeline, producer: Any) -> AccountsAgent:
        self = cls(pipeline, producer)
        topic = pipeline.topics.account_members
        self.agent = pipeline.app.agent(topic, name="leadpulse.accounts")(self.consume)
        return self

    async def consume(self, stream: Any) -> None:
        await deliver_batches(self.pipeline, stream, self.run, ACCOUNTS)

    async def run(self, batch: Sequence[Part]) -> None:
        deliveries = self.pipeline.readiness.deliveries
        alerts, stored = (
            Outbox(deliveries, self.pipeline.record_limits),
            Outbox(deliveries, self.pipeline.record_limits),
        )
        clock = now_ms()
        folded = []
        for part in batch:
            part_ms = max((min(message.timestamp, clock) for message in part.records if message.timestamp), default=0)
            with partition_of(part.anchor):
                expired = self.accounts.expire_departures(part.partition, part_ms, AGING_BATCH, stored)
            self.metrics.expired.labels("departure").inc(expired)
            expires_ms = part_ms + self.pipeline.settings.event_retention + self.pipeline.settings.compaction_lag
            states = self._fold_partition(part.partition, part.records, alerts, expires_ms)
            folded.append((part.partition, part.anchor, states))
        producer: BatchProducer = self.producer()
        await alerts.deliver(producer)
        scores = self.topics.account_scores.get_topic_name()
        for partition, anchor, states in folded:
            published = []
            for state in states.values():
                view = state.snapshot()
                value = None if view is None else dumps(account_record(view))
                stored.add(scores, partition, state.account_id.encode(), value)
                published.append((state, value))
            with partition_of(anchor):
                self.accounts.store(partition, published, stored)
            self.metrics.outputs.labels("account_snapshot").inc(len(states))
        await stored.deliver(producer)

    def _fold_partition(
        self, partition: int, records: list[Record], alerts: Outbox, expires_ms: int
    ) -> dict[str, AccountState]:
        """Fold member records; a leave is kept until `expires_ms`; a tick (the scoring agent's
        cool_down) only moves the partition's record clock."""
        states: dict[str, AccountState] = {}
        hot = self.topics.hot_accounts.get_topic_name()
        guard = self._guard()
        for message in records:
            if message.key == TICK_KEY:
                continue
            try:
                if not isinstance(message.key, bytes):
                    raise ValueError("an account member record needs the account id as its key")
                account_id = message.key.decode()
                record = member_from_bytes(message.value)
                try:
                    guard.check(account_id, record)
                except RecordTooLarge as error:
                    self._dead_letter(message, partition, str(error), alerts)
                    self.metrics.records_too_large.labels(error.topic).inc()
                    record = leaving(record.contact_id, record.at_ms, record.version)
                state = states.get(account_id) or self._load(account_id, partition, guard)
                states[account_id] = state
                replayed, alert = receive(state, record, message.offset, expires_ms)
                if replayed:
                    self.metrics.events.labels("account_replayed").inc()
                if alert is not None:
                    alerts.add(hot, partition, message.key, dumps(hot_account_record(alert)))
                    self.metrics.outputs.labels("hot_account").inc()
            except Exception as error:  # a record fails alone, whatever went wrong with it
                log.exception("account member record [%s]@%s could not be folded", partition, message.offset)
                reason = f"could not be processed: {type(error).__name__}: {error}"
                self._dead_letter(message, partition, reason, alerts)
        return states

    def _load(self, account_id: str, partition: int, guard: AccountGuard) -> AccountState:
        """The account's index. When a member may be refused (`AccountGuard.all_fit` false: a
        topic's limit lower than the widest member needs), the members of each index are
        checked once at these limits: one taken under a higher limit that no longer fits
        leaves, as the offline scorer at this limit leaves it out, so that the account's
        records fit again."""
        state = self.accounts.load(account_id, partition, self.rules)
        if guard.all_fit or state.checked_against is guard:
            return state
        for member in list(state.members.values()):
            try:
                guard.check(account_id, member)
            except RecordTooLarge as error:
                log.warning("account %s: a member taken before no longer fits: %s", account_id, error)
                self.metrics.records_too_large.labels(error.topic).inc()
                fold(state, leaving(member.contact_id, member.at_ms, member.version))
        state.checked_against = guard
        return state

    def _guard(self) -> AccountGuard:
        """The size rule for members at the limits the scoring agent read from the broker."""
        topics = AccountTopics(
            self.topics.account_scores.get_topic_name(),
            self.topics.hot_accounts.get_topic_name(),
            self.accounts.table.changelog_topic.get_topic_name(),
        )
        limits = self.pipeline.record_limits
        if self._sized is None or self._sized.limits is not limits:
            self._sized = AccountGuard(self.rules, limits, self.pipeline.settings.input_limits.max_string, topics)
        return self._sized

    def _dead_letter(self, message: Record, partition: int, reason: str, alerts: Outbox) -> None:
        record = dead_letter_record(
            reason,
            "",
            message.value,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            received_ms=now_ms(),
        )
        alerts.add(self.topics.dead_letters.get_topic_name(), partition, None, dumps(record))
        self.metrics.dead_letters.labels(dead_letter_label("")).inc()
