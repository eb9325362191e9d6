"""The first minute at which a condition that time alone makes true starts to hold: when a
contact's temperature drops a band (the cooling schedule) and when its engagement falls low
enough for a nurture track. Both are asked for every contact a batch touches.

A bisection over the whole horizon (20 half-lives) takes ~20 checks of the score. The
engagement decays by half every half-life, so where it will cross a level follows from its
category totals now (`decay_eta_ms`, to within float rounding): the search starts there and
widens its steps until it has the crossing between two checks: 3 checks for most contacts of
the shipped rules, against ~21 (bench/README.md). The hint only saves checks: any hint, or
none, gives a time of the same contract, checked, never computed from the estimate."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

STEP_MS = 60_000  # the precision of a time found: a re-read at most a minute late


def first_time(check: Callable[[int], bool], start: int, horizon_ms: int, hint_ms: float | None = None) -> int | None:
    """A time in (start, start + horizon_ms] at which `check` holds and at most STEP_MS after
    the last time found not to hold (or after `start`, where it is taken not to hold),
    assuming it stays true once true; None if it does not hold at the horizon's end.
    `hint_ms`: an offset from `start` where it probably starts to hold."""
    if horizon_ms <= 0 or not check(start + horizon_ms):
        return None
    low, high = 0, horizon_ms  # not holding at `low` (or the start), holding at `high`
    if hint_ms is not None and 0 < hint_ms < horizon_ms:
        guess, step = int(hint_ms), STEP_MS
        if check(start + guess):
            high = guess
            while (probe := high - step) > low:  # earlier, by growing steps, until it does not hold
                if not check(start + probe):
                    low = probe
                    break
                high, step = probe, step * 2
        else:
            low = guess
            while (probe := low + step) < high:  # later, likewise, until it holds
                if check(start + probe):
                    high = probe
                    break
                low, step = probe, step * 2
    while high - low > STEP_MS:
        middle = (low + high) // 2
        if check(start + middle):
            high = middle
        else:
            low = middle
    return start + high


def decay_eta_ms(totals: Iterable[tuple[float, float, float]], below: float, half_life_ms: int) -> float | None:
    """How long until an engagement made of category totals, each (value now, floor, cap) and
    clamped to its floor and cap, all decaying by half every `half_life_ms`, falls under
    `below`; None where no time is found (it does not fall there by decaying, or a positive
    floor). At u = 2^(-t/H) a total is value·u once inside its bounds, and its bound until
    then: the sum is piecewise linear in u, solved segment by segment from now (u = 1) on."""
    kept = list(totals)
    if any(floor > 0.0 for _, floor, _ in kept):
        return None
    # (u where a total comes inside its bounds, its value now, the bound it is held at until then)
    bends = sorted(
        [(cap / value, value, cap) for value, _, cap in kept if value > cap]
        + [(floor / value, value, floor) for value, floor, _ in kept if value < floor],
        reverse=True,
    )
    slope = math.fsum(value for value, floor, cap in kept if floor <= value <= cap)
    level = math.fsum(bound for _, _, bound in bends)
    upper = 1.0
    for bend, value, bound in [*bends, (0.0, 0.0, 0.0)]:  # sum = slope·u + level on [bend, upper]
        if slope:
            reached = (below - level) / slope
            if bend <= reached <= upper:
                return -half_life_ms * math.log2(reached) if 0.0 < reached < 1.0 else None
        slope, level, upper = slope + value, level - bound, bend
    return None
