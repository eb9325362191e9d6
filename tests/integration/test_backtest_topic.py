"""`leadpulse backtest --from-topic`: the history read from the input topic, from its
beginning to its end, is backtested as the same events in a file are."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from leadpulse.cli.main import main
from leadpulse.cli.traffic import DAY_MS, Traffic
from leadpulse.scoring.timeutil import now_ms
from tests.integration.harness import produce

pytestmark = pytest.mark.integration

BAD_RULES = Path(__file__).resolve().parents[2] / "examples" / "bad-rules.toml"


def test_a_backtest_of_the_input_topic_reports_what_the_same_events_in_a_file_report(
    make_settings, monkeypatch, tmp_path
):
    settings = make_settings()
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    traffic = Traffic(23, now_ms() - 120 * DAY_MS, 119 * DAY_MS, 300, outcomes=True)
    lines = [orjson.dumps(event) for event in traffic.events(3_000)]
    history = tmp_path / "history.jsonl"
    history.write_bytes(b"\n".join(lines) + b"\n")
    assert produce(settings, lines) == len(lines)

    from_topic, from_file = tmp_path / "topic.json", tmp_path / "file.json"
    common = ["--candidate", str(BAD_RULES), "--jobs", "2"]
    assert main(["backtest", "--from-topic", *common, "--json", str(from_topic)]) == 0
    assert main(["backtest", str(history), *common, "--json", str(from_file)]) == 0

    topic, file = orjson.loads(from_topic.read_bytes()), orjson.loads(from_file.read_bytes())
    assert topic["events"] == file["events"] == len(lines)
    assert topic["changes"]["contacts"] == file["changes"]["contacts"] > 0
    # contacts are independent of each other's order: their snapshots and hot leads are the
    # file's (hot accounts follow the order of members from different partitions: not compared)
    for side in ("baseline", "candidate"):
        for key in ("funnel", "temperatures", "scores", "hot_leads", "nurture", "account_temperatures"):
            assert topic[side][key] == file[side][key], (side, key)
    for kind in ("hot_leads_added", "hot_leads_removed"):
        assert topic["changes"][kind]["count"] == file["changes"][kind]["count"]


def test_a_backtest_of_an_input_topic_that_does_not_exist_says_so_in_one_line(make_settings, monkeypatch, capsys):
    settings = make_settings()
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert main(["backtest", "--from-topic", "--candidate", str(BAD_RULES)]) == 1
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and settings.input_topic in error
