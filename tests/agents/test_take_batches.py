"""How the agents take their batches from a stream (streams/chunks.py): counted in records,
a chunk never split, and nothing acknowledged before the caller says so."""

import asyncio
import time

from aiokafka.structs import ConsumerRecord
from faust.types import TP

from leadpulse.streams.chunks import chunk_event, take_batches


def _chunk(app, offsets: range):
    tp = TP("leadpulse-take-test", 0)
    records = [ConsumerRecord(tp.topic, 0, offset, 0, 0, b"k", b"{}", None, 1, 2, []) for offset in offsets]
    event = chunk_event(app, tp, records)
    event.message.incref()
    return event


async def test_a_batch_holds_at_most_the_batch_size_in_records_and_never_splits_a_chunk(scorer):
    app = scorer.app
    app.flow_control.resume()  # off until a consumer starts, as agent.test_context() says too
    channel = app.channel()
    stream = app.stream(channel)
    chunks = [_chunk(app, range(0, 3)), _chunk(app, range(3, 6)), _chunk(app, range(6, 8))]
    batches = take_batches(stream, 5, 10.0)
    taking = asyncio.ensure_future(anext(batches))
    try:
        await asyncio.wait_for(_until(lambda: channel._subscribers), 10)  # the stream reads the channel
        for chunk in chunks:
            await channel.put(chunk)
        first = await asyncio.wait_for(taking, 10)
        second = await asyncio.wait_for(anext(batches), 10)
    finally:
        await batches.aclose()
        await stream.stop()
    assert [[event.message.first for event in batch] for batch in (first, second)] == [[0], [3, 6]]
    assert not any(chunk.message.acked for chunk in chunks), "acknowledged before the caller delivered them"


async def test_a_batch_waits_its_window_from_its_first_event_not_from_the_end_of_the_batch_before(scorer):
    app = scorer.app
    app.flow_control.resume()
    channel = app.channel()
    stream = app.stream(channel)
    within = 1.0
    batches = take_batches(stream, 3, within)
    taking = asyncio.ensure_future(anext(batches))
    try:
        await asyncio.wait_for(_until(lambda: channel._subscribers), 10)
        await channel.put(_chunk(app, range(0, 3)))
        first = await asyncio.wait_for(taking, 10)  # full: taken at once
        await channel.put(later := _chunk(app, range(3, 5)))
        await asyncio.sleep(within)  # the stimulus: the first batch stays out longer than a window
        began = time.monotonic()
        second = await asyncio.wait_for(anext(batches), 10)
        waited = time.monotonic() - began
    finally:
        await batches.aclose()
        await stream.stop()
    assert [[event.message.first for event in batch] for batch in (first, second)] == [[0], [3]]
    assert second == [later]
    assert waited < within / 2, f"the second batch waited {waited:.2f} s more after the first came back"


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)
