"""Which acknowledged records may move the committed offset (streams/transport.py): only
those the scoring agent scored. Faust also acks records a stream skipped (during a
rebalance) or drained after the agent stopped on a failed batch; counting those committed
offsets past records never scored."""

import asyncio
from collections.abc import Iterable
from types import SimpleNamespace
from unittest.mock import AsyncMock

import orjson
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.chunks import ChunkMessage, chunk_event
from tests.agents.test_scoring_agent import settled
from tests.factories import raw_event


def _records(topic: str, offsets: range) -> list[ConsumerMessage]:
    return [ConsumerMessage(topic, 0, offset, 0.0, 0, [], b"k", b"{}", None) for offset in offsets]


def test_records_acked_without_being_scored_never_move_the_commit_past_the_batch_in_flight(scorer):
    consumer = scorer.app.consumer
    topic = scorer.settings.input_topic
    tp = TP(topic, 0)
    in_flight, drained = _records(topic, range(0, 5)), _records(topic, range(5, 9))
    scorer.app.topics.acking_topics.add(topic)  # as once the worker has subscribed the input

    for record in drained:  # acked by the stream while the batch before them is still held
        consumer.ack(record)
    assert consumer._new_offset(tp) is None, "a commit would skip the batch still in flight"

    consumer.mark_scored(in_flight)
    for record in in_flight:
        consumer.ack(record)
    assert consumer._new_offset(tp) == 5, "the commit stops where scoring stopped"

    refetched = _records(topic, range(5, 9))  # fetched again from the committed offset, then scored
    consumer.mark_scored(refetched)
    for record in refetched:
        consumer.ack(record)
    assert consumer._new_offset(tp) == 9


class RecordingThread:
    """Faust's consumer thread as far as seeking goes: what aiokafka's seek_to_committed
    returns (None: no commit yet), and which partitions were sent back to their beginning."""

    def __init__(self, committed):
        self.committed = committed
        self.to_beginning = []

    async def seek_to_committed(self):
        return self.committed

    async def seek_to_beginning(self, *partitions):
        self.to_beginning.extend(partitions)

    def highwater(self, tp):
        return None


async def test_an_input_partition_without_a_commit_is_read_again_from_its_beginning_after_a_rebalance(
    scorer, monkeypatch
):
    """aiokafka seeks only partitions committed above 0: records of an uncommitted one that
    were fetched and dropped during the rebalance were otherwise never read again."""
    consumer = scorer.app.consumer
    topic = scorer.settings.input_topic
    changelog = scorer.contacts.table.changelog_topic.get_topic_name()
    scorer.app.topics.acking_topics.add(topic)
    thread = RecordingThread({TP(topic, 0): None, TP(topic, 1): 42, TP(changelog, 0): None})
    monkeypatch.setattr(consumer, "_thread", thread)

    await consumer.seek_to_committed()

    assert thread.to_beginning == [TP(topic, 0)], "only the uncommitted input partition; the changelog is recovery's"


def _fetched(topic: str, offsets: Iterable[int], partition: int = 0) -> list[ConsumerRecord]:
    return [ConsumerRecord(topic, partition, offset, 0, 0, b"k", b"{}", None, 1, 2, []) for offset in offsets]


def test_a_chunk_counts_for_every_offset_it_spans_once_scored_and_for_none_before(scorer):
    """A chunk of fetched records (streams/chunks.py) is acknowledged once, for all of them;
    an offset without a record between two of them (a transaction marker) goes with it."""
    consumer = scorer.app.consumer
    topic = scorer.settings.input_topic
    tp = TP(topic, 2)
    scorer.app.topics.acking_topics.add(topic)

    consumer.ack(ChunkMessage(tp, _fetched(topic, range(0, 4), 2), 0))  # drained after the agent stopped
    assert consumer._new_offset(tp) is None, "a chunk nobody scored moved the commit"

    refetched = ChunkMessage(tp, _fetched(topic, [0, 1, 2, 3, 5], 2), 0)
    consumer.mark_scored([refetched])
    consumer.ack(refetched)
    assert sorted(consumer._acked[tp]) == [0, 1, 2, 3, 4, 5]
    assert consumer._new_offset(tp) == 6


