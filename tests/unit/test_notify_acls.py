"""What an administrator needs to run `leadpulse notify` on a cluster that enforces ACLs and
where topics are made by hand: `topics create`/`topics commands` make its delivery-failures
topic, and `topics acls --service notify` / `topics commands --service notify` grant its user
the least it needs, both printed from one binding list (notify_acl_bindings)."""

import base64
import os
from typing import Any

import pytest

from leadpulse.cli.main import main
from leadpulse.notify.service import failures_topic, group_id
from leadpulse.streams import startup
from leadpulse.streams.authorized import OPERATION_CODES
from leadpulse.streams.settings import Settings, StartupError
from tests.factories import EXAMPLES

EXAMPLE = str(EXAMPLES / "notify.toml")  # reads hot-leads, hot-accounts and stage-changes
SECRET = "whsec_" + base64.b64encode(bytes(32)).decode()


@pytest.fixture
def env(monkeypatch):
    """No LEADPULSE_* variable but these, and none of the example's secrets: an administrator's machine."""
    for name in [name for name in os.environ if name.startswith("LEADPULSE_") or name.endswith("_WEBHOOK_SECRET")]:
        monkeypatch.delenv(name)
    for name in ("SALES_SLACK_WEBHOOK_URL", "CRM_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEADPULSE_TOPIC_PREFIX", "lp.")
    monkeypatch.setenv("LEADPULSE_INPUT_TOPIC", "lp.events")
    return monkeypatch


def printed(capsys: Any, *args: str) -> list[str]:
    assert main(list(args)) == 0
    return capsys.readouterr().out.splitlines()


def test_topics_commands_create_the_failures_topic_as_an_event_topic_the_worker_does_not_need():
    settings = Settings(event_retention=2 * 86_400_000, min_insync_replicas=2)
    name = failures_topic(settings)
    (line,) = [line for line in startup.create_commands(settings) if f"--topic {name} " in line]
    assert "--config cleanup.policy=delete" in line and "--config retention.ms=172800000" in line
    assert "--config min.insync.replicas=2" in line
    # The worker's start-up neither requires it nor grants the worker's user anything on it.
    assert name not in {spec.name for spec in startup.topic_specs(settings)}
    assert name not in {binding.name for binding in startup.acl_bindings(settings)}


def test_notify_gets_read_on_the_topics_its_file_reads_write_on_failures_and_its_two_groups(env, capsys):
    env.setenv("LEADPULSE_CREATE_TOPICS", "off")
    lines = printed(capsys, "topics", "acls", "--service", "notify", "--config", EXAMPLE, "--principal", "User:n")
    assert lines == [
        "User:n topic lp.hot-leads Read,Describe",
        "User:n topic lp.hot-accounts Read,Describe",
        "User:n topic lp.stage-changes Read,Describe",
        "User:n topic leadpulse-delivery-failures Read,Write,Describe",
        "User:n group leadpulse-notify Read,Describe",
        "User:n group leadpulse-notify-redrive Read,Describe",
    ]
    settings = Settings(app_id="leadpulse")
    assert group_id(settings) == "leadpulse-notify" and failures_topic(settings) == "leadpulse-delivery-failures"


def test_without_a_file_notify_gets_the_default_topics_and_create_when_it_may_create_them(env, capsys):
    lines = printed(capsys, "topics", "acls", "--service", "notify")
    assert lines[:3] == [
        "User:leadpulse topic lp.hot-leads Read,Describe,Create",
        "User:leadpulse topic lp.hot-accounts Read,Describe,Create",
        "User:leadpulse topic leadpulse-delivery-failures Read,Write,Describe,Create",
    ]
    assert all("Create" not in line for line in lines if " group " in line) and len(lines) == 5


def test_the_kafka_acls_lines_grant_what_acls_sh_is_given(env, capsys):
    listed = printed(capsys, "topics", "acls", "--service", "notify", "--config", EXAMPLE)
    commands = printed(capsys, "topics", "commands", "--service", "notify", "--config", EXAMPLE)
    assert "# ACLs of notify's principal User:leadpulse" in commands
    granted = [line for line in commands if line.startswith("kafka-acls.sh ")]
    assert len(granted) == len(listed)
    for line, command in zip(listed, granted, strict=True):
        principal, resource, name, operations = line.split()
        assert command.endswith(f" --{resource} {name}") and f"--allow-principal {principal} " in command
        assert [part.split()[0] for part in command.split("--operation ")[1:]] == operations.split(",")
    assert any("--topic leadpulse-delivery-failures " in line for line in commands if "kafka-topics.sh" in line)


def test_a_config_file_without_the_notify_service_is_one_line(env, capsys):
    assert main(["topics", "acls", "--config", EXAMPLE]) == 2
    err = capsys.readouterr().err
    assert err == "leadpulse topics: --config is notify's config file: add --service notify\n"


class Broker:
    """Answers DescribeTopics (KIP-430) with `operations` per topic, every operation elsewhere."""

    def __init__(self, operations: dict[str, tuple[str, ...]]) -> None:
        self.operations = operations

    async def _send_request(self, request: Any) -> Any:
        everything = tuple(OPERATION_CODES)
        topics = [
            {
                "topic": topic,
                "error_code": 0,
                "authorized_operations": sum(1 << OPERATION_CODES[op] for op in self.operations.get(topic, everything)),
            }
            for topic in request._topics
        ]
        return type("Answer", (), {"to_object": lambda _self: {"topics": topics}})()


async def test_notify_without_write_on_the_failures_topic_is_named_with_the_command_that_lists_its_acls():
    settings = Settings(create_topics=False)
    topics = [b for b in startup.notify_acl_bindings(settings, ["hot-leads"]) if b.resource == "topic"]
    broker = Broker({failures_topic(settings): ("Read", "Describe")})
    with pytest.raises(StartupError) as raised:
        await startup._check_topic_acls(broker, settings, topics, "notify")  # type: ignore[arg-type]
    assert str(raised.value) == (
        "PLAINTEXT may not WRITE topic leadpulse-delivery-failures (TopicAuthorizationFailedError): grant READ, "
        "WRITE and DESCRIBE on it (leadpulse topics commands --service notify)"
    )
    await startup._check_topic_acls(Broker({}), settings, topics, "notify")  # type: ignore[arg-type]


def test_run_checks_its_topics_and_group_and_redrive_only_the_failures_topic_and_its_own_group():
    from leadpulse.cli.notify_run import needed_acls
    from leadpulse.notify.config import parse_notify_config

    settings = Settings(topic_prefix="lp.", create_topics=False)
    text = (EXAMPLES / "notify.toml").read_text()
    environ = {"SALES_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x", "CRM_WEBHOOK_SECRET": SECRET}
    config = parse_notify_config(text, "notify.toml", EXAMPLES, environ)
    run = {binding.name for binding in needed_acls(settings, config, redrive=False)}
    redrive = {binding.name for binding in needed_acls(settings, config, redrive=True)}
    outputs = {"lp.hot-leads", "lp.hot-accounts", "lp.stage-changes"}
    assert run == outputs | {"leadpulse-delivery-failures", "leadpulse-notify"}
    assert redrive == {"leadpulse-delivery-failures", "leadpulse-notify-redrive"}
