"""The compiled core (leadpulse/core.py: the mypyc build `make setup` makes, kept for the
current source digest), measured against the pure Python code in the same benchmark run.

A benchmark runs its compiled variant in a child process with the build's folder first on
the path, and checks that the child ran compiled code; the benchmark itself, like the test
suite, imports the sources.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from leadpulse.core import build
from leadpulse.scoring import is_compiled

ROOT = Path(__file__).resolve().parent.parent


def compiled_tree() -> Path:
    """The folder holding the compiled `leadpulse` package of this checkout, built if missing."""
    made = build(ROOT)
    if isinstance(made, str):
        raise SystemExit(f"--compiled: {made}")
    return made


def compiled_env(tree: Path) -> dict[str, str]:
    """What a child process adds to its environment to import `leadpulse` from `tree` (and
    `bench` from the checkout); it must also run from `tree`, which `python -m` puts first.
    LEADPULSE_CORE: a `leadpulse` worker given the pure setting of its benchmark would refuse."""
    return {"PYTHONPATH": os.pathsep.join([str(tree), str(ROOT)]), "LEADPULSE_CORE": "compiled"}


def run_compiled(module: str, arguments: list[str]) -> dict[str, Any]:
    """`python -m module arguments --child-report FILE` on the compiled build, from its folder
    (`python -m` puts the working folder first on the path); the report the child wrote."""
    tree = compiled_tree()
    with tempfile.TemporaryDirectory() as work:
        report = Path(work) / "report.json"
        command = [sys.executable, "-m", module, *arguments, "--child-report", str(report)]
        if subprocess.run(command, env={**os.environ, **compiled_env(tree)}, cwd=tree, check=False).returncode != 0:
            raise SystemExit("the compiled run failed (its output is above)")
        report_data: dict[str, Any] = orjson.loads(report.read_bytes())
        return report_data


def require_compiled_worker(log_path: Path, name: str) -> None:
    """A worker run on the compiled build must have said so at start (`leadpulse worker`
    prints which core it runs: leadpulse.core.describe())."""
    if "the scoring core is the compiled build" not in log_path.read_text(errors="replace"):
        raise SystemExit(f"{name} did not run the compiled core; see {log_path}")


def require_compiled(module: str) -> None:
    """A child of `run_compiled` refuses to report figures measured on the pure modules."""
    if not is_compiled():
        raise SystemExit(f"{module} --child-report ran the pure modules: the compiled tree is not first on the path")
