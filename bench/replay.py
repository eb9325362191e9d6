"""Benchmark of re-scoring history: `leadpulse score` over a file, one process against several.

    python -m bench.replay [--events 1000000] [--contacts 100000] [--runs 3] [--jobs N]
                           [--compiled | --compiled-only] [--file EVENTS.jsonl]

Writes synthetic traffic (cookies linked to contacts, accounts) to a temporary file and
scores it as the command does (decode, validate, fold, identity stitching, snapshots at the
latest event time) with one process and with `--jobs` (default: one per CPU). Prints the
medians of `--runs` runs in events/s, their ratio, and whether both printed the same.
`--compiled` measures the compiled build (mypyc) the same way (bench/compiled.py) and checks that
it printed what the pure code printed; `--compiled-only` measures the compiled build alone
(what the `leadpulse` command runs: millions of events on the pure code take an hour).
`--file` scores a file written before (`write_traffic`, of these `--events` and `--contacts`)
instead of writing one: the same 10M events, say, for several measurements.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench.compiled import require_compiled, run_compiled
from leadpulse.cli.offline import Scored, Totals, future_reference, score_lines, scored
from leadpulse.cli.parallel import Options, default_jobs, score_parallel
from leadpulse.cli.traffic import Traffic
from leadpulse.schemas.limits import DEFAULT_LIMITS
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import parse_rfc3339_ms
from leadpulse.streams.runtime import tune_gc

START = parse_rfc3339_ms("2026-06-01T00:00:00Z")


def write_traffic(path: Path, events: int, contacts: int) -> None:
    traffic = Traffic(
        seed=11, start_ms=START, span_ms=180 * 86_400_000, contacts=contacts, accounts=contacts // 100, identities=0.3
    )
    with path.open("wb") as out:
        for event in traffic.events(events):
            out.write(orjson.dumps(event) + b"\n")


def score(path: Path, jobs: int) -> tuple[str, Totals]:
    """What `leadpulse score FILE --jobs N` prints: a digest of the records, and the summary."""
    rules = load_rules()
    result: Scored
    if jobs == 1:
        with path.open("rb") as stream:
            result = scored(score_lines(stream, rules), "contacts", None, last_event=False)
    else:
        options = Options(
            rules, future_reference(None), DEFAULT_LIMITS, "contacts", None, last_event=False, with_outputs=False
        )
        result = score_parallel(path, options, jobs, on_bad=lambda line, error: None)
    digest = hashlib.sha256()
    for record in result.records:
        digest.update(record + b"\n")
    return digest.hexdigest(), result.totals


def cpu_seconds() -> float:
    """CPU time of this process and of the processes it waited for: on a shared machine the
    wall clock says what the others left us, this says what the work cost."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class Runs:
    """One configuration's runs: events/s by the wall clock and per CPU-second, what it printed."""

    jobs: int
    rates: list[float] = field(default_factory=list)
    cpu_rates: list[float] = field(default_factory=list)
    printed: set[tuple[str, Totals]] = field(default_factory=set)

    def run(self, path: Path, events: int) -> None:
        began, began_cpu = time.perf_counter(), cpu_seconds()
        self.printed.add(score(path, self.jobs))
        self.rates.append(events / (time.perf_counter() - began))
        self.cpu_rates.append(events / (cpu_seconds() - began_cpu))

    def report(self) -> float:
        median = statistics.median(self.rates)
        runs = ", ".join(f"{r:,.0f}" for r in self.rates)
        print(
            f"  --jobs {self.jobs:<3} {median:>10,.0f} events/s   (runs: {runs}); "
            f"{statistics.median(self.cpu_rates):,.0f} events per CPU-second"
        )
        return median


def measure(args: argparse.Namespace) -> tuple[Runs, Runs]:
    """`--jobs 1` and `--jobs N` over the same written traffic, interleaved."""
    with tempfile.TemporaryDirectory() as folder:
        if args.file is None:
            path = Path(folder) / "events.jsonl"
            print(f"writing {args.events:,} events for {args.contacts:,} contacts...", flush=True)
            write_traffic(path, args.events, args.contacts)
        else:
            path = args.file
        print(
            f"{path.name}: median of {args.runs} runs, interleaved; load average {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} CPUs:"
        )
        one, many = Runs(1), Runs(args.jobs)
        for _ in range(args.runs):  # interleaved, so that a change of load hits both alike
            one.run(path, args.events)
            many.run(path, args.events)
    return one, many


def compare_compiled(args: argparse.Namespace, one: Runs, many: Runs) -> bool:
    """The same measurement on the compiled build (bench/compiled.py), in a child process;
    True when it printed what the pure code printed."""
    print("compiled core:", flush=True)
    child = run_compiled("bench.replay", child_arguments(args))
    print(
        f"  compiled / pure: --jobs 1 {child['one'] / statistics.median(one.rates):.2f}x, "
        f"--jobs {args.jobs} {child['many'] / statistics.median(many.rates):.2f}x"
    )
    return bool(child["printed"] == sorted(digest for digest, _ in one.printed))


def child_arguments(args: argparse.Namespace) -> list[str]:
    """The arguments of the same measurement in a child process (bench/compiled.py)."""
    arguments = ["--events", str(args.events), "--contacts", str(args.contacts), "--runs", str(args.runs)]
    return [*arguments, "--jobs", str(args.jobs), *(["--file", str(args.file)] if args.file else [])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=default_jobs())
    cores = parser.add_mutually_exclusive_group()
    cores.add_argument("--compiled", action="store_true", help="also measure the compiled build, checked equal")
    cores.add_argument("--compiled-only", action="store_true", help="measure the compiled build alone")
    parser.add_argument("--file", type=Path, help="score this file of --events lines (write_traffic's) instead")
    parser.add_argument("--child-report", help=argparse.SUPPRESS)  # set by --compiled for its child process
    args = parser.parse_args()
    if args.child_report:
        require_compiled("bench.replay")
    if args.compiled_only:
        print("compiled core:", flush=True)
        run_compiled("bench.replay", child_arguments(args))  # it prints its figures, and fails if they differ
        return
    tune_gc()
    one, many = measure(args)
    one_rate = one.report()
    many_rate = many.report()
    same = len(one.printed) == 1 and one.printed == many.printed
    scored = {totals.events + totals.bad for _, totals in one.printed | many.printed}  # the rates count --events
    if scored != {args.events}:
        raise SystemExit(f"--events {args.events:,}, but {' and '.join(f'{n:,}' for n in sorted(scored))} were scored")
    print(f"  ratio --jobs {args.jobs} / --jobs 1: {many_rate / one_rate:.2f}x; same output: {'yes' if same else 'NO'}")
    print(f"  load average at the end: {os.getloadavg()[0]:.1f}")
    if args.child_report:
        printed = sorted(digest for digest, _ in one.printed | many.printed)
        Path(args.child_report).write_bytes(orjson.dumps({"one": one_rate, "many": many_rate, "printed": printed}))
    elif args.compiled:
        compiled_same = compare_compiled(args, one, many)
        print(f"  compiled printed the same as pure: {'yes' if compiled_same else 'NO'}")
        same = same and compiled_same
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
