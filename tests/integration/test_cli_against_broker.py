"""`leadpulse tail`, `produce` and `worker` as a user runs them, against the suite's broker:
the checks they make before any work (topic, input lines, state folder)."""

import asyncio
import time

import orjson
import pytest

from leadpulse.cli import local_state
from leadpulse.cli.kafka_clients import ensure_topic, read_topic
from leadpulse.cli.main import main
from leadpulse.cli.preflight import broker_info

pytestmark = pytest.mark.integration

EVENT = {"event_id": "e1", "type": "page_viewed", "contact_id": "ada@acme.io", "occurred_at": "2026-11-16T09:00:00Z"}


@pytest.fixture
def cli_env(make_settings, monkeypatch):
    """Settings of this test as the LEADPULSE_* variables the command reads."""

    def use(**overrides):
        settings = make_settings(**overrides)
        for name, value in settings.as_env().items():
            monkeypatch.setenv(name, value)
        return settings

    return use


def records_of(settings, topic):
    async def collect():
        return [v async for _k, v in read_topic(settings, topic, from_beginning=True, idle_timeout_s=2.0)]

    return asyncio.run(collect())


def wait_until_listed(settings, topic, timeout_s=10.0):
    """A new topic reaches the broker's metadata a moment after create_topics returns."""
    deadline = time.monotonic() + timeout_s
    while topic not in broker_info(settings).topics:
        assert time.monotonic() < deadline, f"{topic} not listed after {timeout_s}s"
        time.sleep(0.1)


def test_tail_of_a_mistyped_topic_stops_at_once_with_a_did_you_mean(cli_env, capsys):
    settings = cli_env()
    asyncio.run(ensure_topic(settings, settings.topic("hot-leads")))
    asyncio.run(ensure_topic(settings, settings.topic("orders")))
    wait_until_listed(settings, settings.topic("orders"))
    assert main(["tail", "hot_leads"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("leadpulse tail: no topic hot_leads on 127.0.0.1:")
    assert "did you mean hot-leads?" in line
    assert "LeadPulse's: contact-scores, stage-changes, hot-leads, dead-letters" in line
    assert settings.topic("orders") in line, "what else the broker has is listed too"


def test_tail_prints_an_existing_topic(cli_env, capsys, tmp_path):
    settings = cli_env()
    events = tmp_path / "events.jsonl"
    events.write_bytes(orjson.dumps(EVENT) + b"\n")
    assert main(["produce", str(events)]) == 0
    assert main(["tail", settings.input_topic, "--from-beginning", "--idle-exit", "2", "--raw"]) == 0
    assert [orjson.loads(line) for line in capsys.readouterr().out.splitlines()] == [EVENT]


@pytest.mark.parametrize("send_invalid", [False, True])
def test_produce_sends_non_json_lines_only_if_asked(cli_env, capsys, tmp_path, send_invalid):
    """Reported by line number either way; names stay under the fixture's 60 characters."""
    settings = cli_env()
    events = tmp_path / "events.jsonl"
    valid = [orjson.dumps(EVENT), orjson.dumps({**EVENT, "event_id": "e2"})]
    events.write_bytes(b"\n".join([valid[0], b"{oops", b"", b"[1, 2]", valid[1]]) + b"\n")
    assert main(["produce", str(events), *(["--send-invalid"] if send_invalid else [])]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("line 2: not valid JSON")
    assert err[1] == "line 4: not a JSON object"
    sent = records_of(settings, settings.input_topic)
    if send_invalid:
        assert sorted(sent) == sorted([*valid, b"{oops", b"[1, 2]"])
        assert err[-1] == f"sent 4 records to {settings.input_topic}, 2 of them invalid (the worker dead-letters them)"
    else:
        assert sorted(sent) == sorted(valid)
        assert err[-1].startswith(f"sent 2 records to {settings.input_topic}; 2 invalid lines not sent")


def test_a_state_folder_is_claimed_for_the_broker_cluster_and_refused_to_another(cli_env, capsys):
    settings = cli_env()
    info = broker_info(settings)
    assert info.cluster_id
    local_state.claim(settings.data_dir, info.cluster_id, "here")
    assert local_state.read_marker(settings.data_dir) == info.cluster_id

    local_state.write_marker(settings.data_dir, "another-cluster")  # as after `make demo`, then another broker
    assert main(["worker"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "belongs to Kafka cluster another-cluster, but the broker at 127.0.0.1:" in line
    assert f"is cluster {info.cluster_id}" in line
    assert f"rm -rf {settings.data_dir.resolve()}" in line
