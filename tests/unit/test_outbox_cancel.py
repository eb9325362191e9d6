"""Stopping a worker cancels the agent while the outbox waits for the broker's
acknowledgements. The cancellation must end that wait whatever the moment, also the one at
which the acknowledgements arrive: Python 3.11's `asyncio.wait_for` returned their result
then, and the agent went on to wait for a next batch that never came (a stop that hung)."""

import asyncio

import pytest

from leadpulse.streams.outbox import Outbox


async def test_a_cancelled_wait_for_acknowledgements_ends_even_as_they_arrive():
    loop = asyncio.get_running_loop()
    # Every interleaving of "acknowledged" and "cancelled" within a few turns of the loop.
    for before_ack in range(4):
        for before_cancel in range(4):
            delivery: asyncio.Future[int] = loop.create_future()
            waiting = asyncio.ensure_future(Outbox()._acknowledged([delivery], ("contact-scores", 0)))
            for _ in range(before_ack):
                await asyncio.sleep(0)
            delivery.set_result(7)
            for _ in range(before_cancel):
                await asyncio.sleep(0)
            if waiting.done():  # acknowledged before the cancel: nothing to end
                assert waiting.result() == [7]
                continue
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
