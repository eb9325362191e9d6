"""Every shell command of README.md, run as a user runs it: the next mismatch between the
README and the code fails the suite.

The commands are read from the README's shell blocks (a `$ ` line is a command followed by
the output the README shows for it; in a block without prompts every line is a command).
The ```python block is the SDKs' own code, run by tests/integration/test_collector.py.
Each one is either run by a test here, named in `RUN`, or listed in `NOT_RUN` with the reason
the suite cannot run it; a command in neither fails `test_every_readme_command_is_run_here_or_listed_with_a_reason`.

They run in a folder of their own that links the checkout's `examples/`, `deploy/`,
Makefile and the test run's virtualenv as `.venv`, so the files they write (alerts.jsonl,
write-keys, the demo's `.leadpulse/`) stay out of the checkout; against the suite's broker,
with the settings of `make_settings` in the environment (their own topics, group and ports:
`localhost:6066` becomes the worker's port). Services a command starts (`leadpulse worker`,
`collect`, `tail`, `make demo`) run in a process group of their own, are checked healthy and
stopped by that group's id, also when a check fails."""

from __future__ import annotations

import base64
import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from leadpulse.cli.processes import ROOT, free_port
from leadpulse.collector.keys import load_write_keys
from leadpulse.notify.service import failures_topic
from leadpulse.scoring.timeutil import format_ms, now_ms, parse_rfc3339_ms
from leadpulse.streams.settings import Settings, env_name, read_tokens
from tests.integration.harness import ctrl_c_as_in_a_terminal, produce, read_to_end, wait_for, write_outputs
from tests.integration.receiver import Receivers

pytestmark = pytest.mark.integration

README = ROOT / "README.md"
EXAMPLES = ROOT / "examples"
VENV = Path(sys.prefix)  # the test run's virtualenv plays the README's `.venv`

