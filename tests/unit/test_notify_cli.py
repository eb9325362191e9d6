"""`leadpulse notify check FILE`: a summary and exit 0 for a good file; one line on stderr
and exit 2 for each kind of mistake, secrets and Slack URLs never printed."""

import base64
import os
import re
import subprocess
import sys

import pytest

from leadpulse.cli.main import main
from leadpulse.notify.config import parse_notify_config
from tests.factories import EXAMPLES

EXAMPLE = EXAMPLES / "notify.toml"
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
SLACK_URL = "https://hooks.slack.com/services/T000/B000/secret-part"
GOOD_ENV = {"CRM_WEBHOOK_SECRET": SECRET, "SALES_SLACK_WEBHOOK_URL": SLACK_URL}


@pytest.fixture
def env(monkeypatch):
    for name, value in GOOD_ENV.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_a_good_file_prints_what_goes_where_and_exits_0(env, capsys):
    assert main(["notify", "check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{EXAMPLE}: ok: 2 destinations, 2 routes"
    assert "destination sales-slack: Slack incoming webhook, at most 1/s, cool-down 10m, retried for 6h" in out
    assert "destination crm: webhook signed with 1 secret, no rate limit, no cool-down, retried for 6h" in out
    assert "route new opportunities: stage-changes; stage customer or opportunity -> crm" in out
    assert SECRET[6:] not in out and "secret-part" not in out and "hooks.slack.com" not in out


@pytest.mark.parametrize(
    ("edit", "environ", "line"),
    [
        (
            None,
            {"SALES_SLACK_WEBHOOK_URL": None},
            "destinations.sales-slack.url_env: environment variable SALES_SLACK_WEBHOOK_URL is not set",
        ),
        (
            None,
            {"CRM_WEBHOOK_SECRET": "not-a-secret"},
            "destinations.crm.secret_env: environment variable CRM_WEBHOOK_SECRET: expected whsec_",
        ),
        (
            ('secret_env = "CRM_WEBHOOK_SECRET"', 'secret_file = "crm.secret"'),
            {},
            "destinations.crm.secret_file: {dir}/crm.secret: cannot read secret file: No such file or directory",
        ),
        (
            ('secret_env = "CRM_WEBHOOK_SECRET"', 'secret = "whsec_abc"'),
            {},
            "destinations.crm.secret: secrets are never written in this file",
        ),
        (('to = "crm"', 'to = "crm2"'), {}, "routes[1].to[0]: unknown destination 'crm2'; defined: sales-slack, crm"),
        (("max_alert_age", "max_age"), {}, "max_age: unknown key; did you mean 'max_alert_age'?"),
        (("[[routes]]", "[[routes]"), {}, "not valid TOML"),
    ],
)
def test_each_mistake_is_one_line_and_exit_2(env, capsys, tmp_path, edit, environ, line):
    path = tmp_path / "notify.toml"
    text = EXAMPLE.read_text()
    if edit is not None:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1], 1)
    path.write_text(text)
    for name, value in environ.items():
        if value is None:
            env.delenv(name)
        else:
            env.setenv(name, value)
    assert main(["notify", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"leadpulse notify: bad config: {path}: ")
    assert line.format(dir=tmp_path) in err


def test_a_missing_file_is_one_line_and_exit_2(capsys, tmp_path):
    assert main(["notify", "check", str(tmp_path / "nope.toml")]) == 2
    reason = "cannot read notify config file: No such file or directory"
    assert capsys.readouterr().err == f"leadpulse notify: bad config: {tmp_path}/nope.toml: {reason}\n"


def test_the_command_exits_with_its_status_and_no_traceback(tmp_path):
    """A real process, as a user or a deployment script runs it."""
    base = {k: v for k, v in os.environ.items() if k not in GOOD_ENV}
    command = [sys.executable, "-m", "leadpulse", "notify", "check", str(EXAMPLE)]
    good = subprocess.run(command, env=base | GOOD_ENV, capture_output=True, text=True, timeout=60, check=False)
    assert (good.returncode, good.stderr) == (0, "")
    bad = subprocess.run(command, env=base, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1 and "environment variable SALES_SLACK_WEBHOOK_URL is not set" in bad.stderr


DOC = EXAMPLES.parent / "docs" / "notify-config.md"


def doc_blocks(language=""):
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def test_the_docs_show_what_check_prints(env, capsys, monkeypatch):
    monkeypatch.chdir(EXAMPLES.parent)
    good, bad = (block.splitlines() for block in doc_blocks()[:2])
    assert good[0] == bad[0] == "$ .venv/bin/leadpulse notify check examples/notify.toml"
    assert main(["notify", "check", "examples/notify.toml"]) == 0
    assert capsys.readouterr().out.splitlines() == good[1:]
    env.delenv("SALES_SLACK_WEBHOOK_URL")
    assert main(["notify", "check", "examples/notify.toml"]) == 2
    assert capsys.readouterr().err.splitlines() == bad[1:]


def test_the_docs_examples_are_the_shipped_file_and_a_valid_route():
    full, route = doc_blocks("toml")
    assert full in EXAMPLE.read_text()
    slack = '[destinations.enterprise-slack]\nkind = "slack"\nurl_env = "SALES_SLACK_WEBHOOK_URL"\n'
    config = parse_notify_config(full + slack + route, "doc", EXAMPLES, GOOD_ENV)
    assert config.routes[-1].name == "enterprise, pricing-minded" and config.routes[-1].min_score == 85
