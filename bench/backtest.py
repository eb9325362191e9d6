"""Benchmark of `leadpulse backtest`: two rules files over one history, one process against several.

    python -m bench.backtest [--events 1000000] [--contacts 100000] [--jobs N] [--calibrate]

Writes synthetic traffic with outcomes (cookies linked to contacts, accounts: what
`leadpulse history` writes) to a temporary file and backtests examples/bad-rules.toml
against the shipped rules on it as the command does (decode, validate and fold under both
rules files, member records replayed into accounts, comparison), with `--jobs 1` and with
`--jobs N` (default: one per CPU); `--calibrate` adds the calibration (a second, time-ordered
fold of each rules file with weekly samples). Prints events/s by the wall clock and per
CPU-second, the time for 10 million events at that rate, and whether both printed the
same report.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import orjson

from bench.replay import cpu_seconds
from leadpulse.cli.backtest import Options, run_backtest
from leadpulse.cli.offline import future_reference
from leadpulse.cli.parallel import default_jobs
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.schemas.limits import DEFAULT_LIMITS
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import parse_rfc3339_ms
from leadpulse.streams.runtime import tune_gc

START = parse_rfc3339_ms("2026-01-01T00:00:00Z")
BAD_RULES = Path(__file__).resolve().parents[1] / "examples" / "bad-rules.toml"
TEN_MILLION = 10_000_000


def write_history(path: Path, events: int, contacts: int) -> None:
    traffic = Traffic(11, START, 300 * DAY_MS, contacts, accounts=max(1, contacts // 40), identities=0.3, outcomes=True)
    with path.open("wb") as out:
        for event in traffic.events(events):
            out.write(orjson.dumps(event) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=default_jobs())
    parser.add_argument("--calibrate", action="store_true")
    args = parser.parse_args()
    tune_gc()
    options = Options(
        load_rules(), load_rules(BAD_RULES), future_reference(None), DEFAULT_LIMITS, None, 50, args.calibrate
    )
    with TemporaryDirectory() as folder:
        path = Path(folder) / "history.jsonl"
        print(f"writing {args.events:,} events for {args.contacts:,} contacts...", flush=True)
        write_history(path, args.events, args.contacts)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs:", flush=True)
        reports = []
        for jobs in sorted({1, args.jobs}):
            began, began_cpu = time.perf_counter(), cpu_seconds()
            reports.append(run_backtest(path, options, jobs, on_bad=lambda bad: None))
            wall, cpu = time.perf_counter() - began, cpu_seconds() - began_cpu
            rate = args.events / wall
            print(
                f"  --jobs {jobs:<3} {rate:>8,.0f} events/s, {args.events / cpu:,.0f} per CPU-second; "
                f"10 million events: {TEN_MILLION / rate / 60:,.0f} min at this rate",
                flush=True,
            )
    same = all(report == reports[0] for report in reports)
    print(f"  same report: {'yes' if same else 'NO'}; load average at the end: {os.getloadavg()[0]:.1f}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