# What runs each README command (the key: its words, comment left out, as `command_key` spells them).
RUN = {
    "make demo": "test_make_demo_runs_a_healthy_pipeline_until_ctrl_c",
    **dict.fromkeys(
        [
            ".venv/bin/leadpulse rules check examples/two-product-lines.toml",
            ".venv/bin/leadpulse score --rules examples/two-product-lines.toml --events-out alerts.jsonl "
            "examples/two-product-lines.jsonl",
            "leadpulse topics commands --service notify --config examples/notify.toml --principal User:notifier",
            ".venv/bin/leadpulse score examples/identity.jsonl",
            ".venv/bin/leadpulse score examples/committee.jsonl --accounts --at last-event",
            ".venv/bin/leadpulse score examples/nurture.jsonl --nurture --at 2026-10-01T12:00:00Z",
            ".venv/bin/leadpulse rules check my-rules.toml",
            ".venv/bin/leadpulse rules check broken.toml",
            ".venv/bin/leadpulse score examples/journey.jsonl --events-out changes.jsonl",
            ".venv/bin/leadpulse history - --events 20000 --contacts 2000 --seed 7 | .venv/bin/leadpulse backtest - "
            "--candidate examples/bad-rules.toml --calibrate --json report.json --html report.html",
        ],
        "test_an_offline_command_prints_what_the_readme_shows",
    ),
    **dict.fromkeys(
        [
            "echo $(openssl rand -hex 16)  # web site > write-keys",
            ".venv/bin/leadpulse worker",
            ".venv/bin/leadpulse produce examples/journey.jsonl",
            "LEADPULSE_WRITE_KEYS_FILE=write-keys .venv/bin/leadpulse collect",
            ".venv/bin/leadpulse tail hot-leads --from-beginning",
            "curl localhost:6066/contacts/ada@acme.io",
            "curl localhost:6066/accounts/acme.io",
            "curl localhost:6066/health; curl localhost:6066/metrics",
            "curl localhost:6066/accounts/globex.eu",
            ".venv/bin/leadpulse tail nurture --from-beginning --raw",
            "leadpulse topics commands --principal User:scorer",
            "curl -H Authorization: Bearer $(awk '{sub(/#.*/, )} NF {print $1; exit}' /run/secrets/api-tokens) "
            "localhost:6066/contacts/ada@acme.io",
        ],
        "test_the_commands_against_a_broker_do_what_the_readme_says",
    ),
}
NOTIFY_COMMANDS = [
    "export SALES_SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T000/B000/XXXX",
    "export CRM_WEBHOOK_SECRET=whsec_$(openssl rand -base64 32)",
    ".venv/bin/leadpulse notify check examples/notify.toml",
    "PORT=8099 .venv/bin/python examples/webhook_receiver.py",
    ".venv/bin/leadpulse notify run examples/notify.toml",
    ".venv/bin/leadpulse notify redrive examples/notify.toml",
]
RUN |= dict.fromkeys(NOTIFY_COMMANDS, "test_notify_sends_a_hot_lead_to_slack_and_the_example_receiver_and_redrives")
SUITE_BROKER = (
    "the suite's `broker` fixture runs this very script (LocalBroker: deploy/kafka/broker.sh start/stop, "
    "with the KAFKA_PORT and KAFKA_DATA_DIR it picks)"
)
SASL_CLUSTER = (
    "the environment of a SASL_SSL cluster with a CA file; the suite's broker is PLAINTEXT "
    "(tests/integration/test_kafka_security.py runs the worker, produce and tail over SASL_SSL and mutual TLS)"
)
K8S = (
    "no Kubernetes cluster on the test machines; tests/unit/test_k8s_manifests.py renders what it applies with "
    "kustomize, validates it with kubeconform (strict) and checks the Secrets' files against the settings"
)
NOT_RUN = {
    "make test": "the suite itself, of which this test is one",
    "kubectl create namespace leadpulse": K8S,
    "kubectl -n leadpulse create secret generic leadpulse-kafka --from-file=sasl-password=kafka-password": K8S,
    "kubectl -n leadpulse create secret generic leadpulse-api-tokens --from-file=tokens=api-tokens": K8S,
    "kubectl -n leadpulse create secret generic leadpulse-write-keys --from-file=write-keys=write-keys": K8S,
    "kubectl -n leadpulse create secret generic leadpulse-notify --from-file=sales-slack-url=slack-url"
    " --from-file=crm-signing-secret=crm-secret": K8S,
    "kubectl apply -k deploy/k8s/base": K8S,
    "LEADPULSE_APP_ID=leadpulse-rules-v2 LEADPULSE_TOPIC_PREFIX=rules-v2. LEADPULSE_RULES=my-rules.toml "
    "LEADPULSE_DATA_DIR=.leadpulse/rules-v2 LEADPULSE_WEB_PORT=6067 .venv/bin/leadpulse worker": (
        "tests/integration/test_isolation.py runs this re-scoring worker (a new app id and prefix, other rules) "
        "beside the live one and checks each against its own offline oracle"
    ),
    ".venv/bin/leadpulse rules compare --shadow-app leadpulse-rules-v2 --shadow-prefix rules-v2. "
    "--rules my-rules.toml": (
        "tests/integration/test_isolation.py runs it (with --json) on that re-scoring worker and checks the report "
        "against both offline oracles"
    ),
    "deploy/kafka/broker.sh start": SUITE_BROKER,
    "deploy/kafka/broker.sh stop": SUITE_BROKER,
    "export LEADPULSE_BROKER=kafka-1.internal:9094;kafka-2.internal:9094;kafka-3.internal:9094": SASL_CLUSTER,
    "export LEADPULSE_SECURITY_PROTOCOL=SASL_SSL LEADPULSE_SASL_MECHANISM=SCRAM-SHA-512": SASL_CLUSTER,
    "export LEADPULSE_SSL_CA_FILE=/etc/leadpulse/kafka-ca.pem": SASL_CLUSTER,
    "export LEADPULSE_APP_ID=leadpulse LEADPULSE_TOPIC_PREFIX=leadpulse. LEADPULSE_INPUT_TOPIC=leadpulse.events": (
        SASL_CLUSTER
    ),
    "export LEADPULSE_PARTITIONS=12 LEADPULSE_REPLICATION_FACTOR=3 LEADPULSE_MIN_INSYNC_REPLICAS=2": (
        "a 3-broker cluster's replication; tests/integration/test_cluster.py runs one"
    ),
    "export LEADPULSE_TOPIC_COMPRESSION=zstd LEADPULSE_CREATE_TOPICS=off": SASL_CLUSTER,
    "LEADPULSE_SASL_USERNAME=admin LEADPULSE_SASL_PASSWORD_FILE=/etc/kafka-admin/password leadpulse topics create": (
        "a SASL administrator's credentials (tests/integration/test_topic_admin.py runs `topics create`)"
    ),
    "leadpulse topics acls --principal User:scorer | KAFKA_BOOTSTRAP=kafka-1.internal:9094 "
    "KAFKA_ADMIN_CONFIG=admin.properties deploy/kafka/acls.sh add": (
        "a broker with an authorizer and an admin.properties (test_kafka_security.py pipes `topics acls` into acls.sh)"
    ),
    "leadpulse topics acls --service notify --config examples/notify.toml --principal User:notifier "
    "| KAFKA_BOOTSTRAP=kafka-1.internal:9094 KAFKA_ADMIN_CONFIG=admin.properties deploy/kafka/acls.sh add": (
        "a broker with an authorizer and an admin.properties (test_kafka_security.py pipes `topics acls --service "
        "notify --config FILE` into acls.sh and runs notify and its redrive with exactly those ACLs)"
    ),
    "LEADPULSE_SASL_USERNAME=scorer LEADPULSE_SASL_PASSWORD_FILE=/run/secrets/kafka-password "
    "LEADPULSE_WEB_HOST=0.0.0.0 LEADPULSE_API_TOKENS_FILE=/run/secrets/api-tokens leadpulse worker": (
        "SASL_SSL and a bind beyond 127.0.0.1 (test_kafka_security.py, test_web_hardening.py: the tokens file)"
    ),
}
TOKEN = "readme-doc-test-token-0123456789"


