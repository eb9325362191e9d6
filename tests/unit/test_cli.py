"""The `leadpulse` command's first-hour behaviour: every mistake a newcomer makes on a fresh
clone ends in one line that says what to do, never in a traceback or a retry loop."""

import os
import re
import subprocess
import sys
import types
from dataclasses import fields
from unittest.mock import AsyncMock

import orjson
import pytest
from faust.cli.base import LOGLEVELS

from leadpulse.cli import local_state, preflight
from leadpulse.cli.main import main
from leadpulse.cli.preflight import BrokerInfo, CommandError, tail_topic
from leadpulse.cli.processes import free_port
from leadpulse.streams import startup
from leadpulse.streams.settings import HELP, Settings, env_name


def stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("command", [["worker"], ["produce", "{events}"], ["tail", "hot-leads"], ["collect"]])
def test_a_command_without_a_broker_says_so_in_one_line(command, tmp_path):
    """A real process: aiokafka's own error logging would reach stderr there, and pytest's
    log capture would hide it in-process."""
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "e1", "type": "page_viewed", "contact_id": "a@b.c"}\n')
    port = free_port()  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")}
    env |= {"LEADPULSE_BROKER": f"127.0.0.1:{port}", "LEADPULSE_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "keys").write_text("a-write-key-of-20-chars\n")
    env |= {"LEADPULSE_WRITE_KEYS_FILE": str(tmp_path / "keys")}
    args = [part.format(events=events) for part in command]
    done = subprocess.run(
        [sys.executable, "-m", "leadpulse", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert stderr_lines(done.stderr) == [
        f"leadpulse {command[0]}: no Kafka broker answers at 127.0.0.1:{port} (LEADPULSE_BROKER); "
        "start the local one with `deploy/kafka/broker.sh start` (or run everything with `make demo`)"
    ]
    assert not (tmp_path / "data").exists(), "nothing is written before the broker answers"


def test_produce_of_a_missing_file_says_so_before_looking_for_a_broker(clean_env, tmp_path, capsys):
    clean_env.setenv("LEADPULSE_BROKER", f"127.0.0.1:{free_port()}")
    assert main(["produce", str(tmp_path / "nope.jsonl")]) == 2
    assert stderr_lines(capsys.readouterr().err) == [f"leadpulse produce: {tmp_path / 'nope.jsonl'}: no such file"]


def test_worker_help_lists_every_setting_with_its_default_and_help(clean_env, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["worker", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    defaults = Settings()
    for setting in fields(Settings):
        name = env_name(setting.name)
        line = next((line for line in out.splitlines() if line.strip().startswith(f"{name}=")), None)
        assert line is not None, f"{name} is not listed"
        value = getattr(defaults, setting.name)
        if isinstance(value, int | str) and value != "":
            assert line.strip() == f"{name}={value}"
        assert " ".join(HELP[setting.name].split()) in " ".join(out.split())


def test_worker_passes_fausts_spelling_of_the_log_level(clean_env, tmp_path, monkeypatch):
    """LEADPULSE_LOG_LEVEL=warning is ours; Faust's -l accepts only its own names."""
    seen: list[list[str]] = []
    fake_app = types.SimpleNamespace(main=lambda: seen.append(list(sys.argv)))
    monkeypatch.setitem(sys.modules, "leadpulse.app", types.SimpleNamespace(app=fake_app))
    monkeypatch.setattr(preflight, "broker_info", lambda settings: BrokerInfo("cluster-a", frozenset()))
    monkeypatch.setattr(startup, "prepare_topics", AsyncMock())
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    clean_env.setenv("LEADPULSE_LOG_LEVEL", "warning")
    clean_env.setenv("LEADPULSE_DATA_DIR", str(tmp_path / "data"))
    assert main(["worker"]) == 0
    (argv,) = seen
    level = argv[argv.index("-l") + 1]
    assert level.upper() in LOGLEVELS


def test_worker_refuses_a_state_folder_of_another_cluster_before_starting_faust(clean_env, tmp_path, capsys):
    data = tmp_path / "data"
    local_state.write_marker(data, "cluster-a")
    clean_env.setattr(preflight, "broker_info", lambda settings: BrokerInfo("cluster-b", frozenset()))
    clean_env.setenv("LEADPULSE_DATA_DIR", str(data))
    clean_env.setitem(sys.modules, "leadpulse.app", None)  # importing it would fail the test
    assert main(["worker"]) == 1
    (line,) = stderr_lines(capsys.readouterr().err)
    assert line.startswith(f"leadpulse worker: the state folder {data} belongs to Kafka cluster cluster-a")
    assert f"rm -rf {data}" in line and "LEADPULSE_DATA_DIR" in line


def test_a_new_state_folder_is_claimed_for_the_cluster(tmp_path):
    data = tmp_path / "new" / "data"
    local_state.claim(data, "cluster-a", "127.0.0.1:9092")
    assert local_state.read_marker(data) == "cluster-a"
    local_state.claim(data, "cluster-a", "127.0.0.1:9092")  # the same cluster again: fine


def test_a_state_folder_of_another_cluster_is_refused_with_what_to_do(tmp_path):
    data = tmp_path / "it's data"
    local_state.claim(data, "cluster-a", "127.0.0.1:9092")
    with pytest.raises(CommandError) as refused:
        local_state.claim(data, "cluster-b", "127.0.0.1:9092")
    message = str(refused.value)
    assert "belongs to Kafka cluster cluster-a" in message and "is cluster cluster-b" in message
    assert "rm -rf '" in message  # quoted: the path has a quote and a space
    assert "\n" not in message
    assert local_state.read_marker(data) == "cluster-a", "a refusal does not rewrite the marker"


def test_an_empty_marker_counts_as_a_new_folder(tmp_path):
    (tmp_path / "cluster-id").write_text("\n")
    local_state.claim(tmp_path, "cluster-a", "127.0.0.1:9092")
    assert local_state.read_marker(tmp_path) == "cluster-a"


def test_tail_of_a_mistyped_name_suggests_the_right_one():
    settings = Settings(topic_prefix="p.")
    existing = {"p.hot-leads", "p.contact-scores", "orders"}
    with pytest.raises(CommandError) as refused:
        tail_topic("hot_leads", settings, existing)
    message = str(refused.value)
    assert "no topic hot_leads on 127.0.0.1:9092; did you mean hot-leads?" in message
    assert (
        "contact-scores, stage-changes, hot-leads, dead-letters, account-scores, hot-accounts, nurture, events"
        in message
    )
    assert "also on the broker: orders" in message


def test_tail_of_a_leadpulse_topic_not_created_yet_says_who_creates_it():
    with pytest.raises(CommandError, match="a worker creates LeadPulse's topics when it starts"):
        tail_topic("stage-changes", Settings(), {"events"})


def test_tail_resolves_short_names_with_the_prefix_and_other_names_as_they_are():
    settings = Settings(topic_prefix="p.")
    assert tail_topic("hot-leads", settings, {"p.hot-leads"}) == "p.hot-leads"
    assert tail_topic("orders", settings, {"orders"}) == "orders"


def test_the_demo_keeps_its_tables_apart_unless_told_otherwise(tmp_path):
    from leadpulse.cli.demo import DEMO_DATA_DIR, demo_settings

    assert demo_settings(Settings(), {}).data_dir == DEMO_DATA_DIR.resolve()
    chosen = tmp_path / "mine"
    assert demo_settings(Settings(data_dir=chosen), {"LEADPULSE_DATA_DIR": str(chosen)}).data_dir == chosen


def test_the_demo_worker_ticks_every_two_seconds_unless_told_otherwise():
    """Nurture records come from the cooling timer: with the default minute the demo would
    show none in its first minute."""
    from leadpulse.cli.demo import DEMO_COOLING_S, demo_settings

    assert demo_settings(Settings(), {}).cooling_interval_s == DEMO_COOLING_S == 2.0
    chosen = Settings(cooling_interval_s=30.0)
    assert demo_settings(chosen, {"LEADPULSE_COOLING_INTERVAL": "30"}).cooling_interval_s == 30.0


def test_a_nurture_record_reads_as_one_line():
    from leadpulse.cli.console import describe

    record = {
        "id": "x",
        "kind": "nurture",
        "contact_id": "lea@acme.io",
        "track": "cooling-off",
        "trigger": "cooled",
        "stage": "prospect",
        "interest": "pricing",
        "content": {"title": "Pricing white paper", "url": "https://example.com/p"},
    }
    assert describe(orjson.dumps(record)) == (
        "NURTURE lea@acme.io: cooling-off (prospect, interest pricing) -> Pricing white paper https://example.com/p"
    )
    assert describe(orjson.dumps(record | {"interest": None})).startswith(
        "NURTURE lea@acme.io: cooling-off (prospect) ->"
    )


def test_a_hot_lead_names_its_model_unless_it_is_the_default_one():
    from leadpulse.cli.console import describe

    record = {
        "kind": "hot_lead",
        "model": "payments",
        "contact_id": "rita@shop.example",
        "score": 87,
        "stage": "lead",
        "reasons": [{"signal": "payments demo", "part": "engagement", "points": 60.0}],
    }
    assert describe(orjson.dumps(record)) == (
        "HOT   rita@shop.example: score 87 (lead) for model payments because payments demo +60"
    )
    assert describe(orjson.dumps(record | {"model": "default"})) == (
        "HOT   rita@shop.example: score 87 (lead) because payments demo +60"
    )


def test_a_hot_account_reads_as_one_line_with_its_committee_and_best_contacts():
    from leadpulse.cli.console import describe

    record = {
        "kind": "hot_account",
        "account_id": "acme.io",
        "score": 83,
        "contacts": 6,
        "engaged_contacts": 5,
        "committee": {"covered": ["economic buyer", "champion"], "missing": ["finance"], "coverage": 0.67},
        "top_contacts": [{"contact_id": "lea@acme.io", "score": 71}, {"contact_id": "tom@acme.io", "score": 55}],
    }
    assert describe(orjson.dumps(record)) == (
        "HOT ACCOUNT acme.io: score 83, 5 of 6 contacts engaged, committee economic buyer, champion; "
        "best: lea@acme.io (71), tom@acme.io (55)"
    )


def test_the_demo_audience_works_for_companies_so_that_accounts_turn_hot():
    from leadpulse.cli.demo import DemoOptions, _traffic

    documents = _traffic(DemoOptions(rate=1, duration_s=None, contacts=400, history_days=21))
    named = [next(documents).get("properties", {}) for _ in range(3000)]
    found = (re.search(r"(?:acct|company)-(\d+)", str(p.get(key))) for p in named for key in ("account_id", "email"))
    companies = {match.group(1) for match in found if match}
    assert len(companies) == 400 // 40  # 40 contacts per company: several engaged members make an account hot


def test_the_demo_starts_its_own_state_folder_afresh_when_another_cluster_wrote_it(tmp_path, capsys):
    from leadpulse.cli.demo import _claim_state_folder

    data = tmp_path / "demo-data"
    local_state.write_marker(data, "cluster-a")
    (data / "leadpulse-data").mkdir()
    _claim_state_folder(Settings(data_dir=data), "cluster-b", own=True)
    assert local_state.read_marker(data) == "cluster-b"
    assert not (data / "leadpulse-data").exists()
    assert "starting it afresh" in capsys.readouterr().err


def test_the_demo_never_empties_a_folder_the_user_chose(tmp_path):
    from leadpulse.cli.demo import _claim_state_folder

    local_state.write_marker(tmp_path, "cluster-a")
    with pytest.raises(CommandError, match="rm -rf"):
        _claim_state_folder(Settings(data_dir=tmp_path), "cluster-b", own=False)
    assert local_state.read_marker(tmp_path) == "cluster-a"


def test_worker_help_says_the_prefix_names_the_outputs_and_the_app_id_the_internal_topics(clean_env, capsys):
    from leadpulse.streams.pipeline import create_app

    settings = Settings(
        app_id="app", topic_prefix="p.", input_topic="events", store="memory://", cooling_interval_s=0.0
    )
    topics = create_app(settings).topics
    names = [topic.get_topic_name() for topic in topics.all]
    internal = [topics.by_contact, topics.cooling, topics.account_members]
    assert all(topic.get_topic_name().startswith("app-") for topic in internal)
    inputs = {"events", "events.erasure-requests"}  # named in full, and after the input
    assert inputs <= set(names) and all(name.startswith(("p.", "app-")) for name in names if name not in inputs)
    with pytest.raises(SystemExit):
        main(["worker", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "LEADPULSE_INPUT_TOPIC=events Topic the events are read from, named in full" in out
    assert "Put before the output topics' names (contact-scores...); LEADPULSE_INPUT_TOPIC is named in full." in out
