"""The scoring agent: batches of raw Kafka records in, table writes and output records out.

Per batch: decode and validate each record (invalid -> dead letters), forward records that
sit on the wrong partition for their contact to the re-keyed topic, fold the rest into the
contact states with the scoring core, wait until the stage changes, hot leads and dead
letters are on the broker, then write each touched contact once and send its snapshot once.
Faust flushes the rest (changelog, snapshots) before it commits the input offsets.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from time import perf_counter
from typing import Any

import orjson
from faust.exceptions import PartitionsMismatch

from schemas.events import InvalidEvent, decode_event
from schemas.outputs import dead_letter_record, dumps, output_record, snapshot_record
from scoring.engine import HotLead, Output, apply, future_reason, new_state, next_cooling_ms, reevaluate, snapshot
from scoring.state import ContactState
from scoring.timeutil import now_ms
from streams.app import pipeline
from streams.outbox import Outbox, kafka_producer
from streams.partitioning import home_partition
from streams.tables import partition_of
from streams.topics import partition_mismatch

app = pipeline.app
settings = pipeline.settings
topics = pipeline.topics
rules = pipeline.rules
metrics = pipeline.metrics
contacts = pipeline.contacts
EVENTS = settings.input_topic
COOLING = topics.cooling.get_topic_name()
COOLING_BATCH = 5_000


class BatchScorer:
    """Scores one batch; every table access runs in the partition context of its record."""

    def __init__(self) -> None:
        # Counted per batch and added to the Prometheus counters once: labels().inc() per
        # record cost ~3% of the worker's time.
        self.events: Counter[str] = Counter()
        self.outputs: Counter[str] = Counter()

    async def run(self, batch: Sequence[Any]) -> None:
        started = perf_counter()
        by_partition: dict[int, list[Any]] = defaultdict(list)
        for event in batch:
            by_partition[event.message.partition].append(event)
        clock = now_ms()
        producer = kafka_producer(app)
        alerts, stored = Outbox(), Outbox()
        scored: list[tuple[int, Any, dict[str, tuple[ContactState, int]]]] = []
        for partition, events in by_partition.items():
            with partition_of(events[-1]):
                results = await self._score_partition(partition, events, clock, alerts)
            scored.append((partition, events[-1], results))
        # Stage changes, hot leads and dead letters reach the broker before the states that
        # produced them are stored: after a crash, an event replayed onto a stored state is a
        # duplicate and would not emit them again.
        await alerts.send(producer)
        await app.producer.flush()
        for partition, anchor, results in scored:
            with partition_of(anchor):
                self._store(partition, results, stored)
        await stored.send(producer)  # Faust flushes these before it commits the input offsets
        for outcome, count in self.events.items():
            metrics.events.labels(outcome).inc(count)
        for kind, count in self.outputs.items():
            metrics.outputs.labels(kind).inc(count)
        self.events.clear()
        self.outputs.clear()
        metrics.batch_seconds.observe(perf_counter() - started)
        metrics.batch_events.observe(len(batch))

    async def _score_partition(
        self, partition: int, events: list[Any], clock: int, alerts: Outbox
    ) -> dict[str, tuple[ContactState, int]]:
        """Fold the records of one partition; returns contact -> (new state, snapshot time).
        Outputs are keyed by contact, and every output topic has the input's partitions, so
        a contact's outputs go to its own partition number."""
        results: dict[str, tuple[ContactState, int]] = {}
        for record in events:
            message = record.message
            if message.topic == COOLING:
                contact_id = message.key.decode()
                known = results.get(contact_id)
                state = known[0] if known else contacts.get(contact_id)
                if state is not None:
                    at_ms = max(orjson.loads(message.value)["at_ms"], state.last_event_ms)
                    applied = reevaluate(state, at_ms, rules)
                    self._add_outputs(partition, applied.outputs, alerts)
                    if applied.outcome == "scored" or known:
                        results[contact_id] = (applied.state, max(at_ms, known[1] if known else 0))
                    else:  # same band as before (clock skew, or rules changed): look again later
                        pipeline.cooling.set(contact_id, next_cooling_ms(applied.state, rules, at_ms))
                continue
            try:
                event = decode_event(message.value)
                reason = future_reason(event, clock, rules)
                if reason is not None:
                    raise InvalidEvent("occurred_at", reason)
            except InvalidEvent as error:
                await self._dead_letter(message, error, clock)
                continue
            key = event.contact_id.encode()
            if message.topic == EVENTS and (
                message.key != key or message.partition != home_partition(key, settings.partitions)
            ):
                await app.producer.send(topics.by_contact.get_topic_name(), key, message.value, None, None, None)
                self.events["rekeyed"] += 1
                continue
            known = results.get(event.contact_id)
            state = known[0] if known else contacts.get(event.contact_id) or new_state(event.contact_id)
            applied = apply(state, event, rules)
            self.events[applied.outcome] += 1
            if applied.outcome != "duplicate":
                metrics.event_age_seconds.observe(max(0, clock - event.occurred_ms) / 1000)
                self._add_outputs(partition, applied.outputs, alerts)
            # A duplicate is stored and published again too: it may be the replay of an event
            # whose state reached the local store but whose changelog or snapshot was lost.
            results[event.contact_id] = (applied.state, max(applied.state.last_event_ms, known[1] if known else 0))
        return results

    def _store(self, partition: int, results: dict[str, tuple[ContactState, int]], outbox: Outbox) -> None:
        """One table write and one snapshot per contact per batch."""
        contacts.put_many(partition, (state for state, _ in results.values()), outbox)
        scores = topics.scores.get_topic_name()
        for contact_id, (state, at_ms) in results.items():
            view = snapshot(state, at_ms, rules)
            outbox.add(scores, partition, contact_id.encode(), dumps(snapshot_record(view)))
            if settings.cooling_interval_s:
                pipeline.cooling.set(contact_id, next_cooling_ms(state, rules, at_ms))
        self.outputs["snapshot"] += len(results)

    def _add_outputs(self, partition: int, outputs: tuple[Output, ...], outbox: Outbox) -> None:
        for output in outputs:
            topic, kind = (
                (topics.hot_leads, "hot_lead")
                if isinstance(output, HotLead)
                else (topics.stage_changes, "stage_change")
            )
            outbox.add(topic.get_topic_name(), partition, output.contact_id.encode(), dumps(output_record(output)))
            self.outputs[kind] += 1

    async def _dead_letter(self, message: Any, error: InvalidEvent, clock: int) -> None:
        record = dead_letter_record(
            str(error),
            error.field,
            message.value,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            received_ms=clock,
        )
        await app.producer.send(topics.dead_letters.get_topic_name(), message.key, dumps(record), None, None, None)
        self.events["dead_letter"] += 1
        metrics.dead_letters.labels(error.field or "(record)").inc()


