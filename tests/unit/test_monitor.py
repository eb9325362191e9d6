"""Faust's Prometheus metrics, counted per message in plain attributes and published later."""

from types import SimpleNamespace

from aiokafka.structs import ConsumerRecord
from faust.sensors.prometheus import FaustMetrics
from faust.types import TP
from prometheus_client import CollectorRegistry

from leadpulse.streams.chunks import ChunkMessage
from leadpulse.streams.monitor import PeriodicPrometheusMonitor


def make_monitor() -> tuple[PeriodicPrometheusMonitor, CollectorRegistry]:
    registry = CollectorRegistry()
    return PeriodicPrometheusMonitor(metrics=FaustMetrics.create(registry, "faust")), registry


def receive(monitor: PeriodicPrometheusMonitor, tp: TP, offsets: range) -> None:
    for offset in offsets:
        monitor.on_message_in(tp, offset, SimpleNamespace(time_in=None))
    monitor.track_tp_end_offset(tp, offsets.stop + 100)


def test_messages_reach_prometheus_only_when_published():
    monitor, registry = make_monitor()
    receive(monitor, TP("events", 3), range(0, 5))
    assert registry.get_sample_value("faust_messages_received_total") in (None, 0.0)
    monitor.publish()
    assert registry.get_sample_value("faust_messages_received_total") == 5
    assert registry.get_sample_value("faust_messages_received_per_topic_total", {"topic": "events"}) == 5
    labels = {"topic": "events", "partition": "3"}
    assert registry.get_sample_value("faust_messages_received_per_topics_partition", labels) == 4
    assert registry.get_sample_value("faust_topic_partition_end_offset", labels) == 105


def test_publishing_again_adds_only_what_arrived_in_between():
    monitor, registry = make_monitor()
    receive(monitor, TP("events", 0), range(0, 5))
    monitor.publish()
    monitor.publish()
    receive(monitor, TP("events", 0), range(5, 8))
    monitor.publish()
    assert registry.get_sample_value("faust_messages_received_total") == 8
    assert registry.get_sample_value("faust_active_messages") == 8  # none acknowledged yet


def test_a_chunk_of_records_counts_each_of_them_as_received():
    monitor, registry = make_monitor()
    tp = TP("events", 1)
    records = [ConsumerRecord("events", 1, offset, 0, 0, b"k", b"{}", None, 1, 2, []) for offset in range(10, 14)]
    monitor.on_message_in(tp, 13, ChunkMessage(tp, records, 0))
    monitor.publish()
    assert registry.get_sample_value("faust_messages_received_total") == 4
    assert registry.get_sample_value("faust_messages_received_per_topic_total", {"topic": "events"}) == 4
    labels = {"topic": "events", "partition": "1"}
    assert registry.get_sample_value("faust_messages_received_per_topics_partition", labels) == 13
