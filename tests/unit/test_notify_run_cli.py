"""`leadpulse notify run` and `redrive` stop before any Kafka work, in one line and exit 2,
on a bad config, a bad setting or a bad option: a mistake is never a traceback."""

import base64
import os

import pytest

from leadpulse.cli.main import main
from tests.factories import EXAMPLES

EXAMPLE = str(EXAMPLES / "notify.toml")
GOOD_ENV = {
    "CRM_WEBHOOK_SECRET": "whsec_" + base64.b64encode(os.urandom(32)).decode(),
    "SALES_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/secret-part",
}


@pytest.fixture
def env(monkeypatch):
    for name in [name for name in os.environ if name.startswith("LEADPULSE_")]:
        monkeypatch.delenv(name)
    for name, value in GOOD_ENV.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


@pytest.mark.parametrize("command", [["run"], ["redrive"]])
@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        ("CRM_WEBHOOK_SECRET", None, "leadpulse notify: bad config: "),
        ("LEADPULSE_NOTIFY_MAX_PENDING", "0", "leadpulse: bad setting: LEADPULSE_NOTIFY_MAX_PENDING='0': must be"),
        ("LEADPULSE_NOTIFY_MAX_BACKOFF", "forever", "leadpulse: bad setting: LEADPULSE_NOTIFY_MAX_BACKOFF='forever'"),
    ],
)
def test_a_mistake_stops_start_up_in_one_line(env, capsys, command, variable, value, line):
    if value is None:
        env.delenv(variable)
    else:
        env.setenv(variable, value)
    assert main(["notify", *command, EXAMPLE]) == 2
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1, err
    assert "secret-part" not in err


def test_redrive_names_a_retry_window_it_cannot_read(env, capsys):
    assert main(["notify", "redrive", EXAMPLE, "--retry-for", "a while"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("leadpulse notify: --retry-for: ") and err.count("\n") == 1, err