scorer = BatchScorer()


@contacts.table.on_recover
async def reschedule_cooling() -> None:
    """After start-up or a rebalance the schedule is rebuilt from the recovered partitions:
    one pass over the local table per rebalance, none per timer tick."""
    pipeline.cooling.clear()
    if settings.cooling_interval_s:
        for contact_id, state in contacts.items():
            pipeline.cooling.set(contact_id, next_cooling_ms(state, rules))


@app.agent(topics.scoring_sources(app))
async def score(stream: Any) -> None:
    # Output topics exist before the first record is scored: a send to a topic that is
    # still being created was seen to leave the producer's flush (and so every commit) hanging.
    for topic in topics.outputs:
        await topic.maybe_declare()
    mismatch = await partition_mismatch(
        kafka_producer(app),
        [topics.scores, topics.stage_changes, topics.hot_leads, contacts.table.changelog_topic],
        settings.partitions,
    )
    if mismatch:
        await app.crash(PartitionsMismatch(mismatch))
        return
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_within_s):
        await scorer.run(batch)


if settings.cooling_interval_s:

    @app.timer(settings.cooling_interval_s)
    async def cool_down() -> None:
        """Ask the owning partition to re-read contacts whose temperature is due to drop:
        the re-read runs in the scoring agent, so table writes stay in partition context."""
        clock = now_ms()
        due = pipeline.cooling.pop_due(clock, COOLING_BATCH)
        for contact_id in due:
            await app.producer.send(COOLING, contact_id.encode(), orjson.dumps({"at_ms": clock}), None, None, None)
        metrics.cooling_scheduled.set(len(pipeline.cooling))