async def test_an_agent_input_goes_over_in_chunks_of_at_most_the_batch_size_and_other_topics_per_record(
    scorer, monkeypatch
):
    handed: list[tuple[str, int]] = []

    async def hand_over(message):
        handed.append((message.topic, message.offset))

    transport = scorer.app.transport
    consumer = transport.Consumer(
        transport,
        callback=hand_over,
        on_partitions_revoked=None,
        on_partitions_assigned=None,
        loop=asyncio.get_running_loop(),
    )
    monkeypatch.setattr(consumer, "_thread", RecordingThread({}))
    topic, other = scorer.settings.input_topic, "leadpulse-not-an-agent-input"
    tp, other_tp = TP(topic, 3), TP(other, 3)
    scorer.app.topics.acking_topics.add(topic)
    agent_channel = AgentChannel()
    monkeypatch.setitem(scorer.app.chunked_topics, topic, (2, 64_000_000))
    monkeypatch.setitem(scorer.app.topics._tp_index, tp, {agent_channel})

    await consumer._hand_over({tp: _fetched(topic, range(0, 5), 3), other_tp: _fetched(other, range(0, 2), 3)}, None)

    chunks = [agent_channel.queue.get_nowait() for _ in range(agent_channel.queue.qsize())]
    assert [[record.offset for record in chunk.value] for chunk in chunks] == [[0, 1], [2, 3], [4]]
    assert [(chunk.message.first, chunk.message.offset) for chunk in chunks] == [(0, 1), (2, 3), (4, 4)]
    assert handed == [(other, 0), (other, 1)], "a topic no agent takes in chunks goes over a message per record"


class AgentChannel:
    """As far as the consumer goes: the queue the agent's stream reads."""

    def __init__(self):
        self.queue: asyncio.Queue = asyncio.Queue()


class LongPoll:
    """The consumer's fetch as the consumer thread runs it: the first one waits (a long poll
    on idle partitions) until the test hands it its records, the later ones return what is
    queued."""

    def __init__(self):
        self.waiting = asyncio.Event()
        self.first: asyncio.Future = asyncio.get_running_loop().create_future()
        self.queued: list[dict] = []
        self.calls = 0

    async def __call__(self, timeout):
        self.calls += 1
        if self.calls == 1:
            self.waiting.set()
            return await self.first, None
        await asyncio.sleep(0.01)
        return (self.queued.pop(0) if self.queued else {}), None


