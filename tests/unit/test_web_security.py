"""The closed query API and the log hygiene, without a broker: settings rules, the bearer
guard, Faust's environment, log redaction."""

import asyncio
import logging

import pytest

from leadpulse.streams.privacy import install_log_redaction, pseudonym, redactor
from leadpulse.streams.settings import Settings, SettingsError, drop_faust_variables
from leadpulse.streams.web import bearer_guard

TOKEN = "0123456789abcdef-token"


def test_a_non_loopback_api_without_tokens_is_refused():
    with pytest.raises(
        SettingsError, match=r"^LEADPULSE_WEB_HOST='0.0.0.0': the query API .* LEADPULSE_API_TOKENS_FILE"
    ):
        Settings.from_env({"LEADPULSE_WEB_HOST": "0.0.0.0"})


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_tokens(host):
    assert Settings.from_env({"LEADPULSE_WEB_HOST": host}).web_host == host


def test_a_non_loopback_bind_is_fine_with_tokens_or_without_the_api(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN}\n")
    assert Settings.from_env({"LEADPULSE_WEB_HOST": "0.0.0.0", "LEADPULSE_API_TOKENS_FILE": str(tokens)})
    assert not Settings.from_env({"LEADPULSE_WEB_HOST": "0.0.0.0", "LEADPULSE_QUERY_API": "off"}).query_api


@pytest.mark.parametrize(
    ("content", "reason"),
    [("", "no token in the file"), ("# only a comment\n", "no token"), ("short\n", "line 1: a token is 16+")],
)
def test_a_tokens_file_without_usable_tokens_is_refused(tmp_path, content, reason):
    tokens = tmp_path / "tokens"
    tokens.write_text(content)
    with pytest.raises(SettingsError, match=f"^LEADPULSE_API_TOKENS_FILE=.*{reason}"):
        Settings.from_env({"LEADPULSE_API_TOKENS_FILE": str(tokens)})


def test_a_missing_tokens_file_is_named():
    with pytest.raises(SettingsError, match=r"^LEADPULSE_API_TOKENS_FILE='/nope': cannot read it"):
        Settings.from_env({"LEADPULSE_API_TOKENS_FILE": "/nope"})


class FakeWeb:
    def json(self, value, *, status=200, headers=None):
        return status, headers


class FakeRequest:
    def __init__(self, authorization=None):
        self.headers = {"Authorization": authorization} if authorization else {}


async def ok_view(web, request, **kwargs):
    return 200, kwargs


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("Bearer wrong-token-wrong-token", 401),
        (f"Basic {TOKEN}", 401),
        (f"Bearer {TOKEN}", 200),
        (f"bearer  {TOKEN} ", 200),
        ("Bearer other-token-of-the-file", 200),
    ],
)
def test_the_guard_lets_only_known_tokens_through(header, status):
    view = bearer_guard((TOKEN, "other-token-of-the-file"))(ok_view)
    answer = asyncio.run(view(FakeWeb(), FakeRequest(header), contact_id="x"))
    assert answer[0] == status
    if status == 401:
        assert answer[1] == {"WWW-Authenticate": 'Bearer realm="leadpulse"'}


def test_without_tokens_the_view_is_unguarded():
    assert bearer_guard(None)(ok_view) is ok_view


def test_faust_prefixed_variables_are_dropped_others_kept():
    env = {"F_WEB_PORT": "1", "FAUST_DEBUG": "1", "WEB_PORT": "2", "LEADPULSE_WEB_PORT": "3"}
    assert drop_faust_variables(env) == ["FAUST_DEBUG", "F_WEB_PORT"]
    assert env == {"WEB_PORT": "2", "LEADPULSE_WEB_PORT": "3"}


def test_create_app_ignores_fausts_unprefixed_variables(monkeypatch, tmp_path):
    from leadpulse.streams.pipeline import create_app, faust_variables

    for name, value in {"WEB_PORT": "1234", "WEB_BIND": "0.0.0.0", "PROCESSING_GUARANTEE": "exactly_once"}.items():
        monkeypatch.setenv(name, value)
    conf = create_app(Settings(data_dir=tmp_path)).app.conf
    assert (conf.web_port, conf.web_bind, conf.processing_guarantee.value) == (6066, "127.0.0.1", "at_least_once")
    assert {"PROCESSING_GUARANTEE", "WEB_BIND", "WEB_PORT"} <= set(
        faust_variables({**dict.fromkeys(["WEB_PORT", "WEB_BIND", "PROCESSING_GUARANTEE", "HOME"], "x")})
    )


def test_contact_ids_are_hidden_or_pseudonymised():
    line = "GET /contacts/ada@acme.io?at=last-event failed for bob.o'neil@shop.co.uk and /contacts/anon-42"
    assert (
        redactor("hidden")(line) == "GET /contacts/<contact>?at=last-event failed for <contact> and /contacts/<contact>"
    )
    pseudo = redactor("pseudonymised")(line)
    assert pseudonym("ada@acme.io") in pseudo and pseudonym("anon-42") in pseudo and "acme" not in pseudo
    assert redactor("plain")(line) == line


def test_log_records_are_redacted_with_their_tracebacks(caplog):
    factory = logging.getLogRecordFactory()
    try:
        install_log_redaction("hidden")
        with caplog.at_level(logging.INFO):
            logging.getLogger("x").info("scored %s", "ada@acme.io")
            try:
                raise KeyError("ada@acme.io")
            except KeyError:
                logging.getLogger("x").exception("failed")
    finally:
        logging.setLogRecordFactory(factory)
    assert "acme" not in caplog.text and "scored <contact>" in caplog.text and "KeyError" in caplog.text


def test_the_tokens_file_takes_the_write_keys_files_comments(tmp_path):
    from leadpulse.collector.keys import load_write_keys
    from leadpulse.streams.settings import read_tokens

    secrets = tmp_path / "secrets"
    secrets.write_text(f"# the query API's callers\n{TOKEN}  # the CRM sync\n")
    assert read_tokens(secrets) == (TOKEN,)
    assert load_write_keys(secrets).server == (TOKEN.encode(),)