@dataclass(frozen=True)
class Command:
    text: str  # as in the README, continuation lines joined
    line: int  # of README.md
    shown: tuple[str, ...]  # the output the README shows under it (prompted blocks only)

    @property
    def key(self) -> str:
        return command_key(self.text)


def command_key(text: str) -> str:
    """A command's words without its comment: a changed comment is not a changed command."""
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return " ".join(lexer)


def readme_commands() -> list[Command]:
    text = README.read_text()
    commands: list[Command] = []
    for block in re.finditer(r"^```(?:sh|bash|shell|console)\n(.*?)^```", text, re.S | re.M):
        first = text[: block.start()].count("\n") + 2
        lines: list[tuple[int, str]] = []
        for number, line in enumerate(block.group(1).splitlines(), start=first):
            if lines and lines[-1][1].endswith("\\"):
                lines[-1] = (lines[-1][0], lines[-1][1][:-1] + "\n" + line)
            else:
                lines.append((number, line))
        if any(line.startswith("$ ") for _, line in lines):
            for index, (number, line) in enumerate(lines):
                if line.startswith("$ "):
                    rest = [shown for _, shown in lines[index + 1 :]]
                    shown = rest[: next((i for i, s in enumerate(rest) if s.startswith("$ ")), len(rest))]
                    commands.append(Command(line[2:], number, tuple(shown)))
        else:
            commands += [Command(line, number, ()) for number, line in lines if line.strip() and line[0] != "#"]
    return commands


USED: set[str] = set()  # the keys the tests below asked for


def readme_command(key: str) -> Command:
    found = [command for command in readme_commands() if command.key == key]
    assert found, f"README.md no longer has `{key}`: update RUN in {__file__}"
    USED.add(key)
    return found[0]


def run_by(test: str) -> set[str]:
    return {key for key, runner in RUN.items() if runner == test}


def test_every_readme_command_is_run_here_or_listed_with_a_reason():
    keys = {command.key for command in readme_commands()}
    unaccounted = sorted(keys - RUN.keys() - NOT_RUN.keys())
    assert not unaccounted, f"README commands no test runs (run them here, or list them in NOT_RUN): {unaccounted}"
    assert not RUN.keys() & NOT_RUN.keys()
    assert sorted((RUN.keys() | NOT_RUN.keys()) - keys) == [], "commands the README no longer has"


# Variables that are not worker settings, and the file that reads each.
READ_ELSEWHERE = {"LEADPULSE_COMPILE": "setup.py", "LEADPULSE_CACHE": "deploy/kafka/broker.sh"}


