"""Instructions per event of the offline scorer's loop (parse + validate + apply, as
`bench.core` times it), counted by callgrind: a figure that does not move with the load of a
shared machine, to compare versions of the core with.

    python -m bench.instructions [--rules FILE] [--against GIT_REF]

Scores the first 1,000 and the first 4,000 events of `bench.core`'s traffic (400 contact
keys) under `valgrind --tool=callgrind`, each in a fresh process, and prints the difference
of the two counts divided by 3,000: start-up, imports and rules loading cancel out.
`--against` counts another commit's core the same way and prints the ratio. Needs valgrind;
each count takes about a minute.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.compiled import ROOT
from bench.core import synthetic_lines
from bench.versions import package_at

SIZES = (1_000, 4_000)
# What each counted process runs: score the first N lines, as `bench.core` does.
PROBE = (
    "import sys\n"
    "from leadpulse.cli.offline import score_lines\n"
    "from leadpulse.scoring.rules import load_rules\n"
    "lines = open(sys.argv[1], 'rb').read().splitlines()[: int(sys.argv[2])]\n"
    "score_lines(lines, load_rules(sys.argv[3] or None), now_ms=10**13)\n"
)


def count(tree: Path, lines: Path, size: int, rules: str) -> int:
    """Instructions callgrind counted for one process scoring `size` lines with the
    `leadpulse` package of `tree`."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    command += [sys.executable, "-c", PROBE, str(lines), str(size), rules]
    environment = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, env=environment, cwd=tree, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_event(tree: Path, lines: Path, rules: str) -> int:
    small, large = (count(tree, lines, size, rules) for size in SIZES)
    return (large - small) // (SIZES[1] - SIZES[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", help="rules file (default: the shipped rules)")
    parser.add_argument("--against", metavar="GIT_REF", help="also count another commit's core")
    args = parser.parse_args()
    rules = str(Path(args.rules).resolve()) if args.rules else ""
    with tempfile.TemporaryDirectory(prefix="leadpulse-instructions-") as work:
        lines = Path(work) / "events.jsonl"
        lines.write_bytes(b"\n".join(synthetic_lines(SIZES[1], SIZES[1] // 10)) + b"\n")
        now = per_event(ROOT, lines, rules)
        print(f"instructions per event, parse + validate + apply: {now:,} (this checkout)")
        if args.against:
            before = per_event(package_at(args.against, Path(work) / "against"), lines, rules)
            print(f"  {args.against}: {before:,}; {before / now:.2f}x as many as this checkout")


if __name__ == "__main__":
    main()
