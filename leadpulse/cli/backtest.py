"""`leadpulse backtest`: the I/O side of scoring.backtest and scoring.calibration. Reads a
history (a file, stdin read whole, or the input topic read from the beginning into memory
first), decodes and validates its lines as `leadpulse score` does (cli.offline), folds them
on one process or on --jobs (cli.parallel.run_routed: contacts linked by an identity share a
process), and writes the JSON and HTML reports.

Two folds, each a routed run:
1. the backtest: both rules files over the lines in input order (scoring.backtest.Lockstep),
   each process writing the member records its contacts send their accounts to files of
   its own; they are merged here by line number into each rules file's accounts
   (scoring.backtest.AccountReplay), which fire the hot-account alerts;
2. with --calibrate, the calibration: each process keeps its lines and their event times,
   then folds them in time order under each rules file, sampling every contact at each
   scoring time before the first event at or after it (scoring.calibration.Sampler).
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from operator import itemgetter
from typing import Any, BinaryIO

from leadpulse.cli.offline import score_numbered
from leadpulse.cli.parallel import Source, read_chunks, run_routed, write_chunks
from leadpulse.schemas.events import InvalidEvent, admit_event
from leadpulse.schemas.limits import InputLimits
from leadpulse.scoring import backtest, calibration
from leadpulse.scoring.backtest import AccountReplay, Lockstep, MemberUpdate, Partial
from leadpulse.scoring.calibration import Calibration, Sampler, converting_types, scoring_times
from leadpulse.scoring.engine import Event, HotLead
from leadpulse.scoring.replay import ScoreRun
from leadpulse.scoring.rules import DEFAULT_MODEL, Rules

_FLUSH = 1_000  # member records a process holds before it writes them out
BadLine = tuple[int, str, str, str]  # line number, rules file (baseline, candidate), field, reason


@dataclass(frozen=True)
class Options:
    baseline: Rules
    candidate: Rules
    now_ms: int  # refuse events ahead of it (offline.future_reference)
    limits: InputLimits
    at_ms: int | None  # evaluate the final state at (default: the latest event time)
    limit: int  # examples kept per kind of change
    calibrate: bool = False
    every_ms: int = 7 * calibration.DAY_MS
    horizon_ms: int = 90 * calibration.DAY_MS

    @property
    def rules(self) -> tuple[Rules, Rules]:
        return self.baseline, self.candidate


@dataclass(frozen=True)
class _Folded:
    latest_ms: int | None
    events: int  # valid events of the baseline's run
    bad: list[BadLine]


@dataclass
class _BacktestShare:
    """One process's backtest: both rules files over its lines, in lockstep."""

    options: Options
    members: tuple[BinaryIO, BinaryIO]  # each rules file's member updates, by line number
    lockstep: Lockstep | None = None
    pending: tuple[list[MemberUpdate], list[MemberUpdate]] = field(default_factory=lambda: ([], []))

    def fold(self, lines: Iterator[tuple[int, bytes]], check: Callable[[Event], None]) -> _Folded:
        options = self.options
        runs = ScoreRun(options.baseline), ScoreRun(options.candidate)
        lockstep = self.lockstep = Lockstep(*runs, on_member=self._member)
        keys: list[str | None] = [None, None]
        bad: list[BadLine] = []

        def taking(side: int) -> Callable[[Event], None]:
            def take(event: Event) -> None:
                check(event)
                keys[side] = event.contact_id

            return take

        def refusing(side: int) -> Callable[[int, InvalidEvent], None]:
            return lambda number, error: bad.append((number, backtest.SIDES[side], error.field, error.reason))

        checks = taking(0), taking(1)
        refusals = refusing(0), refusing(1)
        for number, line in lines:
            keys[0] = keys[1] = None
            for side, run in enumerate(runs):
                score_numbered(
                    run,
                    ((number, line),),
                    now_ms=options.now_ms,
                    limits=options.limits,
                    on_bad=refusals[side],
                    check=checks[side],
                )
            lockstep.after(number, (keys[0], keys[1]))
        for side in (0, 1):
            self._flush(side)
        latest = [run.latest_ms for run in runs if run.latest_ms is not None]
        return _Folded(max(latest, default=None), runs[0].events, bad)

    def _member(self, side: int, update: MemberUpdate) -> None:
        self.pending[side].append(update)
        if len(self.pending[side]) >= _FLUSH:
            self._flush(side)

    def _flush(self, side: int) -> None:
        write_chunks(self.pending[side], self.members[side])
        self.pending[side].clear()

    def finish(self, at_ms: int) -> Partial:
        assert self.lockstep is not None  # folded first
        for run in self.lockstep.runs:
            run.age(at_ms)
        return self.lockstep.partial(at_ms, self.options.limit)


@dataclass
class _CalibrationShare:
    """One process's calibration: its lines kept with their event times, then folded in time
    order under each rules file."""

    options: Options
    lines: list[tuple[int, int, bytes]] = field(default_factory=list)  # (event time, line number, line)
    conversions: dict[str, list[int]] = field(default_factory=dict)

    def fold(self, lines: Iterator[tuple[int, bytes]], check: Callable[[Event], None]) -> tuple[int, int] | None:
        options = self.options
        converting = converting_types(options.baseline)
        for number, line in lines:
            if not line or line.isspace():
                continue
            try:
                event = admit_event(line, options.now_ms, options.limits, options.baseline)
            except InvalidEvent:
                continue  # reported by the backtest's fold
            check(event)
            self.lines.append((event.occurred_ms, number, line))
            if event.type in converting:
                self.conversions.setdefault(event.contact_id, []).append(event.occurred_ms)
        for times in self.conversions.values():
            times.sort()
        self.lines.sort()
        if not self.lines:
            return None
        return self.lines[0][0], self.lines[-1][0]

    def finish(self, times: list[int]) -> tuple[Calibration, Calibration]:
        found = []
        for rules in self.options.rules:
            run = ScoreRun(rules)
            sampler = Sampler(run, self.conversions, self.options.horizon_ms)
            before = _Clock(sampler, times)
            position = count(1)  # hand-over versions grow in the order folded (ScoreRun.add)
            for _, _, line in self.lines:
                score_numbered(
                    run,
                    ((next(position), line),),
                    now_ms=self.options.now_ms,
                    limits=self.options.limits,
                    on_bad=lambda number, error: None,
                    check=before,
                )
                for output in run.outputs:
                    if isinstance(output, HotLead) and output.model == DEFAULT_MODEL:
                        sampler.hot(output.contact_id, output.occurred_ms)
                run.outputs.clear()
            before.reach(None)
            found.append(sampler.calibration())
        return found[0], found[1]


