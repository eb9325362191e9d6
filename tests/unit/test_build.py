"""The pure Python core is the reference the suite tests in-process; the compiled build
(leadpulse/core.py, made by `make setup`) is what the `leadpulse` command runs, and must score
every event byte for byte as the pure code does."""

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench.golden import history
from leadpulse.core import build, find_build, source_digest
from leadpulse.scoring import is_compiled

ROOT = Path(__file__).resolve().parents[2]
BAD_LINES = [  # one of each kind of refusal: its reason is printed, compiled or not
    b'{"event_id": "bad-1", "type": "page_viewed"',
    b'{"event_id": "bad-2", "type": "page_viewed", "occurred_at": "2026-03-01T09:00:00Z"}',
    b'{"event_id": "bad-3", "type": "page_viewed", "contact_id": "c-x", "occurred_at": "yesterday"}',
    b'{"event_id": "bad-4", "type": "page_viewed", "contact_id": "c-x", "occurred_at": "2099-01-01T00:00:00Z"}',
    b'{"event_id": 5, "type": "page_viewed", "contact_id": "c-x", "occurred_at": "2026-03-01T09:00:00Z"}',
    b'{"event_id": "bad-6", "type": "page_viewed", "contact_id": "c-x", "occurred_at": "2026-03-01T09:00:00Z", '
    b'"properties": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": 1}}}}}}}}}}}}',
    b'["not", "an", "object"]',
    b'{"event_id": "bad-8", "type": "", "contact_id": "c-x", "occurred_at": "2026-03-01T09:00:00Z"}',
]


