"""The batch loop both agents share: what makes a batch's offsets committable.

A batch's events are acknowledged only once the batch is fully delivered, and only then are
its offsets marked for a commit (streams/chunks.py, streams/transport.py,
docs/faust-notes.md). A batch that cannot be delivered stops the worker: it restarts from
the last commit (docs/guarantees.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from leadpulse.streams.chunks import Part, by_partition, take_batches
from leadpulse.streams.pipeline import Pipeline

log = logging.getLogger(__name__)


async def deliver_batches(
    pipeline: Pipeline, stream: Any, deliver: Callable[[Sequence[Part]], Awaitable[None]], agent: str
) -> None:
    """Hand each batch of `stream` to `deliver`, by partition; /health counts `agent` as
    consuming meanwhile."""
    app, settings, readiness = pipeline.app, pipeline.settings, pipeline.readiness
    readiness.consuming.add(agent)
    app.hand_over_in_chunks(getattr(stream.channel, "topics", ()), settings.batch_size, settings.buffer_bytes)
    try:
        async for batch in take_batches(stream, settings.batch_size, settings.batch_within_s):
            try:
                await deliver(by_partition(batch))
            except Exception as error:
                log.critical(
                    "stopping: a %s batch could not be delivered, nothing of it is committed: %s", agent, error
                )
                await app.crash(error)
                return
            app.mark_scored(event.message for event in batch)
            for event in batch:
                await stream.ack(event)
    finally:
        readiness.consuming.discard(agent)
