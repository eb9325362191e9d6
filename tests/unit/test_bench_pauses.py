"""How bench.scaling reads a rebalance pause from the output records' timestamps (the run
itself is a benchmark, not a test)."""

from __future__ import annotations

from bench.scaling import Pause, output_gaps


def test_a_pause_is_the_longest_time_without_output_in_the_window_counted_from_the_last_output_before_it():
    # partitions 0 and 1 write every 100 ms until 1.0 s; partition 0 is back at 2.5 s, partition 1 at 4.0 s
    stamps = [(p, t) for p in (0, 1) for t in range(0, 1_001, 100)]
    stamps += [(0, t) for t in range(2_500, 6_001, 100)] + [(1, t) for t in range(4_000, 6_001, 100)]
    assert output_gaps(stamps, since_ms=1_200, until_ms=6_000) == Pause(1.5, 3.0)
    assert output_gaps(stamps, since_ms=0, until_ms=900) == Pause(0.1, 0.1)  # before: the gaps between events
    assert output_gaps([], since_ms=0, until_ms=1) == Pause(0.0, 0.0)
