"""A crashed worker exits within a bounded time, even when a service hangs while stopping.

A worker stops on a batch it cannot deliver (docs/guarantees.md) so that an orchestrator
restarts it. Stopping runs every Faust/mode service's `stop`, each allowed 60 s, and a
producer still flushing to a struggling broker was seen to keep a crashed worker alive past
90 s. Exiting hard is safe at that point: only delivered batches have committed offsets,
so whatever is in flight is read again, exactly as after a `kill -9`.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

CRASH_EXIT_DEADLINE_S = 30.0
CRASH_EXIT_CODE = 70  # EX_SOFTWARE


def exit_after(seconds: float, reason: str) -> threading.Timer:
    """Arm a timer thread that ends the process with CRASH_EXIT_CODE unless it is gone first
    (a thread, so a blocked event loop cannot hold it up)."""

    def exit_now() -> None:
        log.critical("the worker did not stop within %.0f s after %s: exiting now", seconds, reason)
        logging.shutdown()
        os._exit(CRASH_EXIT_CODE)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()
    return timer
