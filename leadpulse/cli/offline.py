"""The offline scorer's input side: JSON lines decoded and validated as the stream does, then
folded by `scoring.replay`; bad lines are reported by number."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import BinaryIO

from leadpulse.schemas.events import InvalidEvent, decode_event
from leadpulse.schemas.limits import DEFAULT_LIMITS, InputLimits
from leadpulse.schemas.segment import is_unmapped
from leadpulse.scoring.engine import future_reason
from leadpulse.scoring.replay import ScoreRun
from leadpulse.scoring.rules import Rules


def score_lines(
    lines: Iterable[bytes],
    rules: Rules,
    *,
    now_ms: int | None = None,
    limits: InputLimits = DEFAULT_LIMITS,
    on_bad: Callable[[int, InvalidEvent], None] = lambda line, error: None,
) -> ScoreRun:
    """Apply every valid line in order, native events and Segment messages alike. `now_ms`,
    when given, refuses events further ahead of it than the rules allow, as the stream does
    with its clock; `limits` are the worker's input limits, so that the same lines are refused as in the stream."""
    run = ScoreRun(rules)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = decode_event(line, limits, rules.mapping)
            if now_ms is not None and (reason := future_reason(event, now_ms, rules)) is not None:
                raise InvalidEvent("occurred_at", reason)
        except InvalidEvent as error:
            run.bad += 1
            on_bad(number, error)
            continue
        if run.add(event) != "duplicate" and is_unmapped(event):
            run.unmapped += 1
    return run


def report_bad_line(line: int, error: InvalidEvent) -> None:
    print(f"line {line}: {error}", file=sys.stderr)


def progress_lines(stream: BinaryIO, total_bytes: int | None, label: str) -> Iterable[bytes]:
    """Yield lines with a progress bar on stderr (shown only on a terminal)."""
    from tqdm import tqdm

    with tqdm(total=total_bytes, unit="B", unit_scale=True, desc=label, disable=None, mininterval=0.5) as bar:
        pending = 0
        for line in stream:
            pending += len(line)
            if pending >= 1 << 20:
                bar.update(pending)
                pending = 0
            yield line
        bar.update(pending)
