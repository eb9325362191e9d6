"""Faust's aiokafka transport with a cheaper hand-over from the fetcher to the streams.

Faust's `Consumer._drain_messages` races *every* fetched message against a rebalance
(`wait_first(callback(message), suspend_flow.wait())`): four tasks and an `asyncio.wait`
per message (docs/faust-notes.md; its cost here is in bench/README.md). Here the race covers
a whole fetched batch: when a rebalance suspends the flow, the task handing it over is
cancelled at the message it was at, as Faust's loop ends up; the rebalance ends with a seek
of every input partition to its committed offset, so the rest is read again. The fetch
itself is never part of that race (see `_drain_messages`).

Only offsets the scoring agent has delivered count towards a commit (`mark_scored`). Faust
also acks records nobody processed: a stream acks the records it skips during a rebalance
(flow stopped, an old generation), and once an agent has stopped on a failed batch the
stream goes on draining and acking what was already fetched. Faust commits the longest run
of acked offsets and, for a partition without a commit yet, does not check where that run
starts, so such acks committed offsets past records never scored (docs/faust-notes.md).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from weakref import WeakSet

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, Message, TransportT
from faust.types.tuples import ack_lock

from leadpulse.streams.deadline import exit_after
from leadpulse.streams.quiet import QuietConsumerThread, QuietProducer

YIELD_EVERY = 100  # messages handed over before the loop lets other tasks run (as Faust)


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
            if message in self._scored:
                return super().ack(message)
            message.acked = True
            self._unacked_messages.discard(message)
            return False

    def _new_consumer_thread(self) -> QuietConsumerThread:
        """Its clients back off while a broker is unreachable (streams/quiet.py)."""
        return QuietConsumerThread(self, loop=self.loop, beacon=self.beacon)

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
        """Faust's per-message bookkeeping (read offsets, gaps, commit_every), one task."""
        callback = self.callback
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        to_message = self._to_message
        buffered = self._buffered_partitions
        for tp in records:
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
        since_yield = 0
        for tp, record in self.scheduler.iterate(records):
            if active is not None and tp not in active and tp not in buffered:
                continue  # paused since it was fetched (Faust drops these too)
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


class Transport(aiokafka_driver.Transport):
    Consumer = BatchHandoverConsumer
    Producer = QuietProducer


class App(faust.App):
    """faust.App whose consumer hands fetched batches over as above; the broker URL keeps
    its usual kafka:// scheme."""

    exit_deadline_s: float | None = None  # set by `leadpulse worker`: not in a test's process
    _exit_timer: threading.Timer | None = None

    def _new_transport(self) -> TransportT:
        return Transport(self.conf.broker_consumer, self)

    async def crash(self, reason: BaseException) -> None:
        """A crash stops the worker, and within a bounded time (streams/deadline.py)."""
        if self.exit_deadline_s is not None and self._exit_timer is None:
            self._exit_timer = exit_after(self.exit_deadline_s, f"a crash ({reason!r})")
        await super().crash(reason)

    def mark_scored(self, messages: Iterable[Message]) -> None:
        consumer = self.consumer
        assert isinstance(consumer, BatchHandoverConsumer), "the app's transport is this module's"
        consumer.mark_scored(messages)
