"""The opt-in compiled build (setup.py, `LEADPULSE_COMPILE=1`) made the way a user makes it,
so that the benchmarks measure what would be shipped: a wheel built with mypyc, unpacked into
a folder of its own, kept for the current source digest (a rebuild takes about a minute of one core).

A benchmark runs its compiled variant in a child process with that folder first on the path;
the checkout's editable install is never touched, so the suite keeps testing the pure code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import orjson

from leadpulse.scoring import is_compiled

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".leadpulse" / "compiled"
_SOURCES = ("setup.py", "pyproject.toml")


def source_digest() -> str:
    """What the compiled modules depend on: every module of the package and the build files."""
    digest = hashlib.sha256()
    for path in sorted([*(ROOT / "leadpulse").rglob("*.py"), *(ROOT / name for name in _SOURCES)]):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def compiled_tree() -> Path:
    """A folder holding the compiled `leadpulse` package of this checkout, built if missing."""
    tree = CACHE / source_digest()
    if (tree / "leadpulse").is_dir():
        return tree
    print("compiling the core with mypyc (LEADPULSE_COMPILE=1; about a minute)...", flush=True)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="leadpulse-compile-") as work:
        source, wheels = Path(work) / "source", Path(work) / "wheels"
        shutil.copytree(ROOT / "leadpulse", source / "leadpulse", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        for name in (*_SOURCES, "README.md"):
            shutil.copy2(ROOT / name, source / name)
        build = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", "-w", str(wheels), "."],
            cwd=source,
            env={**os.environ, "LEADPULSE_COMPILE": "1"},
            capture_output=True,
            text=True,
            check=False,
        )
        if build.returncode != 0:
            raise SystemExit(f"the compiled build failed (needs gcc and Python headers):\n{build.stderr[-3000:]}")
        (wheel,) = wheels.glob("leadpulse-*.whl")
        shutil.rmtree(CACHE, ignore_errors=True)  # builds of older sources are never used again
        partial = tree.with_suffix(".partial")
        zipfile.ZipFile(wheel).extractall(partial)
        partial.rename(tree)
    print(f"compiled in {time.monotonic() - began:.0f} s: {tree}", flush=True)
    return tree


def compiled_env(tree: Path) -> dict[str, str]:
    """What a child process adds to its environment to import `leadpulse` from `tree` (and
    `bench` from the checkout); it must also run from `tree`, which `python -m` puts first."""
    return {"PYTHONPATH": os.pathsep.join([str(tree), str(ROOT)])}


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
    prints this line when `leadpulse.scoring.is_compiled()`)."""
    if "the scoring core is the compiled build" not in log_path.read_text(errors="replace"):
        raise SystemExit(f"{name} did not run the compiled core; see {log_path}")


def require_compiled(module: str) -> None:
    """A child of `run_compiled` refuses to report figures measured on the pure modules."""
    if not is_compiled():
        raise SystemExit(f"{module} --child-report ran the pure modules: the compiled tree is not first on the path")
