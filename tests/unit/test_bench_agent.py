"""bench.agent drives the scoring agent on a RocksDB table without a broker; a run whose last
snapshots differ from the offline scorer's fails, so the figures it prints are of a correct
agent (the run itself is a benchmark, not a test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_agent_benchmark_ends_with_the_offline_scorers_snapshots_and_prints_its_cpu_per_event():
    done = subprocess.run(
        [sys.executable, "-m", "bench.agent", "--runs", "1", "--events", "3000", "--contacts", "300"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "this checkout: median" in done.stdout and "µs CPU per event" in done.stdout
