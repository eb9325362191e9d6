"""Peak memory of a command and every process it starts, summed (what `--jobs` costs a
machine, which `time -v` does not show: it reports the largest process alone).

    python -m bench.peak_rss -- leadpulse score events.jsonl --jobs 2

Samples /proc every 50 ms; prints the peak of the summed proportional set sizes (PSS: a page
shared by forked processes counts once) and the time.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def tree_rss(root: int) -> int:
    """Proportional set size of `root` and its descendants, now: pages shared by forked
    processes count once in the sum (resident sizes would count them in every process)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue  # gone meanwhile
        children.setdefault(parent, []).append(int(stat.parent.name))
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        total += _pss(pid)
        pending.extend(children.get(pid, ()))
    return total


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass  # gone meanwhile
    return 0


def main(argv: list[str]) -> int:
    command = argv[1:] if argv and argv[0] == "--" else argv
    started = time.monotonic()
    with open("/dev/null", "wb") as sink:
        process = subprocess.Popen(command, stdout=sink)
        peak = 0
        while process.poll() is None:
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.05)
    print(
        f"peak PSS {peak / 1e6:.0f} MB (summed over the process tree), {time.monotonic() - started:.1f} s, "
        f"exit {process.returncode}: {' '.join(command)}",
        file=sys.stderr,
    )
    return process.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
