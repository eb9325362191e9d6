"""The scoring agent: batches of raw Kafka records in, table writes and output records out.

Per batch (docs/guarantees.md):
1. each record is decoded, validated and folded into its contact's state by the core; a
   record that cannot be processed, whatever the reason, becomes a dead letter on its own;
   a record already applied to its contact (a replay after a crash: its offset is at or
   below the position stored with the contact) changes nothing;
2. stage changes, hot leads, nurture records, dead letters and re-keyed records are
   delivered (acknowledged by the broker);
3. each touched contact is then stored once, and its changelog record, snapshot and
   account member record delivered (a contact that changed account, or was erased, sends a
   leave record to its old account in step 2, before the state that forgets the old account
   is stored or deleted);
4. only then are the batch's offsets released for Faust's commit.
A delivery the broker refuses for good stops the worker before step 4, so that it restarts
from the last commit; retriable ones are retried (streams/outbox.py).

No record is ever larger than its topic takes (docs/guarantees.md#bounds): an event whose
outputs would be too large is dead-lettered as it is scored; a contact whose state, snapshot
or member record would be too large once the batch is folded has the batch folded again with
its events checked one at a time, in arrival order, each one that would make a record too
large dead-lettered (the contact keeps its last state that fits) and the others applied.

Identity stitching (scoring/identity.py) rides on the same steps and the same re-keyed
input: links (to the anonymous id's partition), hand-overs and detaches (to the contact's
partition) and the erasures an erased contact sends its linked ids all go out to
`events-by-contact` in step 2, before the state that would not send them again is stored.
Identity records are JSON arrays, re-keyed events JSON objects: no new topic to subscribe
to, create, grant or check.

Anonymous contacts nobody identified expire (scoring/expiry.py) on the same steps: at the
partition's record clock, a due contact read by the batch is deleted instead (a new contact
if an event of the batch is for it), and up to `AGING_BATCH` more are found through the
expiry index; each is deleted from the table, the changelog and `contact-scores` (a
tombstone) in step 3, its leave record sent to its account in step 2.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import orjson
from faust.exceptions import PartitionsMismatch
from prometheus_client import Counter as LabelledCounter

from leadpulse.agents.batches import deliver_batches
from leadpulse.schemas.events import InvalidEvent, admit_event
from leadpulse.schemas.limits import RecordLimits, RecordTooLarge
from leadpulse.schemas.outputs import (
    dead_letter_label,
    dead_letter_record,
    dumps,
    nurture_record,
    output_record,
    snapshot_record,
)
from leadpulse.schemas.segment import is_unmapped
from leadpulse.scoring.accounts import Member, account_updates, leaving, member_to_bytes
from leadpulse.scoring.engine import (
    HotLead,
    Output,
    StageChange,
    apply,
    attach,
    linked_ids,
    new_state,
    view_of,
)
from leadpulse.scoring.engine import snapshot as snapshot_of
from leadpulse.scoring.erasure import ERASE_EVENT, NOT_HERE, Erasure, erasure_of, marker_key
from leadpulse.scoring.expiry import (
    AGING_BATCH,
    TICK_KEY,
    Entry,
    aging_entry,
    aging_key,
    aging_range,
    expired,
    index_moves,
    indexed_due,
)
from leadpulse.scoring.identity import (
    Handover,
    Link,
    detach,
    hand_over,
    handover_bytes,
    identity_from_bytes,
    is_identity_record,
    is_published,
    link_bytes,
    record_claim,
    version_of,
)
from leadpulse.scoring.nurture import Nurture, revisit, revisit_due_ms
from leadpulse.scoring.state import ContactState
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.chunks import Part, Record
from leadpulse.streams.metrics import observe_all
from leadpulse.streams.outbox import BatchProducer, DeliveryFailed, Outbox, kafka_producer
from leadpulse.streams.partitioning import home_partition
from leadpulse.streams.pipeline import SCORING, Pipeline
from leadpulse.streams.startup import read_record_limits
from leadpulse.streams.tables import partition_of
from leadpulse.streams.topics import partition_mismatch

log = logging.getLogger(__name__)
COOLING_BATCH = 5_000  # contacts asked to re-read per cooling tick, at most
# The inputs whose positions a contact state keeps. "r" was the re-keyed input's when the prefix
# named it: its offsets mean nothing in APP_ID-events-by-contact, so a migrated state keeps it
# unused (hand-over versions, identity.version_of, still only grow; streams/migration.py).
EVENTS, REKEYED, ERASURES = "e", "k", "x"
EXPIRED_BATCH = 1_000  # erasure markers deleted per partition per batch, at most

Scored = dict[str, tuple[ContactState | None, int]]  # contact id -> (new state or None: erased, time to publish it at)
# state, its changelog bytes, snapshot (None: a merged anonymous id, deleted from contact-scores), member records
Publication = tuple[ContactState, bytes, bytes | None, list[tuple[bytes, bytes]]]
Prepared = list[Publication]
LimitsReader = Callable[[list[str]], Awaitable[RecordLimits]]


@dataclass
class PartitionWork:
    """What a batch does to one partition: the states to store, the erasure markers to
    store with them, and the account each erased contact leaves (with its leave record);
    `anchor` is one of its events, for Faust's partition context."""

    partition: int
    anchor: Any
    results: Scored = field(default_factory=dict)
    erased: dict[str, Erasure] = field(default_factory=dict)
    expired: list[bytes] = field(default_factory=list)  # erasure markers to delete (scoring.erasure)
    leaving: dict[str, tuple[str, Member]] = field(default_factory=dict)
    clock_ms: int = 0  # the partition's record clock so far in the batch: when contacts expire (scoring.expiry)
    indexed: dict[str, int | None] = field(default_factory=dict)  # contact -> its stored state's indexed_due
    aged: set[str] = field(default_factory=set)  # contacts expired by this batch
    index: list[Entry] = field(default_factory=list)  # expiry index entries to delete or write


