"""Benchmark of the scoring core on one core: parse+validate+apply, and apply alone.

    python -m bench.core [--events 1000000] [--contacts 100000] [--runs 3] [--rules FILE] [--compiled]
    python -m bench.core --against GIT_REF [--events 200000] [--contacts 20000] [--runs 5]

Prints medians of `--runs` runs, a ratio against the decode-only floor and against a
jsonschema-validated baseline measured in the same run, bytes of state per contact, and the
same figures under bench/rules/many_models.toml (10 named models, 50 segments): the work per
event of the events no model or segment concerns should not grow with them.
`--compiled` also times the compiled build (mypyc; bench/compiled.py) in a child process on the
same events, prints its ratio to the pure code and fails unless both folded the same states.
`--against` times the core of another commit (its `leadpulse` package, `git archive`) and this
checkout's in child processes, runs interleaved, on the same events and rules: the ratio of two
versions measured in one run, for a before/after on a machine shared with other work.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import orjson

import leadpulse
from bench.compiled import ROOT, require_compiled, run_compiled
from bench.versions import package_at
from leadpulse.cli.offline import score_lines
from leadpulse.cli.traffic import Traffic
from leadpulse.schemas.events import decode_event, validate_event
from leadpulse.scoring.engine import Event, apply, new_state
from leadpulse.scoring.rules import Rules, load_rules
from leadpulse.scoring.state import ContactState, to_bytes
from leadpulse.scoring.timeutil import parse_rfc3339_ms
from leadpulse.streams.runtime import tune_gc

START = parse_rfc3339_ms("2026-06-01T00:00:00Z")
MANY_MODELS = ROOT / "bench" / "rules" / "many_models.toml"


def synthetic_lines(events: int, contacts: int) -> list[bytes]:
    traffic = Traffic(seed=7, start_ms=START, span_ms=180 * 86_400_000, contacts=contacts)
    return [orjson.dumps(event) for event in traffic.events(events)]


def fold(events: list[Event], rules: Rules) -> dict[str, ContactState]:
    states: dict[str, ContactState] = {}
    for event in events:
        states[event.contact_id] = apply(
            states.get(event.contact_id) or new_state(event.contact_id), event, rules
        ).state
    return states


def parse_validate_apply(lines: list[bytes], rules: Rules) -> dict[str, ContactState]:
    """The offline scorer's own loop: decode, validate, apply, one line at a time."""
    return score_lines(lines, rules).contacts


def jsonschema_baseline(lines: list[bytes], rules: Rules) -> dict[str, ContactState]:
    """What a first implementation would write: a generic JSON Schema validator per event."""
    from jsonschema import Draft202012Validator

    schema = orjson.loads(resources.files("leadpulse.schemas").joinpath("json", "event.schema.json").read_bytes())
    validator = Draft202012Validator(schema)
    events = []
    for line in lines:
        document = orjson.loads(line)
        validator.validate(document)
        events.append(validate_event(document))
    return fold(events, rules)


class Timing(NamedTuple):
    rate: float  # median events per wall-clock second
    cpu_rate: float  # median events per second of this process's CPU time
    result: object  # what the last run returned


def timed(label: str, runs: int, count: int, work: Callable[[], object]) -> Timing:
    """Medians of events per wall-clock second and per second of this process's CPU time,
    the figure to compare on a shared machine, where other processes take the core away."""
    rates, cpu_rates, result = [], [], None
    for _ in range(runs):
        began, began_cpu = time.perf_counter(), time.process_time()
        result = work()
        rates.append(count / (time.perf_counter() - began))
        cpu_rates.append(count / max(time.process_time() - began_cpu, 1e-9))
    timing = Timing(statistics.median(rates), statistics.median(cpu_rates), result)
    print(
        f"  {label:<38} {timing.rate:>10,.0f} events/s   (runs: {', '.join(f'{r:,.0f}' for r in rates)}; "
        f"per CPU second: {timing.cpu_rate:,.0f})"
    )
    return timing


def states_digest(states: object) -> str:
    """One digest of every contact's state bytes: the pure and the compiled fold must agree."""
    assert isinstance(states, dict)
    digest = hashlib.sha256()
    for contact_id in sorted(states):
        digest.update(contact_id.encode() + b"\0" + to_bytes(states[contact_id]) + b"\n")
    return digest.hexdigest()


class Figures(NamedTuple):
    full: Timing  # parse + validate + apply
    apply: Timing  # apply alone
    digest: str  # of the states folded


def core_figures(lines: list[bytes], rules: Rules, runs: int, label: str) -> Figures:
    """parse + validate + apply, and apply alone: the figures measured for every build."""
    full = timed(f"{label}parse + validate + apply", runs, len(lines), lambda: parse_validate_apply(lines, rules))
    decoded = [decode_event(line) for line in lines]
    alone = timed(f"{label}apply alone", runs, len(lines), lambda: fold(decoded, rules))
    return Figures(full, alone, states_digest(full.result))


def compare_compiled(args: argparse.Namespace, pure: Figures) -> None:
    """Time the compiled build on the same events in a child process (the pure modules are
    already imported here), and refuse figures from a build that scores differently."""
    compiled = run_compiled("bench.core", [*child_arguments(args, args.runs), "--child-of", "compiled"])
    same = compiled["digest"] == pure.digest
    print(
        f"  compiled / pure, parse + validate + apply: {compiled['rate'] / pure.full.rate:.2f}x events/s, "
        f"{compiled['cpu_rate'] / pure.full.cpu_rate:.2f}x per CPU second; same states: {'yes' if same else 'NO'}"
    )
    if not same:
        raise SystemExit("the compiled build folded different states from the pure code: do not ship it")


