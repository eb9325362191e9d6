"""The offline scorer's input side: JSON lines decoded and validated as the stream does, then
folded by `scoring.replay`; bad lines are reported by number. Also what `leadpulse score`
prints of a run, in one shape for one process and for several (cli.parallel)."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from typing import BinaryIO, Literal

from leadpulse.schemas.events import InvalidEvent, admit_event
from leadpulse.schemas.limits import DEFAULT_LIMITS, InputLimits, RecordLimits, RecordTooLarge
from leadpulse.schemas.outputs import account_record, dumps, nurture_record, output_record, snapshot_record
from leadpulse.schemas.record_sizes import AccountGuard, SizeGuard
from leadpulse.schemas.segment import is_unmapped
from leadpulse.scoring.accounts import AccountSnapshot, Member
from leadpulse.scoring.engine import Event
from leadpulse.scoring.identity import is_published, winner
from leadpulse.scoring.replay import ScoreRun
from leadpulse.scoring.rules import Rules
from leadpulse.scoring.timeutil import now_ms as clock_ms

Kind = Literal["contacts", "accounts", "nurture"]  # what `leadpulse score` prints


def score_lines(
    lines: Iterable[bytes],
    rules: Rules,
    *,
    now_ms: int | None = None,
    limits: InputLimits = DEFAULT_LIMITS,
    on_bad: Callable[[int, InvalidEvent], None] = lambda line, error: None,
    keep_outputs: bool = True,
) -> ScoreRun:
    """Apply every valid line in order, native events and Segment messages alike. An event
    further ahead of `now_ms` (default: the clock now) than the rules allow is refused as the
    worker refuses it (`admit_event`); `limits` are the worker's input limits, so that the
    same lines are refused as in the stream."""
    run = ScoreRun(rules, keep_outputs=keep_outputs)
    reference = clock_ms() if now_ms is None else now_ms
    score_numbered(run, enumerate(lines, start=1), now_ms=reference, limits=limits, on_bad=on_bad)
    return run


def future_reference(at_ms: int | None) -> int:
    """What `leadpulse score` refuses events ahead of: the clock when it starts, as the worker
    refuses events ahead of its clock, and no later than --at (scoring as of a time takes no
    event from after it). Read once, so that every process of --jobs decides alike."""
    clock = clock_ms()
    return clock if at_ms is None else min(at_ms, clock)


def score_numbered(
    run: ScoreRun,
    numbered: Iterable[tuple[int, bytes]],
    *,
    now_ms: int,
    limits: InputLimits,
    on_bad: Callable[[int, InvalidEvent], None],
    check: Callable[[Event], None] = lambda event: None,
) -> None:
    """`score_lines` over (line number, line) pairs, which may skip lines (another process
    folds them); `check` sees each valid event before it is folded. An event that would make
    the worker write a record over `limits.max_message_bytes` is refused as a bad line, as
    the worker dead-letters it (schemas.record_sizes); a member an account could not hold
    is left out of it, as the worker dead-letters its member record.

    The cyclic garbage collector is off meanwhile: a fold makes no reference cycles (the
    refcount frees what it drops: tests/unit/test_offline_gc.py checks it), and each
    collection would walk the states it keeps, again and again as they grow (bench/README.md,
    the offline scorer)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        _fold_lines(run, numbered, now_ms=now_ms, limits=limits, on_bad=on_bad, check=check)
    finally:
        if collecting:
            gc.enable()


def _fold_lines(
    run: ScoreRun,
    numbered: Iterable[tuple[int, bytes]],
    *,
    now_ms: int,
    limits: InputLimits,
    on_bad: Callable[[int, InvalidEvent], None],
    check: Callable[[Event], None],
) -> None:
    rules = run.rules
    if run.guard is None:
        run.guard = SizeGuard(rules, RecordLimits.for_topics(limits.max_message_bytes)).check_event
    if run.admit is None:
        run.admit = member_filter(rules, limits)
    for number, line in numbered:
        if not line or line.isspace():
            continue
        try:
            event = admit_event(line, now_ms, limits, rules)
        except InvalidEvent as error:
            run.bad += 1
            on_bad(number, error)
            continue
        check(event)
        try:
            outcome = run.add(event, number)
        except InvalidEvent as error:  # RecordTooLarge, from the guard
            run.bad += 1
            on_bad(number, error)
            continue
        if outcome != "duplicate" and is_unmapped(event):
            run.unmapped += 1


def report_bad_line(line: int, error: InvalidEvent) -> None:
    print(f"line {line}: {error}", file=sys.stderr)