class ScoringAgent:
    """The worker's agent and cooling timer, bound to one pipeline (its app, table, topics)."""

    def __init__(
        self,
        pipeline: Pipeline,
        producer: Callable[[], BatchProducer] | None = None,
        record_limits: LimitsReader | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.app = pipeline.app
        self.settings = pipeline.settings
        self.rules = pipeline.rules
        self.topics = pipeline.topics
        self.contacts = pipeline.contacts
        self.metrics = pipeline.metrics
        self.limits = pipeline.settings.input_limits
        self.producer = producer or (lambda: kafka_producer(self.app))
        self.read_limits = record_limits or (lambda names: read_record_limits(self.settings, names))
        self.guarded: set[str] = set()  # contacts whose events this batch checks one at a time (run)
        self.clock = 0  # the batch's (run)
        self.events_topic = pipeline.settings.input_topic
        self.rekeyed_topic = pipeline.topics.by_contact.get_topic_name()
        self.cooling_topic = pipeline.topics.cooling.get_topic_name()
        self.erasures_topic = pipeline.topics.erasures.get_topic_name()
        # Named once: Faust's get_topic_name() per record was ~1% of the agent (bench/README.md).
        self.scores_topic = pipeline.topics.scores.get_topic_name()
        self.members_topic = pipeline.topics.account_members.get_topic_name()
        self.changelog_topic = pipeline.contacts.table.changelog_topic.get_topic_name()
        self.output_topics = {
            HotLead: (pipeline.topics.hot_leads.get_topic_name(), "hot_lead"),
            StageChange: (pipeline.topics.stage_changes.get_topic_name(), "stage_change"),
        }
        # Counted per batch and added to the Prometheus counters once (bench/README.md).
        self.events: Counter[str] = Counter()
        self.outputs: Counter[str] = Counter()
        self.too_large: Counter[str] = Counter()  # events dead-lettered for a record too large, by its topic
        self.expired: Counter[str] = Counter()  # contacts expired (scoring.expiry)
        self.dead_letter_fields: Counter[str] = Counter()  # by metric label (schemas.outputs.dead_letter_label)
        self.nurture_tracks: Counter[str] = Counter()
        self.unmapped = 0  # Segment track events the rules' [mapping] does not know
        self.event_ages: list[float] = []  # seconds from occurred_at to scoring, one per event applied
        self.agent: Any = None
        self.accounts: Any = None  # the accounts agent, when attached with this one (agents.attach_agents)

    @classmethod
    def attach(
        cls,
        pipeline: Pipeline,
        producer: Callable[[], BatchProducer] | None = None,
        record_limits: LimitsReader | None = None,
    ) -> ScoringAgent:
        """Register the agent, the recovery hook and the cooling timer on `pipeline.app`;
        `record_limits` reads the topics' record limits (default: from the broker)."""
        self = cls(pipeline, producer, record_limits)
        app = pipeline.app
        self.agent = app.agent(pipeline.topics.scoring_sources(app), name="leadpulse.score")(self.consume)
        pipeline.contacts.table.on_recover(self.reschedule_cooling)
        if pipeline.settings.cooling_interval_s:
            app.timer(pipeline.settings.cooling_interval_s, name="leadpulse.cool_down")(self.cool_down)
        return self

    async def consume(self, stream: Any) -> None:
        if await self._ready_to_score():
            await deliver_batches(self.pipeline, stream, self.run, SCORING)

    async def _ready_to_score(self) -> bool:
        """Output topics exist before the first record is scored (a send to a topic still
        being created was seen to hang the producer's flush), every topic the agent
        writes by partition number has the input's partition count, and the largest record
        each topic takes is known (both agents' outboxes hold to it)."""
        for topic in self.topics.outputs:
            await topic.maybe_declare()
        written = [*self.topics.all, self.contacts.table.changelog_topic, self.pipeline.accounts.table.changelog_topic]
        mismatch = await partition_mismatch(self.producer(), written, self.settings.partitions)
        if mismatch:
            await self.app.crash(PartitionsMismatch(mismatch))
            return False
        self.pipeline.record_limits = await self.read_limits([topic.get_topic_name() for topic in written])
        return True

    async def run(self, batch: Sequence[Part]) -> None:
        started = perf_counter()
        clock = now_ms()
        deliveries, limits = self.pipeline.readiness.deliveries, self.pipeline.record_limits
        self.guarded, self.clock = set(), clock
        while True:
            alerts, stored = Outbox(deliveries, limits), Outbox(deliveries, limits)
            scored = [PartitionWork(part.partition, part.anchor) for part in batch]
            for work, part in zip(scored, batch, strict=True):
                with partition_of(work.anchor):
                    self._score_partition(work, part.records, clock, alerts)
            # Stage changes, hot leads, dead letters and re-keyed records reach the broker before
            # the states that produced them are stored: a replayed event finds its state stored
            # and emits nothing again, so what it emitted must already be there.
            oversized: set[str] = set()
            prepared = [(work, self._prepare(work, clock, alerts, oversized)) for work in scored]
            if oversized <= self.guarded:
                if oversized:  # stored already over a limit lowered since: events refused, state left as it was
                    log.error("%d contacts over their topics' record limits are not stored", len(oversized))
                break
            # Rare (beyond the bounds by construction): fold the batch again, nothing of it sent
            # or stored yet, checking these contacts' events one at a time.
            log.warning(
                "%d contacts would outgrow their topics' record limits: folding the batch again", len(oversized)
            )
            self.guarded |= oversized
            self._clear_counts()  # the fold again counts them anew
        producer = self.producer()
        await alerts.deliver(producer)
        for work, states in prepared:
            with partition_of(work.anchor):
                self._store(work, states, stored)
        await stored.deliver(producer)
        self._count(started, sum(len(part.records) for part in batch))

    def _score_partition(self, work: PartitionWork, records: list[Record], clock: int, alerts: Outbox) -> None:
        """Fold the records of one partition. Outputs are keyed by contact, and every output
        topic has the input's partitions, so a contact's outputs go to its own partition.
        Erasure markers whose deadline a record of this batch has passed are deleted with
        the batch's states (they still apply to the batch's own records)."""
        stream_ms = max((min(message.timestamp, clock) for message in records if message.timestamp), default=0)
        work.expired.extend(self.contacts.due_markers(work.partition, stream_ms, EXPIRED_BATCH))
        for message in records:
            if message.timestamp:
                work.clock_ms = max(work.clock_ms, min(message.timestamp, clock))
            try:
                if message.topic == self.cooling_topic:
                    self._cool(message, work, alerts)
                elif message.topic == self.rekeyed_topic and is_identity_record(message.value):
                    self._identity(message, work, alerts)
                else:
                    self._score(message, work, clock, alerts)
            except InvalidEvent as error:
                if isinstance(error, RecordTooLarge):
                    self.too_large[error.topic] += 1
                self._dead_letter(message, error.field, str(error), clock, alerts)
            except Exception as error:  # a record fails alone, whatever went wrong with it
                log.exception("record %s[%s]@%s could not be scored", message.topic, work.partition, message.offset)
                self._dead_letter(
                    message, "", f"could not be processed: {type(error).__name__}: {error}", clock, alerts
                )
        self._expire(work)

    def _score(self, message: Any, work: PartitionWork, clock: int, alerts: Outbox) -> None:
        # The record's own timestamp, not the clock, decides what is "in the future", so a
        # replay decides as the live run did (the clock only caps a producer running ahead).
        record_ms = min(message.timestamp, clock) if message.timestamp else clock
        event = admit_event(message.value, record_ms, self.limits, self.rules)
        if event.type == ERASE_EVENT and message.topic == self.events_topic:
            raise InvalidEvent("type", NOT_HERE)  # anyone with a write key could erase anyone
        if event.type != ERASE_EVENT and message.topic == self.erasures_topic:
            raise InvalidEvent("type", f"the erasure-requests topic carries only {ERASE_EVENT} events")
        key = event.contact_id.encode()
        home = home_partition(key, self.settings.partitions)
        entry = message.topic in (self.events_topic, self.erasures_topic)
        if entry and (message.key != key or message.partition != home):
            alerts.add(self.rekeyed_topic, home, key, message.value, record_ms)
            self.events["rekeyed"] += 1
            return
        role = EVENTS if message.topic == self.events_topic else ERASURES if entry else REKEYED
        contact_id, results, erased = event.contact_id, work.results, work.erased
        known, state = self._current(work, contact_id, event.occurred_ms)
        if event.type == ERASE_EVENT:
            erasure = erasure_of(event.occurred_ms, self.rules.erasure_grace_ms)
            known_erasure = erased.get(contact_id) or self.contacts.erasure(contact_id, work.partition)
            erased[contact_id] = erasure.merged(known_erasure)
            results[contact_id] = (None, event.occurred_ms)
            if state is not None:
                positions = {**state.positions, role: message.offset}
                if state.account_sent is not None:
                    # Leaves its account at a time no record it sent before has: a profile started
                    # after the grace has no version of its own yet, so time orders it after this.
                    at = max(state.published_ms, state.last_event_ms, event.occurred_ms)
                    leave = leaving(contact_id, at, version_of(positions), erased=True)
                    work.leaving[contact_id] = (state.account_sent, leave)
                self._erase_links(state, event.event_id, event.occurred_ms, positions, alerts)
            self.events["erased"] += 1
            return
        if state is None:
            erasure_known = erased.get(contact_id) or self.contacts.erasure(contact_id, work.partition)
            if erasure_known is not None and erasure_known.forgets(event.occurred_ms):
                self.events["forgotten"] += 1  # late, replayed or in flight for an erased contact
                erased_at = erasure_known.occurred_ms(self.rules.erasure_grace_ms)
                self._forward_erasures(linked_ids(event), f"forgotten:{event.event_id}", erased_at, alerts)
                return
            if erasure_known is not None and contact_id not in erased:  # back after the grace: a new profile
                work.expired.append(marker_key(contact_id))
            state = new_state(contact_id)
            left = work.leaving.pop(contact_id, None)
            if left is not None:  # back in this batch, after its grace: a move, if to another account
                state.account_sent = left[0]
        applied_at = state.positions.get(role)
        if applied_at is not None and message.offset <= applied_at:
            # Replayed after a crash: already in this state. Stored and published again all
            # the same, in case the state reached the local store but not the broker.
            self.events["replayed"] += 1
            updated = state
        else:
            applied = apply(state, event, self.rules)
            positions = {**state.positions, role: message.offset}
            if applied.state is state:  # a duplicate: the engine handed back the state it was given
                updated = state.copy()
                updated.positions = positions
            else:  # a state the engine has just built for this event: ours to finish
                updated = applied.state
                updated.positions = positions
            published_at = max(view_of(updated, self.rules).last_event_ms, known[1] if known else 0)
            self._check_fits(updated, published_at)  # before anything of the event is queued
            if applied.outcome != "duplicate":
                if is_published(applied.state):  # a merged anonymous id speaks through its contact
                    self._add_outputs(work.partition, applied.outputs, alerts)
                self.event_ages.append(max(0, clock - event.occurred_ms) / 1000)
                if is_unmapped(event):
                    self.unmapped += 1
                for link in applied.links:
                    self._send(link.anonymous_id, link_bytes(link), alerts)
            self.events[applied.outcome] += 1
        at = view_of(updated, self.rules).last_event_ms
        results[event.contact_id] = (updated, max(at, known[1] if known else 0))

    def _identity(self, message: Any, work: PartitionWork, alerts: Outbox) -> None:
        """A link (at the anonymous id's partition: keep the winning one) or a hand-over (at
        the contact's: replace the anonymous id's part and settle the merged view). The
        hand-over of the changed id goes out when the batch is prepared."""
        if not isinstance(message.key, bytes):
            raise InvalidEvent("key", "an identity record needs the anonymous or contact id as its key")
        try:
            record = identity_from_bytes(message.value)
        except (ValueError, TypeError, orjson.JSONDecodeError) as error:
            raise InvalidEvent("", f"not an identity record: {error}") from None
        key_id, results = message.key.decode(), work.results
        expected = record.anonymous_id if isinstance(record, Link) else None
        if expected is not None and expected != key_id:
            raise InvalidEvent("key", f"a link for {expected!r} keyed otherwise")
        known, state = self._current(work, key_id, record.claim.occurred_ms if isinstance(record, Link) else 0)
        if state is None:
            if isinstance(record, Handover):  # erased: it claims nothing, so takes no part (engine.attach)
                self.events["unscored"] += 1
                return
            erasure = work.erased.get(key_id) or self.contacts.erasure(key_id, work.partition)
            if erasure is not None and erasure.forgets(record.claim.occurred_ms):
                self.events["forgotten"] += 1
                return
            state = new_state(key_id)
        applied_at = state.positions.get(REKEYED)
        positions = {**state.positions, REKEYED: message.offset}
        if applied_at is not None and message.offset <= applied_at:
            self.events["replayed"] += 1
            updated = state
        elif isinstance(record, Link):
            updated = record_claim(state, record.claim).copy()
            updated.positions = positions
            self.events["linked"] += 1
        else:
            applied = attach(state, record.anonymous_id, record.part, self.rules)
            updated = applied.state.copy()
            updated.positions = positions
            at = view_of(updated, self.rules).last_event_ms
            self._check_fits(updated, at if isinstance(record, Handover) else max(at, known[1] if known else 0))
            self._add_outputs(work.partition, applied.outputs, alerts)
            self.events["merged"] += 1
        at = view_of(updated, self.rules).last_event_ms
        if isinstance(record, Handover):
            # A detach can take the latest event of the merged view back in time: the contact
            # is published at its own history's time again, as the offline scorer does.
            updated.published_ms = min(updated.published_ms, at)
            results[key_id] = (updated, at)
        else:
            results[key_id] = (updated, max(at, known[1] if known else 0))

    def _send(self, key_id: str, value: bytes, alerts: Outbox) -> None:
        """An identity record to its key's partition of the re-keyed input (co-partitioned
        with the contacts table)."""
        key = key_id.encode()
        alerts.add(self.rekeyed_topic, home_partition(key, self.settings.partitions), key, value)
        self.outputs["identity"] += 1

    def _erase_links(
        self, state: ContactState, event_id: str, occurred_ms: int, positions: dict[str, int], alerts: Outbox
    ) -> None:
        """An erased id leaves the contact it was merged into (a detach newer than any part it
        sent), and every anonymous id a contact linked is erased with it: an erasure event
        for each goes to its partition through the re-keyed input."""
        for target, part in detach(state, version_of(positions)):
            self._send(target, handover_bytes(Handover(state.contact_id, part)), alerts)
        self._forward_erasures(sorted(state.claims), event_id, occurred_ms, alerts)

    def _forward_erasures(self, linked_ids: Iterable[str], event_id: str, occurred_ms: int, alerts: Outbox) -> None:
        """An erasure event for each id to its partition through the re-keyed input."""
        for linked in linked_ids:
            key = linked.encode()
            erasure = {
                "event_id": f"{event_id}/{linked}",
                "type": ERASE_EVENT,
                "contact_id": linked,
                "occurred_at": format_ms(occurred_ms),
            }
            alerts.add(self.rekeyed_topic, home_partition(key, self.settings.partitions), key, orjson.dumps(erasure))
            self.outputs["erasure_forwarded"] += 1

    def _cool(self, message: Any, work: PartitionWork, alerts: Outbox) -> None:
        """A cooling tick: re-read the contact at the tick's time; publish it if its
        temperature dropped (no alert: see engine.reevaluate), and send the nurture records
        that became due (with the alerts: the state that remembers them is stored after)."""
        if not isinstance(message.key, bytes):
            raise InvalidEvent("key", "a cooling tick needs the contact id as its key")
        tick = orjson.loads(message.value)
        at_ms = tick.get("at_ms") if isinstance(tick, dict) else None
        if not isinstance(at_ms, int) or isinstance(at_ms, bool):
            raise InvalidEvent("at_ms", "a cooling tick carries the time to re-read at as whole milliseconds")
        contact_id, results = message.key.decode(), work.results
        known, state = self._current(work, contact_id, at_ms)
        if state is None or not is_published(state):  # erased, or merged: published nowhere
            return
        at_ms = max(at_ms, view_of(state, self.rules).last_event_ms)
        revisited = revisit(state, at_ms, self.rules)
        self._check_fits(revisited.state, max(at_ms, known[1] if known else 0))
        self._add_nurtures(work.partition, revisited.nurtures, alerts)
        if revisited.outcome == "scored" or known:
            results[contact_id] = (revisited.state, max(at_ms, known[1] if known else 0))
        else:  # nothing changed (clock skew, or rules changed): look again later
            self.pipeline.cooling.set(contact_id, revisit_due_ms(revisited.state, self.rules, at_ms))

    def _current(
        self, work: PartitionWork, contact_id: str, at_ms: int
    ) -> tuple[tuple[ContactState | None, int] | None, ContactState | None]:
        """(what the batch has for the contact, its state) for something that happened at
        `at_ms`: no state if the contact is expired then, or at the partition's clock."""
        known = work.results.get(contact_id)
        if known:
            state = known[0]
        else:
            state = self.contacts.get(contact_id, work.partition)
            work.indexed.setdefault(contact_id, None if state is None else indexed_due(state, self.rules))
        if state is not None and expired(state, max(work.clock_ms, at_ms), self.rules):
            self._age(work, state)
            return work.results[contact_id], None
        return known, state

    def _age(self, work: PartitionWork, state: ContactState) -> None:
        """Delete an expired contact with this batch (a leave record to its account first)."""
        contact_id = state.contact_id
        work.results[contact_id] = (None, 0)
        work.aged.add(contact_id)
        if state.account_sent is not None:
            at = max(state.published_ms, state.last_event_ms)
            work.leaving[contact_id] = (state.account_sent, leaving(contact_id, at, version_of(state.positions)))
        self.expired["contact"] += 1

    def _expire(self, work: PartitionWork) -> None:
        """Once the partition's records are folded: the batch's contacts expired at its clock
        are deleted instead of stored, and up to AGING_BATCH more due in the expiry index.
        An index entry that is not its stored contact's (the rules' `anonymous_after`
        changed) is replaced by the right one."""
        for state, _ in list(work.results.values()):
            if state is not None and expired(state, work.clock_ms, self.rules):
                self._age(work, state)
        start, end = aging_range(work.partition, work.clock_ms)
        for key in self.contacts.keys_between(work.partition, start, end, AGING_BATCH):
            due, contact_id = aging_entry(key)
            if contact_id not in work.results:
                self._current(work, contact_id, 0)
            stored = work.indexed.get(contact_id)
            if stored != due:
                work.index.append((key, None))
                if stored is not None and contact_id not in work.results:
                    work.index.append((aging_key(work.partition, stored, contact_id), b""))

    def _prepare(self, work: PartitionWork, clock: int, alerts: Outbox, oversized: set[str]) -> Prepared:
        """The state, snapshot and account member record each contact is published with; a
        snapshot's time never goes back for a contact (a late event after a cooling tick keeps
        the tick's time). Leave records (a contact that changed account, or was erased) go
        out with the alerts: once the state that no longer names the old account is stored
        (or deleted), a replay would not send them again. A contact one of whose records
        would be too large for its topic is left out and named in `oversized`."""
        prepared: Prepared = []
        for account_left, record in work.leaving.values():
            self._leave(account_left, record, alerts)
        for contact_id, (stored, at_ms) in work.results.items():
            if stored is None:
                continue
            try:
                prepared.append(self._publication(stored, at_ms, clock, alerts))
            except RecordTooLarge:
                oversized.add(contact_id)
        return prepared

    def _publication(self, stored: ContactState, at_ms: int, clock: int, alerts: Outbox) -> Publication:
        """What one contact is published with (see _prepare); RecordTooLarge if a record
        would be larger than its topic takes. `stored` is the batch's own (work.results), and
        is published as it is, its publication fields set."""
        version = version_of(stored.positions)  # of its hand-overs and its account records
        state, sends = hand_over(stored, version)
        for target, part in sends:
            self._send(target, handover_bytes(Handover(state.contact_id, part)), alerts)
        if not is_published(state):  # merged into a contact: deleted from contact-scores
            if state.account_sent is not None:
                left = leaving(state.contact_id, max(at_ms, state.published_ms), version)
                self._leave(state.account_sent, left, alerts)
            merged = state.copy()
            merged.account_sent = merged.cooling_due_ms = None
            return self._fitting(merged, None, [], alerts.limits)
        at = max(at_ms, state.published_ms)
        due = revisit_due_ms(state, self.rules, max(at, clock)) if self.settings.cooling_interval_s else None
        view = snapshot_of(state, at, self.rules)
        account, updates = account_updates(view_of(state, self.rules), view, self.rules, version)
        # The batch's own state (read from the table or built by its fold, referenced by
        # nothing else): finished in place, where a copy of its 28 fields cost ~6% of the
        # agent's instructions (bench/README.md). None of these fields is one the engine's caches read.
        published = state
        published.published_ms, published.cooling_due_ms, published.account_sent = at, due, account
        records = []
        for target, record in updates:
            if record.left:
                self._leave(target, record, alerts)
            else:
                records.append((target.encode(), member_to_bytes(record)))
        return self._fitting(published, dumps(snapshot_record(view)), records, alerts.limits)

    def _fitting(
        self, state: ContactState, view: bytes | None, members: list[tuple[bytes, bytes]], limits: RecordLimits
    ) -> Publication:
        """The publication, once its changelog record, snapshot and member records are known
        to fit their topics (RecordTooLarge otherwise)."""
        key, encoded = state.contact_id.encode(), self.contacts.encode(state)
        limits.check(self.changelog_topic, key, encoded)
        limits.check(self.scores_topic, key, view)
        for member_key, member in members:
            limits.check(self.members_topic, member_key, member)
        return state, encoded, view, members

    def _check_fits(self, state: ContactState, at_ms: int) -> None:
        """For a guarded contact (run), raise RecordTooLarge if publishing `state` now would
        write a record too large for its topic: the record being scored is dead-lettered,
        and the contact keeps the state it had before it. Published to a scratch outbox, the
        counts of what it would send left as they were."""
        if state.contact_id not in self.guarded:
            return
        counted = self.outputs.copy()
        # On a copy (_publication finishes the state it is given): ContactState.copy, since
        # copy.copy cannot rebuild a class of the compiled core (docs/compiled.md).
        try:
            self._publication(state.copy(), at_ms, self.clock, Outbox(limits=self.pipeline.record_limits))
        finally:
            self.outputs = counted

    def _leave(self, account: str, record: Member, alerts: Outbox) -> None:
        """To the account's own partition of account-members, keyed by account as member records."""
        key = account.encode()
        alerts.add(
            self.members_topic,
            home_partition(key, self.settings.partitions),
            key,
            member_to_bytes(record),
        )
        self.outputs["account_leave"] += 1

    def _store(self, work: PartitionWork, prepared: Prepared, outbox: Outbox) -> None:
        """One table write, one snapshot and at most one member record per contact per batch.
        An erased contact gets a tombstone in contact-scores and in the changelog."""
        scores, members = self.scores_topic, self.members_topic
        cooling = self.settings.cooling_interval_s
        partition = work.partition
        index = list(work.index)  # an expired contact's key and index entry go, a stored one's entry moves
        for contact_id, (state, _) in work.results.items():
            if state is None:
                outbox.add(scores, partition, contact_id.encode(), None)
                self.pipeline.cooling.set(contact_id, None)
                index += index_moves(partition, contact_id, work.indexed.get(contact_id), None)
                if contact_id in work.aged and contact_id not in work.erased:
                    index.append((contact_id.encode(), None))
        for state, _, view, records in prepared:
            contact_id, due = state.contact_id, indexed_due(state, self.rules)
            stored = work.indexed.get(contact_id)
            index += index_moves(partition, contact_id, stored, due)
            if (
                due is not None
                and due == stored
                and not self.contacts.has(aging_key(partition, due, contact_id), partition)
            ):
                index.append((aging_key(partition, due, contact_id), b""))  # stored before expiry was
            # Checked against the same limits as they were prepared (_fitting).
            outbox.add_checked(scores, partition, state.contact_id.encode(), view)
            for key, value in records:
                outbox.add_checked(members, home_partition(key, self.settings.partitions), key, value)
            if cooling:
                self.pipeline.cooling.set(state.contact_id, state.cooling_due_ms)
        encoded = ((state.contact_id, data) for state, data, _, _ in prepared)
        self.contacts.put_encoded(partition, encoded, outbox, work.erased, work.expired, index=index)
        self.contacts.remember(state for state, _, _, _ in prepared)
        self.outputs["snapshot"] += len(work.results)

    def _add_outputs(self, partition: int, outputs: tuple[Output, ...], outbox: Outbox) -> None:
        """All of an event's outputs, or none (RecordTooLarge: one would be too large)."""
        records = []
        for output in outputs:
            topic, kind = self.output_topics[type(output)]
            record = (topic, output.contact_id.encode(), dumps(output_record(output)))
            outbox.limits.check(*record)
            records.append((kind, record))
        for kind, (name, key, value) in records:
            outbox.add_checked(name, partition, key, value)
            self.outputs[kind] += 1

    def _add_nurtures(self, partition: int, records: tuple[Nurture, ...], outbox: Outbox) -> None:
        topic = self.topics.nurture.get_topic_name()
        for record in records:
            outbox.add(topic, partition, record.contact_id.encode(), dumps(nurture_record(record)))
            self.nurture_tracks[record.track] += 1
            self.outputs["nurture"] += 1

    def _dead_letter(self, message: Any, field: str, reason: str, clock: int, outbox: Outbox) -> None:
        record = dead_letter_record(
            reason,
            field,
            message.value,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            received_ms=clock,
            excerpt_bytes=self.limits.dead_letter_excerpt,
        )
        outbox.add(self.topics.dead_letters.get_topic_name(), message.partition, _bounded(message.key), dumps(record))
        self.events["dead_letter"] += 1
        self.dead_letter_fields[dead_letter_label(field)] += 1

    def _labelled_counts(self) -> tuple[tuple[Counter[str], LabelledCounter], ...]:
        """Each of the batch's counts by label with the metric it is added to."""
        metrics = self.metrics
        return (
            (self.events, metrics.events),
            (self.outputs, metrics.outputs),
            (self.too_large, metrics.records_too_large),
            (self.expired, metrics.expired),
            (self.dead_letter_fields, metrics.dead_letters),
            (self.nurture_tracks, metrics.nurtures),
        )

    def _count(self, started: float, size: int) -> None:
        for counts, metric in self._labelled_counts():
            for label, count in counts.items():
                metric.labels(label).inc(count)
        if self.unmapped:
            self.metrics.unmapped_events.inc(self.unmapped)
        observe_all(self.metrics.event_age_seconds, self.event_ages)
        self._clear_counts()
        self.metrics.batch_seconds.observe(perf_counter() - started)
        self.metrics.batch_events.observe(size)

    def _clear_counts(self) -> None:
        """Forget the batch's counts: added to the metrics (_count), or its fold to be done
        again (run), which counts everything anew."""
        for counts, _ in self._labelled_counts():
            counts.clear()
        self.unmapped = 0
        self.event_ages.clear()

    async def reschedule_cooling(self) -> None:
        """After start-up or a rebalance the schedule is rebuilt from the recovered partitions,
        from the due times stored with each contact (one pass per rebalance, none per tick,
        yielding as it goes); only a warm contact stored while cooling was off is computed anew.
        A cold one waits for its next event (computing every cold contact at every rebalance
        would cost more than the recovery itself), as do cold contacts stored before nurturing."""
        cooling = self.pipeline.cooling
        cooling.clear()
        if not self.settings.cooling_interval_s:
            return
        clock = now_ms()
        async for contact_id, state in self.contacts.scan():
            if not is_published(state):  # a merged anonymous id: its contact cools instead
                continue
            due = state.cooling_due_ms
            if due is None and state.temperature > 1:
                due = revisit_due_ms(state, self.rules, max(clock, state.published_ms))
            cooling.set(contact_id, due)

    async def cool_down(self) -> None:
        """Ask the owning partition to re-read contacts whose temperature is due to drop, or
        for which a nurture track may have become due: the re-read runs in the scoring agent,
        so table writes stay in partition context."""
        clock = now_ms()
        due = self.pipeline.cooling.pop_due(clock, COOLING_BATCH)
        ticks = Outbox(self.pipeline.readiness.deliveries)
        value = orjson.dumps({"at_ms": clock})
        for contact_id in due:
            key = contact_id.encode()
            ticks.add(self.cooling_topic, home_partition(key, self.settings.partitions), key, value)
        # And one tick to each partition this worker holds, so that its record clock moves on
        # without traffic: contacts and departure markers expire by it (scoring.expiry).
        members = self.topics.account_members.get_topic_name()
        for tp in self.app.assignor.assigned_actives():
            if tp.topic == self.events_topic:
                ticks.add(self.cooling_topic, tp.partition, TICK_KEY, value)
            elif tp.topic == members:
                ticks.add(members, tp.partition, TICK_KEY, b"")
        try:
            await ticks.deliver(self.producer())
        except DeliveryFailed as error:
            log.error("cooling ticks not delivered, trying again next tick: %s", error)
            for contact_id in due:
                self.pipeline.cooling.set(contact_id, clock)
        self.metrics.cooling_scheduled.set(len(self.pipeline.cooling))


def _bounded(key: bytes | None, limit: int = 1_000) -> bytes | None:
    """A dead letter's key: the original one, unless it is absurdly long."""
    return key if key is None or len(key) <= limit else key[:limit]