def leadpulse(
    *args: str, core: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """`leadpulse ARGS` as a user runs it (the command chooses its core), with LEADPULSE_CORE=`core`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "leadpulse", *args],
        env=environment | {"LEADPULSE_CORE": core},
        cwd=cwd,
        capture_output=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def compiled_build() -> Path:
    """The build `make setup` made (made here if missing: about a minute, once per change of the sources)."""
    made = build(ROOT)
    if isinstance(made, str):
        pytest.skip(f"no compiled core here: {made}")
    return made


def test_the_suite_runs_the_pure_python_core_not_a_compiled_build_left_in_the_checkout():
    assert not is_compiled(), "compiled modules (*.so) in leadpulse/ shadow the sources: remove them"


def test_a_build_is_used_only_for_the_exact_sources_it_was_made_from(tmp_path):
    package = tmp_path / "leadpulse"
    (package / "scoring").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "scoring" / "engine.py").write_text("POINTS = 1\n")
    (package / "scoring" / "default_rules.toml").write_text("version = 'a'\n")
    (tmp_path / "setup.py").write_text("")
    assert find_build(tmp_path)[0] is None and "no compiled build" in find_build(tmp_path)[1]
    made = tmp_path / ".leadpulse" / "compiled" / source_digest(tmp_path)
    (made / "leadpulse").mkdir(parents=True)
    assert find_build(tmp_path) == (made, "")

    # What an import or a build leaves beside the sources is not a change of them...
    (package / "scoring" / "__pycache__").mkdir()
    (package / "scoring" / "__pycache__" / "engine.cpython-311.pyc").write_bytes(b"\0")
    (package / "scoring" / "engine.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\0")
    assert find_build(tmp_path) == (made, "")
    # ...but any edit is, of code, of package data or of the build files.
    rules = package / "scoring" / "default_rules.toml"
    for edited in (package / "scoring" / "engine.py", rules, tmp_path / "setup.py"):
        before = edited.read_text()
        edited.write_text(before + "# edited\n")
        tree, why = find_build(tmp_path)
        assert tree is None and why == "the compiled build is of other sources: make setup rebuilds it", edited
        edited.write_text(before)
    assert find_build(tmp_path) == (made, "")


def test_a_bad_leadpulse_core_stops_any_command_in_one_line_naming_the_setting():
    done = leadpulse("--version", core="fast")
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode() == "leadpulse: bad setting: LEADPULSE_CORE='fast': one of auto, compiled, pure\n"


def test_leadpulse_core_pure_runs_the_pure_code_and_says_so():
    done = leadpulse("--version", core="pure")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == "leadpulse 0.1.0; scoring core: the pure Python code (LEADPULSE_CORE=pure)\n"


def test_the_leadpulse_command_runs_the_compiled_build_by_default(compiled_build, tmp_path):
    for core in ("auto", "compiled"):
        done = leadpulse("--version", core=core, cwd=tmp_path)  # from any folder: the install knows its build
        assert done.stdout.decode() == "leadpulse 0.1.0; scoring core: the compiled build (mypyc)\n", done.stderr


def test_only_the_compiled_packages_come_from_the_build_every_other_module_from_the_sources(compiled_build):
    """The files a module finds beside itself (deploy/kafka/broker.sh for `leadpulse demo`) and
    its tracebacks stay the checkout's."""
    script = (
        "import sys; before = list(sys.path); from leadpulse.core import select; select(); "
        "import leadpulse.cli.processes, leadpulse.scoring.engine, leadpulse.schemas.events; "
        "print(leadpulse.cli.processes.BROKER_SCRIPT); print(leadpulse.scoring.engine.__file__); "
        "print(leadpulse.schemas.events.__file__); print(sys.path == before)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")} | {"LEADPULSE_CORE": "compiled"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    broker, engine, events, same_path = done.stdout.splitlines()
    assert Path(broker) == ROOT / "deploy" / "kafka" / "broker.sh"
    for compiled in (Path(engine), Path(events)):
        assert compiled.is_relative_to(compiled_build) and compiled.suffix == ".so", compiled
    assert same_path == "True"


def test_after_an_edit_of_the_sources_the_command_runs_them_not_the_build_of_the_old_ones(compiled_build, tmp_path):
    """A checkout edited after `make setup`: here a copy of this one with its build."""
    shutil.copytree(ROOT / "leadpulse", tmp_path / "leadpulse", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(compiled_build, tmp_path / ".leadpulse" / "compiled" / compiled_build.name, symlinks=True)
    assert leadpulse("--version", core="auto", cwd=tmp_path).stdout.endswith(b"the compiled build (mypyc)\n")

    with (tmp_path / "leadpulse" / "scoring" / "engine.py").open("a") as edited:
        edited.write("# an edit\n")
    done = leadpulse("--version", core="auto", cwd=tmp_path)
    assert done.stdout.decode() == (
        "leadpulse 0.1.0; scoring core: the pure Python code "
        "(the compiled build is of other sources: make setup rebuilds it)\n"
    )
    refused = leadpulse("--version", core="compiled", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.decode() == (
        "leadpulse: LEADPULSE_CORE=compiled, but the compiled build is of other sources: make setup rebuilds it\n"
    )


def test_the_compiled_core_writes_the_golden_corpus_byte_for_byte_as_the_pure_code(compiled_build, tmp_path):
    """bench/golden.py: a history with every feature (identity merges, accounts, job titles, CRM
    events, duplicates, late events, erasures), under the shipped rules and under 10 models and
    50 segments; snapshots, accounts, nurture records, outputs, every stored state, the summary."""
    folders = {}
    for core in ("compiled", "pure"):
        folders[core] = tmp_path / core
        script = (
            "import sys; from leadpulse.core import describe, select; select(); from bench.golden import main; "
            f"print(describe()); sys.argv = ['golden', '{folders[core]}', '--events', '6000', '--contacts', '600']; "
            "main()"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")} | {"LEADPULSE_CORE": core}
        done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, check=False)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        ran = done.stdout.decode().splitlines()[0]
        assert ran.startswith("the compiled build" if core == "compiled" else "the pure Python code"), ran
    names = sorted(path.name for path in folders["pure"].iterdir())
    assert len(names) == 15 and names == sorted(path.name for path in folders["compiled"].iterdir())
    for name in names:
        assert (folders["compiled"] / name).read_bytes() == (folders["pure"] / name).read_bytes(), name


def test_leadpulse_notify_check_reads_a_config_alike_compiled_and_pure(compiled_build, tmp_path):
    """Its reader subclasses the rules file's, a class of the compiled core: mypyc refuses
    that at the first instance unless the class allows it."""
    config = (ROOT / "examples" / "notify.toml").read_text()
    (tmp_path / "good.toml").write_text(config)
    (tmp_path / "bad.toml").write_text(config.replace("[[routes]]", "[[routes]]\nmin_scor = 60", 1))
    env = {"SALES_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXX"}
    env["CRM_WEBHOOK_SECRET"] = "whsec_" + base64.b64encode(b"k" * 32).decode()
    for name, code in (("good", 0), ("bad", 2)):
        done = {
            core: leadpulse("notify", "check", str(tmp_path / f"{name}.toml"), core=core, env=env)
            for core in ("compiled", "pure")
        }
        assert done["pure"].returncode == code, done["pure"].stderr
        assert (done["compiled"].returncode, done["compiled"].stdout, done["compiled"].stderr) == (
            done["pure"].returncode,
            done["pure"].stdout,
            done["pure"].stderr,
        )
    assert b"min_scor: unknown key" in done["pure"].stderr


# --jobs 2: the processes send the core's dataclasses to each other (pickled; a compiled frozen
# dataclass refused pickle's default rebuild); --accounts: the members merged across them
@pytest.mark.parametrize("mode", [("--jobs", "1"), ("--jobs", "2"), ("--jobs", "2", "--accounts")], ids=" ".join)
def test_leadpulse_score_prints_the_same_bytes_compiled_and_pure_bad_lines_included(compiled_build, tmp_path, mode):
    lines = history(3000, 300)
    lines[100:100] = BAD_LINES
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    printed = {}
    for core in ("compiled", "pure"):
        out = tmp_path / f"{core}.outputs.jsonl"
        # --at: the limit of the future (bad-4) is then from it, not from the clock
        at = ("--at", "2026-08-01T00:00:00Z")
        done = leadpulse("score", str(events), *at, "--events-out", str(out), *mode, core=core)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        printed[core] = (done.stdout, done.stderr, out.read_bytes())
    stdout, stderr, outputs = printed["pure"]
    assert stderr.decode().count("\nline ") + stderr.decode().startswith("line ") == len(BAD_LINES), stderr
    assert len(stdout.splitlines()) > (20 if "--accounts" in mode else 200) and orjson.loads(outputs.splitlines()[0])
    assert printed["compiled"] == printed["pure"]


def test_where_there_is_no_c_compiler_make_setup_says_in_one_line_that_the_pure_core_will_run(tmp_path):
    """`make setup` runs `python -m leadpulse.core build`; here on a copy of the sources, which
    has no build yet, with a compiler that does not exist."""
    shutil.copytree(ROOT / "leadpulse", tmp_path / "leadpulse", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")} | {"CC": "no-such-cc"}
    done = subprocess.run(
        [sys.executable, "-m", "leadpulse.core", "build"], env=env, cwd=tmp_path, capture_output=True, check=False
    )
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout.decode() == "leadpulse: the pure Python core will run: no C compiler (no-such-cc not found)\n"
    assert not (tmp_path / ".leadpulse" / "compiled").exists()
