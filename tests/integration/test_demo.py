"""`leadpulse demo` as a user runs it, against the suite's broker."""

import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from leadpulse.cli.processes import ROOT, free_port
from tests.integration.harness import ctrl_c_as_in_a_terminal, wait_for

pytestmark = pytest.mark.integration


def demo_env(broker, web_port: int, name: str) -> dict[str, str]:
    """The environment of a demo of its own (topics, app id, web port) on the suite's broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")}
    env.update(
        {
            "LEADPULSE_BROKER": f"127.0.0.1:{broker.port}",
            "LEADPULSE_WEB_PORT": str(web_port),
            "LEADPULSE_TOPIC_PREFIX": f"{name}.",
            "LEADPULSE_INPUT_TOPIC": f"{name}.events",
            "LEADPULSE_APP_ID": f"lp-{name}",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def test_the_demo_shows_live_counts_hot_leads_hot_accounts_and_nurture_records_and_stops_its_worker(broker, tmp_path):
    web_port = free_port()
    env = demo_env(broker, web_port, "demo")
    env["LEADPULSE_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-m", "leadpulse", "demo", "--duration", "25", "--rate", "400"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    counts = [line for line in done.stdout.splitlines() if "events sent" in line]
    assert counts and "hot leads 0 " not in counts[-1]
    hot = [line for line in done.stdout.splitlines() if line.startswith("HOT   ")]
    assert hot and all(" because " in line for line in hot)
    assert "hot accounts 0 " not in counts[-1]
    accounts = [line for line in done.stdout.splitlines() if line.startswith("HOT ACCOUNT ")]
    assert accounts and all(" contacts engaged, committee " in line and "best: " in line for line in accounts)
    assert "nurture 0 " not in counts[-1]
    nurture = [line for line in done.stdout.splitlines() if line.startswith("NURTURE ")]
    assert nurture and all(" -> " in line and "https://" in line for line in nurture)
    assert re.search(r"\| webhooks [1-9][\d,]*$", counts[-1]), f"no alert reached the demo's receiver: {counts[-1]}"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", web_port)) != 0, "the demo left its worker running"
    board = re.search(r"the lead board on http://127\.0\.0\.1:(\d+)/ \(log in with the token in ", done.stderr)
    assert board, f"the demo did not print its board's URL: {done.stderr}"
    board_log = (tmp_path / ".leadpulse" / "demo-board.log").read_text()
    assert "reading 48 partitions" in board_log, board_log[-2000:]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(board.group(1)))) != 0, "the demo left its board running"


def test_a_second_demo_refuses_to_start_in_one_line_and_the_first_goes_on(broker, tmp_path):
    web_port = free_port()
    env = demo_env(broker, web_port, "demo2")
    demo = [sys.executable, "-m", "leadpulse", "demo", "--rate", "50"]
    first_said = tmp_path / "first.stderr"
    with first_said.open("wb") as stderr, ctrl_c_as_in_a_terminal():
        first = subprocess.Popen(demo, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        assert wait_for(lambda: "sending traffic" in first_said.read_text(), timeout_s=150, interval_s=0.2)
        other_folder = tmp_path / "elsewhere"
        other_folder.mkdir()
        for folder, port, expected in (
            (tmp_path, web_port, f"another demo (pid {first.pid}) is running from this folder (its worker, state and "
                                 "log are in .leadpulse): stop it first (Ctrl-C)"),
            (other_folder, web_port, f"port 127.0.0.1:{web_port} is in use, by another worker perhaps: set "
                                     "LEADPULSE_WEB_PORT"),
            (other_folder, free_port(), f"consumer group 'lp-demo2' on 127.0.0.1:{broker.port} already has 1 member "
                                        "(another demo or worker): this demo's traffic would go into that pipeline; "
                                        "stop it, or give this demo its own LEADPULSE_APP_ID and "
                                        "LEADPULSE_TOPIC_PREFIX"),
        ):  # fmt: skip
            second_env = {**env, "LEADPULSE_WEB_PORT": str(port)}
            second = subprocess.run(
                demo, cwd=folder, env=second_env, capture_output=True, text=True, timeout=60, check=False
            )
            assert second.returncode == 1, second.stderr
            assert second.stderr.startswith(f"leadpulse demo: {expected}") and second.stderr.count("\n") == 1
            assert second.stdout == ""  # no traffic sent, no counts shown
        assert first.poll() is None, "the first demo stopped"
    finally:
        first.send_signal(signal.SIGINT)  # Ctrl-C: the demo stops its worker
        first.wait(60)
    assert first.returncode == 0, first_said.read_text()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", web_port)) != 0, "the demo left its worker running"
