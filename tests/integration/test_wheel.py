"""The project as a user installs it: a wheel built from the checkout, installed into a fresh
virtualenv and run from a folder outside the checkout. The editable install of the suite
would hide a module left outside the package or a data file the wheel does not ship.

The dependencies come from the suite's own virtualenv on PYTHONPATH: Python does not read
`.pth` files from PYTHONPATH, so the editable install's path hook (which would import the
checkout) stays off. Building needs setuptools in an isolated build environment, which pip
fetches from the package index once and caches; measured at ~5 s here."""

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import orjson
import pytest

from leadpulse.cli.processes import WorkerProcess
from leadpulse.core import build

ROOT = Path(__file__).resolve().parents[2]
NOT_SHIPPED = (".venv", ".git", ".leadpulse", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")


class Installed:
    def __init__(self, wheel: Path, venv: Path, workdir: Path) -> None:
        self.wheel = wheel
        self.venv = venv
        self.workdir = workdir  # outside the checkout
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADPULSE_", "PYTHON"))}
        self.env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]  # the suite's dependencies, not its .pth

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / args[0]), *args[1:]],
            cwd=self.workdir,
            env=self.env | (env or {}),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def package_dir(self) -> Path:
        done = self.run("python", "-c", "import leadpulse; print(leadpulse.__file__)")
        assert done.returncode == 0, done.stderr
        return Path(done.stdout.strip()).parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    source, wheels, venv, workdir = base / "source", base / "wheels", base / "venv", base / "work"
    # A copy, so that the build's build/ and egg-info never land in the checkout (or race another run)
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SHIPPED), symlinks=True)
    started = time.monotonic()
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, f"pip wheel failed (it needs the package index for setuptools):\n{build.stderr}"
    print(f"wheel built in {time.monotonic() - started:.1f} s")
    (wheel,) = wheels.glob("leadpulse-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    subprocess.run([*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=300)
    workdir.mkdir()
    shutil.copy(ROOT / "examples" / "journey.jsonl", workdir / "journey.jsonl")
    return Installed(wheel, venv, workdir)


def test_the_wheel_holds_only_the_leadpulse_package_and_its_data(installed):
    names = zipfile.ZipFile(installed.wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"leadpulse", "leadpulse-0.1.0.dist-info"}
    assert "leadpulse/scoring/default_rules.toml" in names
    schemas = {name.rsplit("/", 1)[1] for name in names if name.startswith("leadpulse/schemas/json/")}
    assert schemas == {p.name for p in (ROOT / "leadpulse" / "schemas" / "json").glob("*.json")}
    assert "leadpulse/app.py" in names and "leadpulse/cli/main.py" in names


def test_the_installed_package_is_imported_from_the_new_virtualenv(installed):
    assert installed.package_dir().is_relative_to(installed.venv)


def test_the_installed_command_checks_the_shipped_rules(installed):
    rules = installed.package_dir() / "scoring" / "default_rules.toml"
    done = installed.run("leadpulse", "rules", "check", str(rules))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{rules}: OK, version default-2026.11")


def test_the_installed_command_scores_the_example_journey(installed):
    done = installed.run("leadpulse", "score", "journey.jsonl")
    assert done.returncode == 0, done.stderr
    rows = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [(r["contact_id"], r["score"], r["stage"]) for r in rows] == [
        ("ada@acme.io", 87, "opportunity"),
        ("anon-42", 0, "suspect"),
        ("bob@shop.fr", 1, "lead"),
    ]
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_the_installed_worker_starts_and_serves_health(installed, make_settings, tmp_path):
    settings = make_settings()
    worker = WorkerProcess(
        settings,
        tmp_path / "wheel-worker.log",
        [str(installed.venv / "bin" / "leadpulse"), "worker"],
        cwd=installed.workdir,
        env={"PYTHONPATH": installed.env["PYTHONPATH"]},
    )
    try:
        worker.start(timeout_s=120)
        status, health = worker.get("/health")
        assert status == 200 and health["status"] == "ok"
    finally:
        worker.stop()
    assert not (installed.workdir / ".leadpulse").exists(), "the data folder is the one LEADPULSE_DATA_DIR names"


def test_a_compiled_build_of_the_same_sources_is_adopted_beside_the_installed_package_and_run(installed, tmp_path):
    """The Docker image's second stage: the build made in the first (here: the checkout's, of
    the same sources) moved beside the installed package, which then runs it by default."""
    made = build(ROOT)
    if isinstance(made, str):
        pytest.skip(f"no compiled core here: {made}")
    pure = installed.run("leadpulse", "score", "journey.jsonl")
    other, same = tmp_path / "other" / "build", tmp_path / "same" / "build"
    shutil.copytree(made, other, symlinks=True)
    shutil.copytree(made, same, symlinks=True)
    with (other / "leadpulse" / "scoring" / "engine.py").open("a") as edited:
        edited.write("# another version of the sources\n")
    refused = installed.run("python", "-m", "leadpulse.core", "adopt", str(other.parent))
    assert refused.stdout == (
        f"leadpulse: the pure Python core will run: no build in {other.parent} is of the installed sources\n"
    )
    assert installed.run("leadpulse", "--version").stdout.endswith(
        "scoring core: the pure Python code "
        "(there is no compiled build of these sources: make setup builds one where a C compiler exists)\n"
    )
    adopted = installed.run("python", "-m", "leadpulse.core", "adopt", str(same.parent))
    try:
        assert (adopted.returncode, adopted.stdout, adopted.stderr) == (0, "", "")
        version = installed.run("leadpulse", "--version")
        assert version.stdout == "leadpulse 0.1.0; scoring core: the compiled build (mypyc)\n", version.stderr
        forced = installed.run("leadpulse", "--version", env={"LEADPULSE_CORE": "pure"})
        assert forced.stdout.endswith("scoring core: the pure Python code (LEADPULSE_CORE=pure)\n")
        compiled = installed.run("leadpulse", "score", "journey.jsonl")
        assert compiled.returncode == 0 and (compiled.stdout, compiled.stderr) == (pure.stdout, pure.stderr)
    finally:  # the other tests of this file run the installed package as pip left it
        shutil.rmtree(installed.package_dir().parent / ".leadpulse")
