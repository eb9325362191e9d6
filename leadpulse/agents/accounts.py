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
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from leadpulse.agents.batches import deliver_batches
from leadpulse.schemas.outputs import account_record, dead_letter_record, dumps, hot_account_record
from leadpulse.scoring.accounts import AccountState, member_from_bytes, receive
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
        for message in records:
            if message.key == TICK_KEY:
                continue
            try:
                if not isinstance(message.key, bytes):
                    raise ValueError("an account member record needs the account id as its key")
                account_id = message.key.decode()
                record = member_from_bytes(message.value)
                state = states.get(account_id) or self.accounts.load(account_id, partition, self.rules)
                states[account_id] = state
                replayed, alert = receive(state, record, message.offset, expires_ms)
                if replayed:
                    self.metrics.events.labels("account_replayed").inc()
                if alert is not None:
                    alerts.add(hot, partition, message.key, dumps(hot_account_record(alert)))
                    self.metrics.outputs.labels("hot_account").inc()
            except Exception as error:  # a record fails alone, whatever went wrong with it
                log.exception("account member record [%s]@%s could not be folded", partition, message.offset)
                record_ = dead_letter_record(
                    f"could not be processed: {type(error).__name__}: {error}",
                    "",
                    message.value,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key,
                    received_ms=now_ms(),
                )
                alerts.add(self.topics.dead_letters.get_topic_name(), partition, None, dumps(record_))
        return states