async def test_a_fetch_under_way_across_a_rebalance_keeps_its_records_and_they_are_read_again_after_the_seek(
    scorer, monkeypatch
):
    """A fetch taken back when the flow stops goes on in the consumer's thread: records it
    then takes (those produced just after the rebalance's seek) were lost, 17 contacts
    missing and 138 short in the two-worker test. The fetch is awaited; what it brings
    across a seek is dropped and the inputs sought again, so it is read again."""
    handed: list[int] = []

    async def hand_over(message):
        handed.append(message.offset)

    transport = scorer.app.transport
    consumer = transport.Consumer(  # this test's own, its flow events on this test's loop
        transport,
        callback=hand_over,
        on_partitions_revoked=None,
        on_partitions_assigned=None,
        loop=asyncio.get_running_loop(),
    )
    topic = scorer.settings.input_topic
    tp = TP(topic, 0)
    scorer.app.topics.acking_topics.add(topic)
    thread = RecordingThread({tp: None})
    poll = LongPoll()
    monkeypatch.setattr(consumer, "_thread", thread)
    monkeypatch.setattr(consumer, "_wait_next_records", poll)
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    draining = asyncio.ensure_future(consumer._drain_messages(fetcher))
    try:
        await asyncio.wait_for(poll.waiting.wait(), 10)
        consumer.stop_flow()  # a rebalance starts while the fetch waits on idle partitions
        await consumer.perform_seek()  # and ends with its seek to the committed offsets
        consumer.resume_flow()
        poll.first.set_result({tp: _fetched(topic, range(0, 4))})  # produced after the seek
        poll.queued.append({tp: _fetched(topic, range(0, 4))})  # fetched again from the beginning

        await asyncio.wait_for(_until(lambda: handed), 10)
        assert handed == [0, 1, 2, 3], "each record handed over once, after the inputs were sought again"
        assert thread.to_beginning == [tp, tp], "the rebalance's seek, then the one after the fetch across it"
    finally:
        fetcher._stopped.set()
        await asyncio.wait_for(draining, 10)


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_chunks_the_stream_drains_after_a_refused_batch_never_move_the_commit(scorer, capture, monkeypatch):
    """Once the agent has stopped on a refused delivery, its stream goes on draining what was
    fetched, its acknowledgements enabled again. Faust's Cython stream iterator recorded those
    in the consumer itself, past the ack that counts only scored records: a worker that failed
    its first batch committed the offsets of chunks fetched after it, never scored
    (test_faults.py's refused-delivery test, ~120 contacts short after the restart)."""
    crash = AsyncMock()
    monkeypatch.setattr(scorer.app, "crash", crash)
    capture.fail_next = MessageSizeTooLargeError()
    topic = scorer.settings.input_topic
    scorer.app.topics.acking_topics.add(topic)
    tp, other = _assigned_anew(scorer.app.consumer, TP(topic, 5), TP(topic, 6))
    document = orjson.dumps(raw_event(event_id="refused-first", contact_id="agent-commit-1"))
    async with scorer.agent.test_context() as agent:
        channel = agent.stream().channel
        refused = chunk_event(scorer.app, tp, [_record(tp, 0, document)])
        refused.message.incref()  # the channel's reference, as the consumer takes one
        await channel.put(refused)
        assert await settled(lambda: crash.await_count == 1)
        drained = [chunk_event(scorer.app, other, [_record(other, offset, document)]) for offset in (0, 1)]
        for chunk in drained:
            chunk.message.incref()
            await channel.put(chunk)
        assert await settled(lambda: drained[-1].message.acked), "the stream drains them"
    assert scorer.app.consumer._new_offset(tp) is None, "the refused batch was committed"
    assert scorer.app.consumer._new_offset(other) is None, "chunks nobody scored moved the commit"


def _assigned_anew(consumer, *tps: TP) -> tuple[TP, ...]:
    """The partitions as a rebalance leaves them newly assigned: no commit and nothing acked
    (Faust's on_partitions_revoked), whatever the session's other agent tests acked there."""
    for tp in tps:
        for bookkeeping in (consumer._gap, consumer._acked, consumer._acked_index, consumer._committed_offset):
            bookkeeping.pop(tp, None)
    return tps


def _record(tp: TP, offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(tp.topic, tp.partition, offset, now_ms(), 0, None, value, None, 0, len(value), [])


async def test_a_chunk_the_stream_skips_as_of_an_older_generation_never_moves_the_commit(scorer):
    """Fetched before a rebalance, handed over after it: the stream skips the chunk and
    acknowledges it unscored, to be fetched again from the committed offset."""
    topic = scorer.settings.input_topic
    scorer.app.topics.acking_topics.add(topic)
    (tp,) = _assigned_anew(scorer.app.consumer, TP(topic, 7))
    records = [_record(tp, 0, orjson.dumps(raw_event(event_id="skipped", contact_id="agent-commit-2")))]
    stale = ChunkMessage(tp, records, scorer.app.consumer_generation_id - 1)
    stale.incref()
    async with scorer.agent.test_context() as agent:
        await agent.stream().channel.put(scorer.app.create_event(None, records, None, stale))
        assert await settled(lambda: stale.acked), "the stream skips it"
    assert scorer.contacts.get("agent-commit-2") is None
    assert scorer.app.consumer._new_offset(tp) is None, "a chunk nobody scored moved the commit"