class _Clock:
    """Samples at each scoring time once the fold reaches it: before the first event at or
    after it (called as the fold's `check`, before the event is folded)."""

    def __init__(self, sampler: Sampler, times: list[int]) -> None:
        self.sampler = sampler
        self.times = iter(times)
        self.next = next(self.times, None)

    def __call__(self, event: Event) -> None:
        self.reach(event.occurred_ms)

    def reach(self, at_ms: int | None) -> None:
        """Sample at every scoring time up to `at_ms` (None: all that are left)."""
        while self.next is not None and (at_ms is None or at_ms >= self.next):
            self.sampler.sample(self.next)
            self.next = next(self.times, None)


def run_backtest(source: Source, options: Options, jobs: int, on_bad: Callable[[BadLine], None]) -> dict[str, Any]:
    """The JSON report of `leadpulse backtest` (with its calibration under "calibration")."""
    shares = [_BacktestShare(options, (_scratch(), _scratch())) for _ in range(jobs)]
    try:
        parts, partials = _routed(source, shares, lambda parts: _evaluation_time(options, parts), "backtest")
        for bad in sorted(bad for part in parts for bad in part.bad):
            on_bad(bad)
        at_ms = _evaluation_time(options, parts)
        partial = partials[0]
        for other in partials[1:]:
            partial.add(other)
        hot_accounts = tuple(_account_alerts(shares, side, options.rules[side]) for side in (0, 1))
    finally:
        for share in shares:
            for file in share.members:
                file.close()
    events = sum(part.events for part in parts)
    found = backtest.report(partial, options.rules, (hot_accounts[0], hot_accounts[1]), at_ms, events)
    if options.calibrate:
        found["calibration"] = _calibrate(source, options, jobs)
    return found


def _scratch() -> BinaryIO:
    """A file for a process's member records, made before the processes fork (removed
    already: gone once closed, which run_backtest does)."""
    return tempfile.TemporaryFile()


def _evaluation_time(options: Options, parts: list[_Folded]) -> int:
    if options.at_ms is not None:
        return options.at_ms
    latest = max((part.latest_ms for part in parts if part.latest_ms is not None), default=None)
    if latest is None:
        raise ValueError("the history holds no valid event")
    return latest


def _account_alerts(shares: list[_BacktestShare], side: int, rules: Rules) -> list[Any]:
    """Every process's member records of one rules file, merged by line number into accounts."""
    accounts = AccountReplay(rules)
    for _, account_id, member in heapq.merge(*(read_chunks(s.members[side]) for s in shares), key=itemgetter(0)):
        accounts.add(account_id, member)
    return accounts.alerts


def _calibrate(source: Source, options: Options, jobs: int) -> dict[str, Any]:
    shares = [_CalibrationShare(options) for _ in range(jobs)]

    def times(spans: list[tuple[int, int] | None]) -> list[int]:
        known = [span for span in spans if span is not None]
        if not known:
            return []
        first, last = min(span[0] for span in known), max(span[1] for span in known)
        return scoring_times(first, last, options.every_ms, options.horizon_ms)

    spans, found = _routed(source, shares, times, "calibration")
    chosen = times(spans)
    sides = []
    for side, rules in enumerate(options.rules):
        total = Calibration()
        for pair in found:
            total.add(pair[side])
        sides.append(calibration.report(total, rules, chosen, options.horizon_ms))
    return {"baseline": sides[0], "candidate": sides[1]}


def _routed(
    source: Source, shares: list[Any], decide: Callable[[list[Any]], Any], label: str
) -> tuple[list[Any], list[Any]]:
    """`run_routed` on --jobs processes, or the same steps here for one (or after a misrouted
    event: every share starts again, on one process)."""
    if len(shares) > 1:
        routed = run_routed(source, shares, decide, label)
        if routed is not None:
            return routed
        shares[1:] = []
        shares[0] = type(shares[0])(shares[0].options, *_fresh(shares[0]))
    share = shares[0]
    folded = share.fold(_numbered(source), lambda event: None)
    return [folded], [share.finish(decide([folded]))]


def _fresh(share: Any) -> tuple[Any, ...]:
    """What a share is made with besides its options, anew (its files emptied)."""
    if isinstance(share, _BacktestShare):
        for file in share.members:
            file.seek(0)
            file.truncate()
        return (share.members,)
    return ()


def _numbered(source: Source) -> Iterator[tuple[int, bytes]]:
    if isinstance(source, bytes):
        yield from enumerate(source.splitlines(keepends=True), start=1)
        return
    with source.open("rb") as stream:
        yield from enumerate(stream, start=1)


def bad_line_text(bad: BadLine) -> str:
    number, side, at_fault, reason = bad
    return f"line {number} ({side} rules): {InvalidEvent(at_fault, reason)}"
