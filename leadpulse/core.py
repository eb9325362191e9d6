"""Which scoring core a `leadpulse` process runs: the compiled build or the pure Python sources.

The compiled build is `leadpulse.scoring` and `leadpulse.schemas` compiled with mypyc
(setup.py, LEADPULSE_COMPILE=1): the same code, about twice as fast per event
(bench/README.md). The pure sources stay the reference: the tests import them, and every
process runs them when there is no compiled build of exactly these sources.

A build is the wheel made with LEADPULSE_COMPILE=1, unpacked into
`.leadpulse/compiled/<digest>/` beside the package (the checkout, for the editable install
of `make setup`; site-packages in the Docker image), where <digest> covers every file of the
package, code and data, and the build files. An edit changes the digest, so compiled code of
other sources never runs: the pure core does until `python -m leadpulse.core build` (which
`make setup` runs) builds the new one. That command does nothing when the build of these
sources exists and, where it cannot build (no C compiler, no Python headers), says in one
line that the pure core will run, and why.

The `leadpulse` command (`main`, and `python -m leadpulse`) calls `select()` before anything
imports the core: the build goes first on the package's path (docs/compiled.md).
LEADPULSE_CORE chooses: auto (the compiled build where there is one of these sources),
compiled (stop when there is none) or pure.

Standard library only: it runs before the core and the package's dependencies are imported.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path

import leadpulse

SETTING = "LEADPULSE_CORE"
CHOICES = ("auto", "compiled", "pure")
BUILD_FILES = ("setup.py", "pyproject.toml")  # in the digest where they are (a checkout)
STALE = "the compiled build is of other sources: make setup rebuilds it"
_NOT_SOURCES = ("__pycache__",)
_BUILT_SUFFIXES = (".so", ".pyc")  # what a build adds beside the sources; not in the digest
_KEPT = 2  # builds kept: the newest one, and the one a process started before it may still import from


class _Chosen:
    """Why this process runs the pure core, for `describe()` (set by `select()`)."""

    pure_because = "the sources imported directly"


class CoreError(Exception):
    """LEADPULSE_CORE cannot be honoured; the message names it."""


def package_root() -> Path:
    """The folder holding the `leadpulse` package imported: the checkout, or site-packages."""
    return Path(leadpulse.__file__).resolve().parent.parent


def cache_dir(root: Path) -> Path:
    return root / ".leadpulse" / "compiled"


def source_digest(root: Path) -> str:
    """What a compiled build is of: every file of `root/leadpulse` (code and package data, not
    what a build or an import adds) and the build files beside it, by name and content."""
    package = root / "leadpulse"
    files = [
        path
        for path in package.rglob("*")
        if path.is_file() and path.suffix not in _BUILT_SUFFIXES and not set(_NOT_SOURCES) & set(path.parts)
    ]
    files += [root / name for name in BUILD_FILES if (root / name).is_file()]
    digest = hashlib.sha256()
    for path in sorted(files):
        content = path.read_bytes()
        digest.update(f"{path.relative_to(root)}\0{len(content)}\0".encode() + content)
    return digest.hexdigest()[:16]


def find_build(root: Path) -> tuple[Path | None, str]:
    """The compiled build of the sources under `root`, or None and why there is none."""
    cache = cache_dir(root)
    tree = cache / source_digest(root)
    if (tree / "leadpulse").is_dir():
        return tree, ""
    if cache.is_dir() and any(path.is_dir() and not path.name.startswith(".") for path in cache.iterdir()):
        return None, STALE
    return None, "there is no compiled build of these sources: make setup builds one where a C compiler exists"


def select(environ: Mapping[str, str] = os.environ) -> None:
    """Make the rest of this process import the core LEADPULSE_CORE asks for. Called before
    anything imports `leadpulse.scoring` or `leadpulse.schemas`: once imported, a module stays."""
    choice = environ.get(SETTING) or "auto"
    if choice not in CHOICES:
        raise CoreError(_bad(choice))
    if _compiled_in_place():
        if choice == "pure":
            raise CoreError(f"{SETTING}=pure, but this installation is the compiled build itself (LEADPULSE_COMPILE=1)")
        return
    if choice == "pure":
        _Chosen.pure_because = f"{SETTING}=pure"
        return
    tree, why = find_build(package_root())
    if tree is None:
        if choice == "compiled":
            raise CoreError(f"{SETTING}=compiled, but {why}")
        _Chosen.pure_because = why
        if why == STALE and sys.stderr.isatty():  # to the one editing; logs get the worker's line
            print(f"leadpulse: the pure Python core runs: {why}", file=sys.stderr)
        return
    if {"leadpulse.scoring", "leadpulse.schemas"} & sys.modules.keys():
        raise RuntimeError("leadpulse.core.select() must run before the core is imported")
    # The build is a copy of the package (the same sources, by the digest) with the compiled
    # modules beside theirs. Imported with the build first on the paths, the compiled packages
    # come from it (a `.so` is found before a `.py`), and their own `__path__` keeps their later
    # submodules there; then the paths are as before, and every other module is the sources'.
    # The build's folder is on sys.path meanwhile for `leadpulse__mypyc`, the compiled group's
    # shared library (a top-level module, loaded with the first compiled module).
    sys.path.insert(0, str(tree))
    leadpulse.__path__.insert(0, str(tree / "leadpulse"))
    try:
        for shim in sorted((tree / "leadpulse").glob("*/__init__.*.so")):
            importlib.import_module(f"leadpulse.{shim.parent.name}")
    finally:
        leadpulse.__path__.remove(str(tree / "leadpulse"))
        sys.path.remove(str(tree))


def _bad(choice: str) -> str:
    return f"bad setting: {SETTING}={choice[:80]!r}: one of {', '.join(CHOICES)}"


def _compiled_in_place() -> bool:
    """Whether the package imported is a compiled build itself: a wheel installed with
    LEADPULSE_COMPILE=1, or a build's folder put first on the path (the benchmarks' children)."""
    return any((Path(leadpulse.__file__).parent / "scoring").glob("*.so"))


def describe() -> str:
    """Which core this process runs, for the worker's start-up line and `leadpulse --version`."""
    from leadpulse.scoring import is_compiled

    return "the compiled build (mypyc)" if is_compiled() else f"the pure Python code ({_Chosen.pure_because})"