def child_arguments(args: argparse.Namespace, runs: int) -> list[str]:
    """The command line of a child process measuring the same events under the same rules."""
    arguments = ["--events", str(args.events), "--contacts", str(args.contacts), "--runs", str(runs)]
    return arguments + (["--rules", str(Path(args.rules).resolve())] if args.rules else [])


def child(args: argparse.Namespace, lines: list[bytes], rules: Rules) -> None:
    if args.child_of == "compiled":
        require_compiled("bench.core")
    figures = core_figures(lines, rules, args.runs, f"{args.child_of}: ")
    report = {"rate": figures.full.rate, "cpu_rate": figures.full.cpu_rate, "digest": figures.digest}
    report |= {"apply_cpu_rate": figures.apply.cpu_rate, "package": str(Path(leadpulse.__file__).parent)}
    Path(args.child_report).write_bytes(orjson.dumps(report))


def against(args: argparse.Namespace) -> None:
    """This checkout's core against the `leadpulse` package of another commit, each run in a
    fresh process, runs interleaved (the other commit first), on the same events and rules."""
    with tempfile.TemporaryDirectory(prefix="leadpulse-against-") as work:
        package_at(args.against, Path(work))
        reports: dict[str, list[dict[str, Any]]] = {args.against: [], "this checkout": []}
        for _ in range(args.runs):
            for name, tree in ((args.against, Path(work)), ("this checkout", ROOT)):
                report = Path(work) / "report.json"
                command = [sys.executable, "-m", "bench.core", *child_arguments(args, 1), "--child-report", str(report)]
                environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(ROOT)])}
                if subprocess.run([*command, "--child-of", name], env=environment, cwd=tree, check=False).returncode:
                    raise SystemExit(f"the run of {name} failed (its output is above)")
                reports[name].append(orjson.loads(report.read_bytes()))
                if Path(reports[name][-1]["package"]) != tree / "leadpulse":
                    raise SystemExit(f"the run of {name} imported {reports[name][-1]['package']}")
    before, after = reports[args.against], reports["this checkout"]
    print(f"medians of {args.runs} interleaved runs, events per CPU second:")
    for key, label in (("cpu_rate", "parse + validate + apply"), ("apply_cpu_rate", "apply alone")):
        old, new = (statistics.median(report[key] for report in side) for side in (before, after))
        print(f"  {label:<26} {args.against}: {old:>9,.0f}   this checkout: {new:>9,.0f}   ratio {new / old:.2f}x")
    same = {report["digest"] for report in before + after}
    print(f"  same states: {'yes' if len(same) == 1 else 'NO'}")
    if len(same) != 1:
        raise SystemExit("the two versions folded different states")


def many_models(lines: list[bytes], runs: int, shipped: Figures) -> None:
    """The same events under 10 named models and 50 segments (bench/rules/many_models.toml):
    what the work per event grows by when the rules hold many more models and segments."""
    print(f"variant: {MANY_MODELS.relative_to(ROOT)} (10 named models, 50 segments)")
    figures = core_figures(lines, load_rules(MANY_MODELS), runs, "10 models, 50 segments: ")
    full = shipped.full.cpu_rate / figures.full.cpu_rate
    alone = shipped.apply.cpu_rate / figures.apply.cpu_rate
    print(
        f"  CPU per event, 10 models and 50 segments / the shipped rules: parse + validate + apply {full:.2f}x, "
        f"apply alone {alone:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rules", help="rules file (default: the shipped rules), e.g. to measure named models")
    parser.add_argument("--compiled", action="store_true", help="also time the compiled build (mypyc), checked equal")
    parser.add_argument("--against", metavar="GIT_REF", help="time this checkout's core against another commit's")
    parser.add_argument("--child-report", help=argparse.SUPPRESS)  # set by --compiled and --against for their children
    parser.add_argument("--child-of", help=argparse.SUPPRESS)  # which of them
    args = parser.parse_args()
    if args.against:
        against(args)
        return
    rules = load_rules(args.rules)
    tune_gc()
    if not args.child_report:
        print(f"generating {args.events:,} events for {args.contacts:,} contacts...", flush=True)
    lines = synthetic_lines(args.events, args.contacts)
    if args.child_report:
        child(args, lines, rules)
        return
    print(f"median of {args.runs} runs, one core:")
    floor = timed("orjson.loads only (floor)", args.runs, len(lines), lambda: [orjson.loads(x) for x in lines])
    figures = core_figures(lines, rules, args.runs, "")
    full = figures.full
    sample = lines[: max(1, len(lines) // 10)]
    baseline = timed(
        f"baseline: jsonschema + apply ({len(sample):,})",
        args.runs,
        len(sample),
        lambda: jsonschema_baseline(sample, rules),
    )
    print(
        f"  ratio parse+validate+apply / jsonschema baseline: {full.rate / baseline.rate:.1f}x; share of the decode "
        f"floor: {full.rate / floor.rate:.0%}"
    )
    assert isinstance(full.result, dict)
    sizes = sorted(len(to_bytes(state)) for state in full.result.values())
    print(
        f"state bytes per contact: median {statistics.median(sizes):.0f}, p99 {sizes[int(len(sizes) * 0.99)]}, "
        f"max {sizes[-1]}, total {sum(sizes) / 1e6:.1f} MB for {len(sizes):,} contacts"
    )
    if not args.rules:
        many_models(lines, args.runs, figures)
    if args.compiled:
        compare_compiled(args, figures)


if __name__ == "__main__":
    main()
