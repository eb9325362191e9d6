"""Another commit's `leadpulse` package, for a benchmark that measures two versions in one run
(`bench.core --against`, `bench.instructions --against`)."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from bench.compiled import ROOT


def package_at(ref: str, folder: Path) -> Path:
    """Unpack the `leadpulse` package of commit `ref` into `folder` (`git archive`); the folder
    to put first on the path of a child process."""
    archive = subprocess.run(["git", "archive", ref, "leadpulse"], cwd=ROOT, capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {ref}: {archive.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as package:
        package.extractall(folder, filter="data")
    return folder
