"""Process settings shared by the long-running commands (worker, offline scorer, benchmarks)."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Contact states hold no reference cycles, yet CPython's default thresholds run a
    collection every 700 allocations and a full one that walks every live state: measured
    at a large share of the scoring time with 100k contacts in memory (bench/README.md).
    Collect far less often."""
    gc.freeze()
    gc.set_threshold(200_000, 50, 1000)
