"""`leadpulse demo` as a user runs it, against the suite's broker."""

import os
import socket
import subprocess
import sys

import pytest

from leadpulse.cli.processes import ROOT, free_port

pytestmark = pytest.mark.integration


def test_the_demo_shows_live_counts_hot_leads_hot_accounts_and_nurture_records_and_stops_its_worker(broker, tmp_path):
    web_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")}
    env.update(
        {
            "LEADPULSE_BROKER": f"127.0.0.1:{broker.port}",
            "LEADPULSE_WEB_PORT": str(web_port),
            "LEADPULSE_TOPIC_PREFIX": "demo.",
            "LEADPULSE_INPUT_TOPIC": "demo.events",
            "LEADPULSE_APP_ID": "lp-demo",
            "LEADPULSE_DATA_DIR": str(tmp_path / "data"),
            "PYTHONPATH": str(ROOT),
        }
    )
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
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", web_port)) != 0, "the demo left its worker running"
