"""The hand-written peer: a plain aiokafka loop, what a team could write instead of using a
framework. `getmany` batches; states in a dict, restored from a compacted changelog topic
on assignment; per batch the outputs, then one changelog record per touched contact, are
sent as closed record batches to the input's partition number, and the offsets are
committed once the broker has acknowledged everything (at-least-once, like the worker).

    LEADPULSE_... python -m bench.peers.aiokafka_loop
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Collection

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from bench.peers.job import score
from bench.reading import records_to_end
from leadpulse.cli.kafka_clients import ensure_topic
from leadpulse.scoring import is_compiled
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.state import ContactState, from_bytes, to_bytes
from leadpulse.streams.outbox import Outbox
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings

BATCH = 5_000


class Restore(ConsumerRebalanceListener):  # type: ignore[misc]
    """Reads an assigned partition's changelog into the dict before its first batch."""

    def __init__(self, settings: Settings, changelog: str, states: dict[str, ContactState]) -> None:
        self.settings, self.changelog, self.states = settings, changelog, states

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self.states.clear()  # reassigned partitions are restored again: nothing stale survives

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        partitions = [TopicPartition(self.changelog, tp.partition) for tp in assigned]
        reader = AIOKafkaConsumer(**client_options(self.settings), enable_auto_commit=False)
        await reader.start()
        try:
            async for _, records in records_to_end(reader, partitions, max_records=BATCH):
                for record in records:
                    if record.value is None:
                        self.states.pop(record.key.decode(), None)
                    else:
                        self.states[record.key.decode()] = from_bytes(record.value)
        finally:
            await reader.stop()


async def run(settings: Settings) -> None:
    rules = load_rules(settings.rules)
    topics = {kind: settings.topic(kind) for kind in ("contact-scores", "stage-changes", "hot-leads")}
    changelog = f"{settings.app_id}-loop-changelog"
    for name in (*topics.values(), changelog):
        await ensure_topic(settings, name)
    states: dict[str, ContactState] = {}
    options = client_options(settings)
    consumer = AIOKafkaConsumer(
        group_id=settings.app_id, enable_auto_commit=False, auto_offset_reset="earliest", **options
    )
    producer = AIOKafkaProducer(acks="all", max_batch_size=256 * 1024, linger_ms=5, **options)
    consumer.subscribe([settings.input_topic], listener=Restore(settings, changelog, states))
    await consumer.start()
    await producer.start()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
    try:
        while not stopping.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=BATCH)
            if not batches:
                continue
            alerts, stored = Outbox(), Outbox()
            for tp, records in batches.items():
                # One snapshot and one changelog record per contact per batch, as our worker sends them.
                touched: dict[str, tuple[ContactState, bytes]] = {}
                for record in records:
                    key = record.key.decode() if record.key is not None else ""
                    state, outputs = score(record.value, states.get(key), rules)
                    if state is None:
                        continue
                    states[key] = state
                    for kind, value in outputs:
                        if kind == "contact-scores":
                            touched[key] = (state, value)
                        else:
                            alerts.add(topics[kind], tp.partition, record.key, value)
                for key, (state, snapshot) in touched.items():
                    stored.add(topics["contact-scores"], tp.partition, key.encode(), snapshot)
                    stored.add(changelog, tp.partition, key.encode(), to_bytes(state))
            await alerts.deliver(producer)
            await stored.deliver(producer)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    if is_compiled():  # bench.pipeline --compiled checks that the compiled run said so
        print("aiokafka loop: the scoring core is the compiled build", file=sys.stderr, flush=True)
    asyncio.run(run(Settings.from_env()))


if __name__ == "__main__":
    main()
