"""The benchmarks measure what they say (small runs on the test broker, no timing asserted):
the pipeline benchmark compares like with like, every implementation it runs ending with the
offline scorer's contact-scores; the latency benchmark reads back every probe it sends."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.pipeline import IMPLEMENTATIONS

pytestmark = pytest.mark.integration
REPOSITORY = Path(__file__).resolve().parents[2]


def test_every_implementation_in_the_pipeline_benchmark_ends_equal_to_the_offline_scorer(broker, tmp_path):
    command = [
        *(sys.executable, "-m", "bench.pipeline", "--events", "3000", "--contacts", "300", "--partitions", "4"),
        *("--runs", "1", "--broker", f"kafka://127.0.0.1:{broker.port}", "--chart", str(tmp_path / "chart.svg")),
    ]
    output, returncode = _run_in_own_session(command)
    assert returncode == 0, output[-3000:]
    for name in IMPLEMENTATIONS:
        assert re.search(rf"run 1 {name}\s.*oracle equal", output), f"{name} did not run or differs:\n{output[-3000:]}"
    assert (tmp_path / "chart.svg").read_text().count("ev/s") == len(IMPLEMENTATIONS)


def test_the_latency_benchmark_reads_back_every_probe_it_sends(broker, tmp_path):
    command = [
        *(sys.executable, "-m", "bench.latency", "--rates", "200", "--seconds", "5", "--warm-up", "1"),
        *("--partitions", "4"),
        *("--broker", f"kafka://127.0.0.1:{broker.port}", "--chart", str(tmp_path / "latency.svg")),
    ]
    output, returncode = _run_in_own_session(command)
    assert returncode == 0, output[-3000:]
    assert re.search(
        r"200 ev/s, window [\d.]+ ms \(sent \d+/s\): worker CPU [1-9]\d* µs/event, \d+ probes, p50 \d+ ms", output
    ), output[-3000:]
    assert re.search(r"the 1 s of warm-up after the worker's start \(not counted\): p50 \d+ ms", output), output[-3000:]
    assert "never seen" not in output
    assert "p99" in (tmp_path / "latency.svg").read_text()


def _run_in_own_session(command: list[str]) -> tuple[str, int]:
    """Its own session: the benchmark's workers are stopped with it, also when the test times out."""
    bench = subprocess.Popen(
        command, cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = bench.communicate(timeout=900)
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()
    return output, bench.returncode
