"""Which acknowledged records may move the committed offset (streams/transport.py): only
those the scoring agent scored. Faust also acks records a stream skipped (during a
rebalance) or drained after the agent stopped on a failed batch; counting those committed
offsets past records never scored."""

from faust.types import TP
from faust.types.tuples import ConsumerMessage


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