def test_every_variable_the_docs_name_is_one_leadpulse_reads():
    """A misspelt variable in the docs (LEADPULSE_BATCH_WITHIN_S for LEADPULSE_BATCH_WITHIN) is
    refused at start-up as unknown: the user copying it gets an error the docs did not warn of."""
    settings = {env_name(setting.name) for setting in fields(Settings)}
    for name, reader in READ_ELSEWHERE.items():
        assert re.search(rf"\b{name}\b", (ROOT / reader).read_text()), f"{reader} no longer reads {name}"
    docs = [README, ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for doc in docs:
        for found in re.finditer(r"LEADPULSE_[A-Z0-9_]+(\*)?", doc.read_text()):
            name, wildcard = found.group(0).rstrip("*"), found.group(1)
            known = any(s.startswith(name) for s in settings) if wildcard else name in settings | READ_ELSEWHERE.keys()
            assert known, f"{doc.relative_to(ROOT)} names {found.group(0)}, which nothing reads"


# -- running them ---------------------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A folder that looks like the checkout to the README's commands."""
    folder = tmp_path / "checkout"
    folder.mkdir()
    for name in ("examples", "deploy", "Makefile", "pyproject.toml", "constraints.txt"):
        (folder / name).symlink_to(ROOT / name)
    (folder / ".venv").symlink_to(VENV)
    return folder


def environment(settings: Settings | None, sandbox: Path) -> dict[str, str]:
    """No LEADPULSE_* variable of the machine: the settings' own, or none (the defaults)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")}
    env |= settings.as_env() if settings is not None else {}
    return env | {"PATH": f"{sandbox / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"}


def runnable(command: Command, settings: Settings | None, tokens: Path | None = None) -> str:
    text = command.text
    if settings is not None:
        text = text.replace("localhost:6066", f"127.0.0.1:{settings.web_port}")
    return text if tokens is None else text.replace("/run/secrets/api-tokens", str(tokens))


def run(
    command: Command, settings: Settings | None, sandbox: Path, tokens: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", runnable(command, settings, tokens)],
        cwd=sandbox,
        env=environment(settings, sandbox),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@contextmanager
def service(command: Command, settings: Settings, sandbox: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running command in its own process group, stopped by that group's id (SIGINT,
    as Ctrl-C; SIGKILL if it has not stopped after 30 s)."""
    with log.open("wb") as out, ctrl_c_as_in_a_terminal():
        process = subprocess.Popen(
            ["bash", "-c", runnable(command, settings)],
            cwd=sandbox,
            env=environment(settings, sandbox),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except OSError:
        return 0, None
    return status, orjson.loads(body) if body[:1] in (b"{", b"[") else body.decode()


def healthy(port: int) -> bool:
    status, body = get(f"http://127.0.0.1:{port}/health")
    return status == 200 and isinstance(body, dict) and body.get("status") == "ok"


def shown_pattern(shown: str) -> re.Pattern[str]:
    """A line of output as the README shows it, '...' and '…' standing for what it leaves out."""
    return re.compile(".*".join(re.escape(part) for part in re.split(r"\.\.\.|…", shown)))


def assert_prints_what_the_readme_shows(command: Command, printed: list[str]) -> None:
    """Every line the README shows is printed, in that order (stdout, then stderr)."""
    position = 0
    for shown in command.shown:
        if shown.strip() in ("", "..."):
            continue
        pattern = shown_pattern(shown)
        while position < len(printed) and not pattern.fullmatch(printed[position]):
            position += 1
        assert position < len(printed), (
            f"README.md line {command.line}: `{command.text}` does not print\n  {shown}\nafter what it printed before; "
            "it printed:\n  " + "\n  ".join(printed)
        )
        position += 1


OFFLINE = sorted(run_by("test_an_offline_command_prints_what_the_readme_shows"))


@pytest.mark.parametrize("key", OFFLINE)
def test_an_offline_command_prints_what_the_readme_shows(key, sandbox):
    command = readme_command(key)
    shipped = (ROOT / "leadpulse" / "scoring" / "default_rules.toml").read_text()
    (sandbox / "my-rules.toml").write_text(shipped)  # the README's "your own copy"
    fourth = [found.start() for found in re.finditer(r"^\[\[signals\]\]", shipped, re.M)][3]  # signals[3]
    broken = shipped[:fourth] + re.sub(r"^points = \S+", 'points = "ten"', shipped[fourth:], count=1, flags=re.M)
    (sandbox / "broken.toml").write_text(broken)
    done = run(command, None, sandbox)
    assert done.returncode == (2 if "broken" in key else 0), done.stderr
    assert_prints_what_the_readme_shows(command, done.stdout.splitlines() + done.stderr.splitlines())
    written = re.search(r"--events-out (\S+)", key)
    if written:
        assert [orjson.loads(line)["kind"] for line in (sandbox / written.group(1)).read_bytes().splitlines()]


def offline(sandbox: Path, settings: Settings, lines: list[bytes], *args: str) -> list[dict[str, Any]]:
    """`leadpulse score` over the lines a test sent: what the stream must publish."""
    events = sandbox / f"sent-{len(lines)}.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    done = subprocess.run(
        [str(VENV / "bin" / "leadpulse"), "score", str(events), *args],
        env=environment(settings, sandbox),
        capture_output=True,
        check=True,
        timeout=120,
    )
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def example(name: str) -> list[bytes]:
    return [line for line in (EXAMPLES / name).read_bytes().splitlines() if line.strip()]


def example_in_minutes(name: str, end_ms: int) -> list[bytes]:
    """An example file whose gaps between events are 1,440 times shorter (a day becomes a
    minute, too short for any decay to matter), its latest event at `end_ms`."""
    documents = [orjson.loads(line) for line in example(name)]
    times = [parse_rfc3339_ms(document["occurred_at"]) for document in documents]
    for document, at in zip(documents, times, strict=True):
        document["occurred_at"] = format_ms(end_ms - (max(times) - at) // 1_440)
    return [orjson.dumps(document) for document in documents]


def test_the_commands_against_a_broker_do_what_the_readme_says(sandbox, make_settings, workers, tmp_path):
    settings = make_settings(cooling_interval_s=1.0, collect_port=free_port(), partitions=2)
    web = f"http://127.0.0.1:{settings.web_port}"

    write_keys = run(readme_command("echo $(openssl rand -hex 16)  # web site > write-keys"), settings, sandbox)
    assert write_keys.returncode == 0, write_keys.stderr
    (key,) = load_write_keys(sandbox / "write-keys").server  # '<key>  # web site' is read as the key
    secrets = ["write-keys", "api-tokens"]
    ignored = subprocess.run(["git", "check-ignore", *secrets], cwd=ROOT, capture_output=True, text=True, check=False)
    assert ignored.stdout.split() == secrets, "the secrets files the README creates in the checkout are not git-ignored"

    sent: list[bytes] = []
    with service(readme_command(".venv/bin/leadpulse worker"), settings, sandbox, tmp_path / "worker.log") as worker:
        assert wait_for(lambda: healthy(settings.web_port) or worker.poll() is not None, timeout_s=120, interval_s=0.3)
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]

        produced = run(readme_command(".venv/bin/leadpulse produce examples/journey.jsonl"), settings, sandbox)
        assert produced.returncode == 0 and f"to {settings.input_topic}" in produced.stderr, produced.stderr
        sent += example("journey.jsonl")

        hot = readme_command(".venv/bin/leadpulse tail hot-leads --from-beginning")
        with service(hot, settings, sandbox, tmp_path / "tail-hot.log"):
            assert wait_for(lambda: "HOT   ada@acme.io: score" in (tmp_path / "tail-hot.log").read_text(), 60, 0.3)

        ada = readme_command("curl localhost:6066/contacts/ada@acme.io")
        expected = next(record for record in offline(sandbox, settings, sent) if record["contact_id"] == "ada@acme.io")
        answered = wait_for(lambda: answer(ada, settings, sandbox).get("stage") == expected["stage"], 60, 0.5)
        assert answered, f"{answer(ada, settings, sandbox)} is not at the stage score gives, {expected['stage']}"
        account = readme_command("curl localhost:6066/accounts/acme.io")
        assert wait_for(lambda: answer(account, settings, sandbox).get("account_id") == "acme.io", 60, 0.5)
        both = run(readme_command("curl localhost:6066/health; curl localhost:6066/metrics"), settings, sandbox)
        assert '"status":"ok"' in both.stdout.replace(" ", "") and "leadpulse_events_total" in both.stdout

        collect = readme_command("LEADPULSE_WRITE_KEYS_FILE=write-keys .venv/bin/leadpulse collect")
        with service(collect, settings, sandbox, tmp_path / "collect.log") as collector:
            assert wait_for(lambda: healthy(settings.collect_port) or collector.poll() is not None, 60, 0.3)
            assert collector.poll() is None, (tmp_path / "collect.log").read_text()[-3000:]
            call = {"userId": "readme@acme.io", "event": "Demo Requested", "timestamp": format_ms(now_ms())}
            auth = "Basic " + base64.b64encode(key + b":").decode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{settings.collect_port}/v1/track",
                data=orjson.dumps(call),
                headers={"Authorization": auth, "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert orjson.loads(response.read()) == {"success": True, "accepted": 1}
            sent.append(orjson.dumps({**call, "type": "track"}))

        # The worked example the README then asks the worker about, its days made minutes ending
        # now: the worker ticks every second, and a member whose band dropped between its own
        # latest event and now would be re-published at the tick's time, which `--at last-event`
        # does not show (README: "until the cooling timer re-reads a member").
        committee = example_in_minutes("committee.jsonl", now_ms())
        produce(settings, committee)
        sent += committee
        accounts = offline(sandbox, settings, sent, "--accounts", "--at", "last-event")
        globex = next(account for account in accounts if account["account_id"] == "globex.eu")
        asked = readme_command("curl localhost:6066/accounts/globex.eu")
        if not wait_for(lambda: answer(asked, settings, sandbox) == globex, 60, 0.5):
            raise AssertionError(f"not what score --accounts says: {answer(asked, settings, sandbox)} != {globex}")

        produce(settings, example("nurture.jsonl"))
        sent += example("nurture.jsonl")
        tail = readme_command(".venv/bin/leadpulse tail nurture --from-beginning --raw")
        due = sorted(offline(sandbox, settings, sent, "--nurture", "--at", format_ms(now_ms())), key=_id)
        assert due, "the worked example sends nurture records"
        printed_log = tmp_path / "tail-nurture.log"
        with service(tail, settings, sandbox, printed_log):

            def printed() -> list[dict[str, Any]]:
                return sorted((orjson.loads(line) for line in printed_log.read_bytes().splitlines()), key=_id)

            assert wait_for(lambda: printed() == due, timeout_s=90, interval_s=1), (
                f"tail nurture --raw printed {printed()}, score --nurture --at now {due}"
            )

        commands = run(readme_command("leadpulse topics commands --principal User:scorer"), settings, sandbox)
        assert commands.returncode == 0 and "kafka-acls.sh" in commands.stdout and "User:scorer" in commands.stdout
    assert worker.returncode is not None

    tokens = tmp_path / "api-tokens"
    tokens.write_text(f"# callers of the query API\n{TOKEN}  # the CRM sync\n")
    assert read_tokens(tokens) == (TOKEN,)
    workers(replace(settings, api_tokens_file=tokens))  # the same worker again, with tokens
    assert get(f"{web}/contacts/ada@acme.io")[0] == 401
    curl = readme_command(
        "curl -H Authorization: Bearer $(awk '{sub(/#.*/, )} NF {print $1; exit}' /run/secrets/api-tokens) "
        "localhost:6066/contacts/ada@acme.io"
    )
    assert answer(curl, settings, sandbox, tokens).get("contact_id") == "ada@acme.io"
    assert run_by("test_the_commands_against_a_broker_do_what_the_readme_says") <= USED


def answer(command: Command, settings: Settings, sandbox: Path, tokens: Path | None = None) -> dict[str, Any]:
    """What a `curl` command of the README printed, as JSON ({} when it printed no JSON object)."""
    try:
        document = orjson.loads(run(command, settings, sandbox, tokens).stdout)
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def _id(record: dict[str, Any]) -> str:
    return str(record["id"])


def test_make_demo_runs_a_healthy_pipeline_until_ctrl_c(sandbox, make_settings, tmp_path):
    """`make demo` as typed (its Makefile targets, then the demo) and stopped as the README says,
    with Ctrl-C; what the demo shows is tests/integration/test_demo.py's."""
    stamp = list(VENV.glob(".installed-*"))
    assert stamp, f"{VENV} was not made by `make setup`: `make demo` would install into it"
    settings = make_settings()
    log = tmp_path / "demo.log"
    with service(readme_command("make demo"), settings, sandbox, log) as demo:

        def snapshots_shown() -> bool:
            counts = re.findall(r"\| snapshots ([\d,]+) \|", log.read_text(errors="replace"))
            return bool(counts) and int(counts[-1].replace(",", "")) > 0

        assert wait_for(lambda: snapshots_shown() or demo.poll() is not None, timeout_s=150, interval_s=0.5), (
            log.read_text()[-3000:]
        )
        assert demo.poll() is None and healthy(settings.web_port), log.read_text()[-3000:]
        stop_group(demo, timeout_s=60)
    assert "stopping..." in log.read_text()
    assert not healthy(settings.web_port) and get(f"http://127.0.0.1:{settings.web_port}/health")[0] == 0
    assert (sandbox / ".leadpulse" / "demo-worker.log").exists()  # in its own folder, not the checkout's
    assert run_by("test_make_demo_runs_a_healthy_pipeline_until_ctrl_c") <= USED


def test_notify_sends_a_hot_lead_to_slack_and_the_example_receiver_and_redrives(sandbox, make_settings, tmp_path):
    """The README's notify commands in the order it gives them, against a local Slack-shaped
    receiver (standing in for Slack's URL) and the README's own webhook receiver: a fresh hot
    lead reaches both; Slack's first answer is a 410, so its alert is dead-lettered, and
    `notify redrive` delivers it once Slack takes it."""
    readme = README.read_text()
    receiver_code = (EXAMPLES / "webhook_receiver.py").read_text()
    assert f"```python\n{receiver_code}```" in readme, "the README shows another receiver than the example's"
    assert len(receiver_code.strip().splitlines()) <= 25
    settings = make_settings(notify_port=free_port(), partitions=2)
    port = free_port()
    (sandbox / "notify.toml").write_text((EXAMPLES / "notify.toml").read_text().replace(":8099/", f":{port}/"))
    slack_export, secret_export, check, receiver, notify, redrive = (readme_command(key) for key in NOTIFY_COMMANDS)
    made = run(replace(secret_export, text=f'{secret_export.text}\nprintf %s "$CRM_WEBHOOK_SECRET"'), None, sandbox)
    secret = made.stdout
    assert secret.startswith("whsec_") and len(secret) > 40, made.stderr

    with Receivers() as receivers:
        slack = receivers.add("slack")
        receivers.script("slack", "410")
        exports = f"export SALES_SLACK_WEBHOOK_URL={slack.url} CRM_WEBHOOK_SECRET={secret}\n"
        assert slack_export.text.startswith("export SALES_SLACK_WEBHOOK_URL=https://hooks.slack.com/")

        def local(command: Command) -> Command:
            """With the exports, the copy of examples/notify.toml and the receiver's free port."""
            text = command.text.replace("examples/notify.toml", "notify.toml").replace("PORT=8099", f"PORT={port}")
            return replace(command, text=exports + text)

        checked = run(local(check), settings, sandbox)
        assert checked.returncode == 0 and "ok: 2 destinations, 2 routes" in checked.stdout, checked.stderr
        printed = tmp_path / "receiver.log"
        failures = failures_topic(settings)
        with (
            service(local(receiver), settings, sandbox, printed),
            service(local(notify), settings, sandbox, tmp_path / "notify.log") as running,
        ):
            assert wait_for(lambda: healthy(settings.notify_port) or running.poll() is not None, 60, 0.3)
            assert running.poll() is None, (tmp_path / "notify.log").read_text()[-3000:]
            ada = {**example_hot_lead(tmp_path), "occurred_at": format_ms(now_ms())}  # hot just now
            write_outputs(settings, "hot-leads", [ada])
            assert wait_for(lambda: "lead.hot ada@acme.io" in printed.read_text(), 30, 0.3), printed.read_text()
            assert wait_for(lambda: [request.answer for request in slack.requests] == ["410"], 30, 0.3)
            assert "ada@acme.io" in orjson.dumps(slack.requests[0].body).decode()
            # notify writes the refused alert to its failures topic once Slack has answered: wait for it
            assert wait_for(lambda: any(value for _, value in read_to_end(settings, failures)), 30, 0.3)
            receivers.script("slack", default="200")
            redriven = run(local(redrive), settings, sandbox)
            assert redriven.returncode == 0 and "re-drove 1 alerts: 1 delivered" in redriven.stderr, redriven.stderr
            assert [request.answer for request in slack.requests] == ["410", "200"]
    assert run_by("test_notify_sends_a_hot_lead_to_slack_and_the_example_receiver_and_redrives") <= USED


def example_hot_lead(folder: Path) -> dict[str, Any]:
    """Ada's hot lead as `leadpulse score examples/journey.jsonl --events-out` writes it."""
    out = folder / "journey-outputs.jsonl"
    subprocess.run(
        [str(VENV / "bin" / "leadpulse"), "score", str(EXAMPLES / "journey.jsonl"), "--events-out", str(out)],
        capture_output=True,
        check=True,
        timeout=120,
    )
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    return next(record for record in records if record["kind"] == "hot_lead")
