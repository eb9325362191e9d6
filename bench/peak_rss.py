"""Peak memory of a command and every process it starts, summed (what `--jobs` costs a
machine, which `time -v` does not show: it reports the largest process alone).

    python -m bench.peak_rss -- leadpulse score events.jsonl --jobs 2

Samples /proc every 50 ms; prints the peak of the summed resident set sizes and the time.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

PAGE = 4096


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and its descendants, now."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * PAGE
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        total += rss.get(pid, 0)
        pending.extend(children.get(pid, ()))
    return total


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
        f"peak RSS {peak / 1e6:.0f} MB (summed over the process tree), {time.monotonic() - started:.1f} s, "
        f"exit {process.returncode}: {' '.join(command)}",
        file=sys.stderr,
    )
    return process.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