def main() -> int:
    """The `leadpulse` command: choose the core, then run the command."""
    try:
        select()
    except CoreError as error:
        print(f"leadpulse: {error}", file=sys.stderr)
        return 2
    from leadpulse.cli.main import main as run

    return run()


# -- building ------------------------------------------------------------------------------


def cannot_build() -> str | None:
    """Why this machine cannot compile the core, or None."""
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler} not found)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        return "no Python headers (Python.h; the python3.11-dev package)"
    if importlib.util.find_spec("mypyc") is None:
        return "mypy is not installed here (pip install mypy==2.4.1)"
    return None


def build(root: Path) -> Path | str:
    """The compiled build of the sources under `root`, made if missing (about a minute of one
    core); or why there is none, and the pure core will run."""
    tree, _ = find_build(root)
    if tree is not None:
        return tree
    if not all((root / name).is_file() for name in BUILD_FILES):
        return f"the build files ({', '.join(BUILD_FILES)}) are not beside the package in {root}"
    reason = cannot_build()
    if reason is not None:
        return reason
    cache = cache_dir(root)
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time: another process may be making this one
        tree, _ = find_build(root)
        return tree if tree is not None else _build(root, cache)


def _build(root: Path, cache: Path) -> Path | str:
    print("leadpulse: compiling the scoring core with mypyc (once per change of the sources; about a minute)")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="leadpulse-compile-") as work:
        source, wheels = Path(work) / "source", Path(work) / "wheels"
        ignored = shutil.ignore_patterns(*_NOT_SOURCES, *(f"*{suffix}" for suffix in _BUILT_SUFFIXES))
        shutil.copytree(root / "leadpulse", source / "leadpulse", ignore=ignored)
        for name in (*BUILD_FILES, "README.md"):
            shutil.copy2(root / name, source / name)
        tree = cache / source_digest(source)  # of the copy built, even if the checkout changes meanwhile
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", "-w", str(wheels), "."],
            cwd=source,
            env={**os.environ, "LEADPULSE_COMPILE": "1", "PYTHONWARNINGS": "ignore"},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            log = cache / "build.log"
            log.write_text(done.stdout + done.stderr)
            return f"the compiled build failed (its output: {log})"
        (wheel,) = wheels.glob("leadpulse-*.whl")
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=cache))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(partial)
        partial.rename(tree)
    _prune(cache)
    print(f"leadpulse: compiled in {time.monotonic() - began:.0f} s")
    return tree


def adopt(builds: Path, root: Path) -> Path | None:
    """Move the build in `builds` made from the same sources as the package installed under
    `root` into place (the Docker image: built with a compiler, installed without one)."""
    wanted = source_digest(root)
    for tree in sorted(builds.iterdir()):
        if (tree / "leadpulse").is_dir() and source_digest(tree) == wanted:
            cache_dir(root).mkdir(parents=True, exist_ok=True)
            return Path(shutil.move(tree, cache_dir(root) / wanted))
    return None


def _prune(cache: Path) -> None:
    """Builds of older sources are never used again; the newest few stay for processes started on them."""
    trees = sorted(
        (path for path in cache.iterdir() if path.is_dir() and not path.name.startswith(".")),
        key=lambda path: path.stat().st_mtime,
    )
    for tree in trees[:-_KEPT]:
        shutil.rmtree(tree, ignore_errors=True)


def _command(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leadpulse.core", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build the compiled core of these sources if missing (make setup runs it)")
    adopting = commands.add_parser("adopt", help="install a build made elsewhere from the same sources")
    adopting.add_argument("builds", type=Path, help="a folder of builds (.leadpulse/compiled of the build stage)")
    args = parser.parse_args(argv)
    root = package_root()
    choice = os.environ.get(SETTING) or "auto"
    if choice not in CHOICES:
        print(f"leadpulse: {_bad(choice)}", file=sys.stderr)
        return 2
    if choice == "pure":
        print(f"leadpulse: the pure Python core will run: {SETTING}=pure")
    elif args.command == "build":
        made = build(root)
        if isinstance(made, str):
            print(f"leadpulse: the pure Python core will run: {made}")
    elif any(args.builds.iterdir()) and adopt(args.builds, root) is None:  # none: the build stage said why
        print(f"leadpulse: the pure Python core will run: no build in {args.builds} is of the installed sources")
    return 0


if __name__ == "__main__":
    sys.exit(_command())