def report_left_out(account_id: str, contact_id: str, error: RecordTooLarge) -> None:
    print(f"account {account_id}: contact {contact_id} left out: {error}", file=sys.stderr)


def member_filter(
    rules: Rules, limits: InputLimits, on_refused: Callable[[str, str, RecordTooLarge], None] = report_left_out
) -> Callable[[str, Member], bool]:
    """Whether an account takes a member, as the worker decides it (schemas.record_sizes:
    AccountGuard) at `limits.max_message_bytes` for every topic; a member left out is reported."""
    guard = AccountGuard(rules, RecordLimits.for_topics(limits.max_message_bytes), limits.max_string)

    def admit(account_id: str, member: Member) -> bool:
        try:
            guard.check(account_id, member)
        except RecordTooLarge as error:
            on_refused(account_id, member.contact_id, error)
            return False
        return True

    return admit


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


@dataclass(frozen=True)
class Totals:
    """The counts of the summary line; adding two runs over disjoint contacts adds them."""

    events: int = 0
    contacts: int = 0  # published: merged anonymous ids are counted apart
    merged: int = 0
    bad: int = 0
    duplicates: int = 0
    unscored: int = 0
    unmapped: int = 0
    outputs: int = 0
    erased: int = 0
    forgotten: int = 0
    aged: int = 0  # anonymous contacts expired (scoring.expiry)

    @classmethod
    def of(cls, run: ScoreRun) -> Totals:
        merged = sum(1 for state in run.contacts.values() if winner(state) is not None)
        return cls(
            run.events,
            sum(1 for state in run.contacts.values() if is_published(state)),
            merged,
            run.bad,
            run.duplicates,
            run.unscored,
            run.unmapped,
            run.output_count,
            len(run.erased),
            run.forgotten,
            run.aged,
        )

    def __add__(self, other: Totals) -> Totals:
        return Totals(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def summary(self) -> str:
        unmapped = f" ({self.unmapped} of them Segment track names without a [mapping])" if self.unmapped else ""
        return (
            f"scored {self.events} events for {self.contacts} contacts"
            + (f" ({self.merged} anonymous ids merged into them)" if self.merged else "")
            + f": {self.bad} bad lines skipped, "
            f"{self.duplicates} duplicates, {self.unscored} unscored{unmapped}; {self.outputs} outputs"
            + (f"; {self.erased} contacts erased, {self.forgotten} of their events dropped" if self.erased else "")
            + (f"; {self.aged} anonymous contacts expired" if self.aged else "")
        )


@dataclass(frozen=True)
class Scored:
    """What `leadpulse score` prints: `records` on stdout, `outputs` into --events-out."""

    records: Iterable[bytes]
    outputs: Iterable[bytes]
    totals: Totals


def evaluation_time(at_ms: int | None, last_event: bool, latest_ms: int | None) -> int | None:
    """When contacts are evaluated: --at, else the latest event time of the whole input;
    None (each contact at its own latest event) for --at last-event."""
    return None if last_event else at_ms if at_ms is not None else latest_ms


def ageing_time(at_ms: int | None, latest_ms: int | None) -> int | None:
    """When contacts are expired at the end of a run (scoring.expiry): --at, else the latest
    event time of the whole input (also for --at last-event: the worker's clock has reached
    at least the newest event's time)."""
    return at_ms if at_ms is not None else latest_ms


def contact_records(run: ScoreRun, kind: Kind, at_ms: int | None) -> Iterator[tuple[str, bytes]]:
    """(contact id, line) of the contact snapshots or nurture records, by contact id, made
    as they are read (a run of millions of contacts is printed without a copy of each)."""
    if kind == "nurture":
        return ((record.contact_id, dumps(nurture_record(record))) for record in run.nurtures(at_ms))
    return ((view.contact_id, dumps(snapshot_record(view))) for view in run.each_snapshot(at_ms))


def account_lines(accounts: Iterable[AccountSnapshot]) -> list[bytes]:
    return [dumps(account_record(account)) for account in accounts]


def scored(run: ScoreRun, kind: Kind, at_ms: int | None, last_event: bool) -> Scored:
    """A one-process run as printed."""
    run.age(ageing_time(at_ms, run.latest_ms))
    evaluate_at = evaluation_time(at_ms, last_event, run.latest_ms)
    records: Iterable[bytes]
    if kind == "accounts":
        records = account_lines(run.accounts(evaluate_at))
    else:
        records = (line for _, line in contact_records(run, kind, evaluate_at))
    outputs = (dumps(output_record(output)) for output in run.outputs)
    return Scored(records, outputs, Totals.of(run))
