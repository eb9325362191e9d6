"""Faust's aiokafka transport with a cheaper hand-over from the fetcher to the streams.

Faust's `Consumer._drain_messages` races *every* fetched message against a rebalance
(`wait_first(callback(message), suspend_flow.wait())`): four tasks and an `asyncio.wait`
per message (docs/faust-notes.md; its cost here is in bench/README.md). Here the race covers
a whole fetched batch: when a rebalance suspends the flow, the task handing it over is
cancelled at the message it was at, as Faust's loop ends up; the rebalance ends with a seek
of every input partition to its committed offset, so the rest is read again. The fetch
itself is never part of that race (see `_drain_messages`). The agents' inputs go over a
chunk of a partition's records at a time, not a message per record (streams/chunks.py).

Only offsets the scoring agent has delivered count towards a commit (`mark_scored`). Faust
also acks records nobody processed: a stream acks the records it skips during a rebalance
(flow stopped, an old generation), and once an agent has stopped on a failed batch the
stream goes on draining and acking what was already fetched. Faust commits the longest run
of acked offsets and, for a partition without a commit yet, does not check where that run
starts, so such acks committed offsets past records never scored (docs/faust-notes.md).
The consumer's `ack` sees every acknowledgement only if the streams iterate with Faust's
pure-Python loop: its Cython iterator records them in the consumer itself (`Stream`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any, cast
from weakref import WeakSet

import faust
from faust.transport.conductor import Conductor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, Message, TransportT
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from leadpulse.streams.chunks import ChunkMessage, chunk_event, chunked
from leadpulse.streams.deadline import exit_after
from leadpulse.streams.quiet import QuietConsumerThread, QuietProducer, exit_if_denied

YIELD_EVERY = 100  # messages handed over before the loop lets other tasks run (as Faust)
BUFFER_WAIT_S = 0.005  # how often a hand-over waiting for room in an agent's buffer looks again
# Longest a fetch waits at the broker for data (Faust sets 1500 ms). aiokafka keeps one fetch
# in flight per broker, and a partition whose fetched records wait over 100 ms to be taken is
# left out of the next one: once taken, its new records wait for that fetch to come back. At
# 1,500 ms that was 1.4-1.7 s of latency after any hiccup of the worker (bench/README.md, the
# latency section; docs/faust-notes.md). An idle worker fetches 10 times a second instead.
FETCH_MAX_WAIT_MS = 100


class BatchHandoverConsumer(aiokafka_driver.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scored: WeakSet[Message] = WeakSet()
        self._seeks = 0  # counts the starts and ends of seeks to the committed offsets

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """aiokafka's seek_to_committed seeks only partitions with a commit above 0. Records
        of a partition without one that were fetched but dropped during a rebalance (the
        flow stopped, an older generation) were then never read again: events lost until a
        restart (docs/faust-notes.md). Such input partitions go back to their beginning
        (the consumer's offset reset is `earliest`); replays there change nothing."""
        self._seeks += 1
        try:
            return await self._seek_inputs_to_committed()
        finally:
            self._seeks += 1

    async def _seek_inputs_to_committed(self) -> Mapping[TP, int]:
        committed: Mapping[TP, int] = await self._thread.seek_to_committed()
        uncommitted = [tp for tp, offset in committed.items() if not offset and self._acking(tp.topic)]
        if uncommitted and self.app.conf.consumer_auto_offset_reset == "earliest":
            await self._thread.seek_to_beginning(*uncommitted)
        return committed

    def _acking(self, topic: str) -> bool:
        """The agents' inputs; changelog positions are Faust's recovery's to manage."""
        return bool(self.app.topics.acks_enabled_for(topic))

    def mark_scored(self, messages: Iterable[Message]) -> None:
        """These records are scored and their outputs delivered: their acks may be committed."""
        self._scored.update(messages)

    def ack(self, message: Message) -> bool:
        """Count the ack towards a commit only for a record the agent has scored; any other
        is let go unprocessed, to be fetched again from the committed offset."""
        with ack_lock:
            if message not in self._scored:
                message.acked = True
                self._unacked_messages.discard(message)
                return False
            if isinstance(message, ChunkMessage):
                return self._ack_chunk(message)
            return super().ack(message)

    def _ack_chunk(self, chunk: ChunkMessage) -> bool:
        """Faust's `ack` for every offset of the chunk, from its first record to its last
        (offsets between them without a record are acked too, as Faust's gaps are)."""
        if chunk.acked:
            return False
        chunk.acked = True
        self._unacked_messages.discard(chunk)
        tp = chunk.tp
        committed = self._committed_offset[tp]
        index = self._acked_index[tp]
        start = chunk.first if committed is None else max(chunk.first, committed)
        offsets = [offset for offset in range(start, chunk.offset + 1) if offset not in index]
        index.update(offsets)
        self._acked[tp].extend(offsets)
        self._n_acked += len(offsets)
        notify(self._waiting_for_ack)
        return bool(offsets)

    def _new_consumer_thread(self) -> QuietConsumerThread:
        """Its clients back off while a broker is unreachable (streams/quiet.py), and its
        fetches wait at most FETCH_MAX_WAIT_MS at the broker (`ConsumerThread`)."""
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                seeks_before = self._seeks
                # Never raced against a rebalance: a fetch taken back on this side goes on in
                # the consumer's thread, and the records it then takes are lost
                # (docs/faust-notes.md).
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if records and not self.should_stop:
                    records = await self._current(records, seeks_before)
                    await self.wait_first(self._hand_over(records, active), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            exit_if_denied(exc)  # a revoked ACL: one line and exit (streams/quiet.py)
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _current(self, records: Mapping[TP, list[Any]], seeks_before: int) -> Mapping[TP, list[Any]]:
        """The fetched records that continue where the streams stand. Input records fetched
        while the flow was stopped precede the seek the rebalance ends with. Those fetched
        while a seek ran may come from either side of it: they are dropped too, and the
        inputs are sought again, so that nothing after that seek is skipped."""
        if self.flow_active and seeks_before == self._seeks:
            return records
        current = {tp: batch for tp, batch in records.items() if not self._acking(tp.topic)}
        if len(current) < len(records) and seeks_before != self._seeks:
            try:
                await self.perform_seek()
            except Exception as error:  # a rebalance under way: its own seek comes after
                self.log.warning("could not seek the inputs again after a fetch across a seek: %r", error)
        return current

    async def _hand_over(self, records: Mapping[TP, list[Any]], active: set[TP] | None) -> None:
        """Faust's per-message bookkeeping (read offsets, gaps, commit_every), one task. The
        agents' inputs go over a chunk at a time (streams/chunks.py), the rest per record."""
        buffered = self._buffered_partitions
        for tp in records:
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        each: dict[TP, list[Any]] = {}
        for tp, batch in records.items():
            if active is not None and tp not in active and tp not in buffered:
                continue  # paused since it was fetched (Faust drops these too)
            if not await self._hand_over_chunks(tp, batch):
                each[tp] = batch
        await self._hand_over_each(each)

    async def _hand_over_chunks(self, tp: TP, batch: list[Any]) -> bool:
        """Hand `batch` over in chunks if `tp` is an agent's input that one channel reads."""
        app = cast(App, self.app)
        bounds = app.chunked_topics.get(tp.topic)
        conductor = cast(Conductor, app.topics)
        if bounds is None or not self._acking(tp.topic):
            return False
        most, buffer_bytes = bounds
        async with conductor._tp_to_callback_lock:
            channels = conductor._tp_index.get(tp)
            if channels is None or len(channels) != 1:
                return False
            (channel,) = channels
        last = self._read_offset[tp]
        if last is not None:
            batch = [record for record in batch if record.offset >= last]  # the rest went over already
        if not batch:
            return True
        if last and batch[0].offset - last > 1:
            await self._add_gap(tp, last + 1, batch[0].offset)
        ebb = self.app.producer.buffer.wait_until_ebb
        room = max(2, self.app.conf.stream_buffer_maxsize // most)  # chunks: as many records as Faust buffers
        # ... and, however large the records, about `buffer_bytes` of them (LEADPULSE_BUFFER_BYTES)
        for chunk in chunked(batch, most, max(1, buffer_bytes // room)):
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            event = chunk_event(self.app, tp, chunk)
            event.message.incref()  # the channel's reference, as Faust's conductor takes one
            await ebb()
            while channel.queue.qsize() >= room:  # the agent is behind: fetch no further meanwhile
                await asyncio.sleep(BUFFER_WAIT_S)
            await channel.queue.put(event)
            self._read_offset[tp] = chunk[-1].offset
            await asyncio.sleep(0)
        return True

    async def _hand_over_each(self, records: Mapping[TP, list[Any]]) -> None:
        """Faust's path: a Message per record through the conductor's callback."""
        callback = self.callback
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        to_message = self._to_message
        since_yield = 0
        for tp, record in self.scheduler.iterate(records):
            since_yield += 1
            if since_yield > YIELD_EVERY:
                await asyncio.sleep(0)
                since_yield = 0
            offset = record.offset
            last = read_offset[tp]
            if last is not None and offset < last:
                continue  # already handed over (Faust drops these too)
            if last and offset - last > 1 and acks_enabled_for(tp.topic):
                await self._add_gap(tp, last + 1, offset)
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            await callback(to_message(tp, record))
            read_offset[tp] = offset


class ConsumerThread(QuietConsumerThread):
    def _create_consumer(self, loop: asyncio.AbstractEventLoop) -> Any:
        """Faust's consumer with fetches that wait at most FETCH_MAX_WAIT_MS at the broker
        (Faust passes 1,500 ms; aiokafka reads the attribute when the consumer starts)."""
        consumer = super()._create_consumer(loop)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class Stream(faust.Stream[Any]):
    """Faust's stream, always iterated by its pure-Python loop, which acknowledges an event
    through `Consumer.ack`. Faust's Cython iterator (used whenever its extension loads)
    copies `Consumer.ack` inline instead, so the acks of the records a stream skips or
    drains were counted past `BatchHandoverConsumer.ack`: a worker whose first batch was
    refused committed the offsets of chunks fetched after it (tests/agents/test_commit_policy.py).
    The agents' inputs come a chunk of records per event (streams/chunks.py), so that loop
    runs once per chunk, not per record."""

    def __aiter__(self) -> AsyncGenerator[Any, None]:
        iterator = cast(AsyncGenerator[Any, None], self._py_aiter())
        self._active_agens.add(iterator)  # as Faust's: closed when the stream stops
        return iterator


class Transport(aiokafka_driver.Transport):
    Consumer = BatchHandoverConsumer
    Producer = QuietProducer


class App(faust.App):
    """faust.App whose consumer hands fetched batches over as above and whose streams ack
    through it (`Stream`); the broker URL keeps its usual kafka:// scheme."""

    exit_deadline_s: float | None = None  # set by `leadpulse worker`: not in a test's process
    chunked_topics: dict[str, tuple[int, int]]  # topic -> most records a chunk, bytes of its buffer (streams/chunks.py)
    _exit_timer: threading.Timer | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, Stream=Stream, **kwargs)
        self.chunked_topics = {}

    def hand_over_in_chunks(self, topics: Iterable[str], most: int, buffer_bytes: int) -> None:
        """The agent reading `topics` takes chunks of at most `most` records, and its buffer
        holds about `buffer_bytes` of records at most (streams/chunks.py)."""
        self.chunked_topics.update(dict.fromkeys(topics, (most, buffer_bytes)))

    def _new_transport(self) -> TransportT:
        return Transport(self.conf.broker_consumer, self)

    async def crash(self, reason: BaseException) -> None:
        """A crash stops the worker, and within a bounded time (streams/deadline.py); a
        revoked ACL at once, in one line (streams/quiet.py)."""
        exit_if_denied(reason)
        if self.exit_deadline_s is not None and self._exit_timer is None:
            self._exit_timer = exit_after(self.exit_deadline_s, f"a crash ({reason!r})")
        await super().crash(reason)

    def mark_scored(self, messages: Iterable[Message]) -> None:
        consumer = self.consumer
        assert isinstance(consumer, BatchHandoverConsumer), "the app's transport is this module's"
        consumer.mark_scored(messages)
