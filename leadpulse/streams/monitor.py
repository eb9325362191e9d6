"""Faust's Prometheus metrics, published once a second instead of once per message.

Faust's `PrometheusMonitor` updates several labelled Prometheus metrics in every per-message
hook; that cost a noticeable share of the worker (bench/README.md).
Faust's base `Monitor` keeps the same counts in plain attributes anyway, so here the hooks
do only that bookkeeping, and `publish()` copies the counts into the same Prometheus metrics
(same names, same labels) from a one-second timer.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from faust.sensors.monitor import Monitor
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP

from leadpulse.streams.chunks import ChunkMessage


class PeriodicPrometheusMonitor(PrometheusMonitor):
    on_stream_event_in = Monitor.on_stream_event_in
    on_message_out = Monitor.on_message_out
    on_table_get = Monitor.on_table_get
    on_table_set = Monitor.on_table_set
    on_table_del = Monitor.on_table_del
    track_tp_end_offset = Monitor.track_tp_end_offset

    def __init__(self, metrics: FaustMetrics, **kwargs: Any) -> None:
        super().__init__(metrics=metrics, **kwargs)
        self._published: Counter[Any] = Counter()  # what the Prometheus counters already hold
        self._runtimes: list[float] = []

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        """Received messages count records: a chunk (streams/chunks.py) counts all of its own.
        Stream events count what a stream took, so a chunk counts once there."""
        Monitor.on_message_in(self, tp, offset, message)
        if isinstance(message, ChunkMessage):
            self.messages_received_total += message.size - 1
            self.messages_received_by_topic[tp.topic] += message.size - 1

    def on_stream_event_out(self, tp: TP, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        Monitor.on_stream_event_out(self, tp, offset, stream, event, state)
        if state is not None:
            self._runtimes.append(self.events_runtime[-1])

    def publish(self) -> None:
        metrics = self._metrics
        self._add(metrics.messages_received, "received", self.messages_received_total)
        metrics.active_messages.set(self.messages_active)
        for topic, count in self.messages_received_by_topic.items():
            self._add(metrics.messages_received_per_topics.labels(topic=topic), ("topic", topic), count)
        for tp, offset in self.tp_read_offsets.items():
            metrics.messages_received_per_topics_partition.labels(topic=tp.topic, partition=tp.partition).set(offset)
        for tp, offset in self.tp_end_offsets.items():
            metrics.topic_partition_end_offset.labels(topic=tp.topic, partition=tp.partition).set(offset)
        self._add(metrics.total_events, "events", self.events_total)
        metrics.total_active_events.set(self.events_active)
        for stream, name in self.stream_lookup.items():
            label = f"stream.{self._stream_label(stream)}.events"
            self._add(
                metrics.total_events_per_stream.labels(stream=label), ("stream", label), self.events_by_stream[name]
            )
        for table, state in self.tables.items():
            for operation, count in (
                (self.KEYS_RETRIEVED, state.keys_retrieved),
                (self.KEYS_UPDATED, state.keys_updated),
                (self.KEYS_DELETED, state.keys_deleted),
            ):
                child = metrics.table_operations.labels(table=f"table.{table}", operation=operation)
                self._add(child, (table, operation), count)
        runtimes, self._runtimes = self._runtimes, []
        for seconds in runtimes:
            metrics.events_runtime_latency.observe(self.secs_to_ms(seconds))

    def _add(self, counter: Any, key: Any, total: int) -> None:
        """Bring a Prometheus counter up to the monitor's running total."""
        counter.inc(total - self._published[key])
        self._published[key] = total
