"""A real Prometheus (Debian's package) scrapes a real worker and collector on 127.0.0.1
while events flow, evaluates the alert rules of deploy/prometheus/alerts.yml (their `for`
windows cut to seconds, the expressions unchanged) and answers every query of the Grafana
dashboard and of the rules with data. Stopping the worker while the collector still takes
events drives the lag alert to firing."""

from __future__ import annotations

import base64
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from leadpulse.cli.processes import free_port
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.metrics import CGROUP, cgroup_memory_limit
from tests.integration.harness import produce, wait_for
from tests.integration.oracle import traffic_lines
from tests.monitoring import (
    ALERTS,
    MISSING_TOOL,
    alert_rules,
    dashboard_exprs,
    metric_name,
    recording_rules,
    selectors,
    tool,
)

WRITE_KEY = "prometheus-test-key-01"
LAG_ALERT = "LeadPulseConsumerLagGrowing"
TEST_FOR = "2s"
NO_DATA_HERE = {
    "leadpulse_notify_dead_lettered_total": "the notify service is not started here",
    "leadpulse_notify_oldest_pending_age_seconds": "the notify service is not started here",
    'leadpulse_collector_requests_total{status="503"}': "a 503 needs a broker outage (test_broker_outage.py)",
}
if cgroup_memory_limit(CGROUP) is None:
    NO_DATA_HERE["leadpulse_memory_limit_bytes"] = "this machine sets no cgroup memory limit"


class Prometheus:
    """`prometheus` on 127.0.0.1 with its own data folder, stopped by pid."""

    def __init__(self, folder: Path, targets: dict[str, str]) -> None:
        self.folder = folder
        self.port = free_port()
        rules = yaml.safe_load(ALERTS.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = TEST_FOR  # the expressions stay as shipped
        (folder / "alerts.yml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in targets.items()
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, binary: str) -> None:
        with (self.folder / "prometheus.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.folder / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if not wait_for(self._ready, timeout_s=30, interval_s=0.2):
            raise TimeoutError(f"prometheus not ready in 30 s; see {self.folder / 'prometheus.log'}")

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {(self.folder / 'prometheus.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/{path}{query}", timeout=5) as response:
            answer = orjson.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[Any]:
        result: list[Any] = self.api("query", query=expr)["result"]
        return result

    def firing(self) -> set[str]:
        return {a["labels"]["alertname"] for a in self.api("alerts")["alerts"] if a["state"] == "firing"}


@pytest.fixture
def prometheus(tmp_path):
    binary = tool("prometheus")
    if binary is None:
        pytest.skip(MISSING_TOOL.format("prometheus"))
    started: list[Prometheus] = []

    def start(targets: dict[str, str]) -> Prometheus:
        folder = tmp_path / "prometheus"
        folder.mkdir()
        instance = Prometheus(folder, targets)
        started.append(instance)
        instance.start(binary)
        return instance

    yield start
    for instance in started:
        instance.stop()


class SegmentSender(threading.Thread):
    """Posts a Segment batch to the collector every 0.2 s until stopped: events keep arriving."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{url}/v1/batch"
        self.stopping = threading.Event()
        self.answers: list[int] = []
        self.auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()

    def run(self) -> None:
        serial = 0
        while not self.stopping.wait(0.2):
            batch = []
            for _ in range(10):
                serial += 1
                user = f"visitor-{serial % 40}@example.com"
                batch.append(
                    {
                        "type": "track",
                        "messageId": f"prometheus-test-{serial}",
                        "userId": user,
                        "event": "Demo Requested" if serial % 7 == 0 else "Email Link Clicked",
                        "timestamp": format_ms(now_ms()),
                    }
                )
            request = urllib.request.Request(
                self.url,
                data=orjson.dumps({"batch": batch}),
                headers={"Content-Type": "application/json", "Authorization": self.auth},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    self.answers.append(response.status)
            except urllib.error.HTTPError as error:
                self.answers.append(error.code)

    def stop(self) -> None:
        self.stopping.set()
        self.join(15)


def queries() -> list[str]:
    """What must return data: every dashboard query, every recording rule (its expression and
    the series Prometheus records from it), and every series an alert selects. An alert's own
    expression returns data only while it fires: its parts are what can be broken."""
    wanted = list(dashboard_exprs())
    for rule in recording_rules():
        wanted += [rule["expr"], rule["record"]]
    for rule in alert_rules():
        wanted += [s for s in selectors(rule["expr"]) if s not in NO_DATA_HERE and metric_name(s) not in NO_DATA_HERE]
    return list(dict.fromkeys(wanted))


def test_prometheus_finds_data_for_every_dashboard_and_rule_query_and_the_lag_alert_fires_when_the_worker_stops(
    make_settings, workers, collectors, prometheus, tmp_path
):
    keys = tmp_path / "write-keys"
    keys.write_text(f"{WRITE_KEY}\n")
    settings = make_settings(write_keys_file=keys, collect_port=free_port())
    worker = workers(settings)
    collector = collectors(settings)
    server = prometheus(
        {
            "leadpulse-worker": f"127.0.0.1:{settings.web_port}",
            "leadpulse-collector": f"127.0.0.1:{settings.collect_port}",
        }
    )
    # contacts that turn hot and change stage, and one record the worker must dead-letter
    produce(settings, [*traffic_lines(600, contacts=60), b'{"event_id": "broken", "type": "page_viewed"}'])
    sender = SegmentSender(collector.base_url)
    sender.start()
    try:
        wanted = queries()
        empty: list[str] = []

        def all_have_data() -> bool:
            empty[:] = [expr for expr in wanted if not server.query(expr)]
            return not empty

        assert wait_for(all_have_data, timeout_s=45, interval_s=1.0), f"no data for: {empty}"
        assert LAG_ALERT not in server.firing()
        assert set(sender.answers) == {200}

        worker.stop()  # the only worker: events still arrive through the collector
        assert wait_for(lambda: LAG_ALERT in server.firing(), timeout_s=20, interval_s=0.5), server.api("alerts")
        assert set(sender.answers) == {200}  # the collector kept taking them
    finally:
        sender.stop()
