"""The batch loop both agents share: what makes a batch's offsets committable.

Faust's `take_events` acks a batch in a `finally`, also when handling it failed or a
rebalance cancelled it; an extra reference per message keeps its offsets uncommitted until
the batch is fully delivered, and only then are they marked for a commit (streams/transport.py,
docs/faust-notes.md). A batch that cannot be delivered stops the worker: it restarts from
the last commit (docs/guarantees.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from leadpulse.streams.pipeline import Pipeline

log = logging.getLogger(__name__)


async def deliver_batches(
    pipeline: Pipeline, stream: Any, deliver: Callable[[Sequence[Any]], Awaitable[None]], agent: str
) -> None:
    """Hand each batch of `stream` to `deliver`; /health counts `agent` as consuming meanwhile."""
    app, settings, readiness = pipeline.app, pipeline.settings, pipeline.readiness
    readiness.consuming.add(agent)
    try:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            held = [event.message for event in batch]
            for message in held:
                message.incref()
            try:
                await deliver(batch)
            except Exception as error:
                log.critical(
                    "stopping: a %s batch could not be delivered, nothing of it is committed: %s", agent, error
                )
                await app.crash(error)
                return
            app.mark_scored(held)
            for message in held:
                message.decref()
    finally:
        readiness.consuming.discard(agent)
