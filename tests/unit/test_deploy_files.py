"""What can be checked here of the Docker stack (no Docker engine on these machines)."""

import json
import re
from dataclasses import fields
from pathlib import Path

import yaml

from leadpulse.streams.metrics import Metrics
from leadpulse.streams.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_uses_the_same_kafka_version_as_the_local_broker():
    default = re.search(r"KAFKA_VERSION:-([0-9.]+)", (ROOT / "deploy/kafka/broker.sh").read_text()).group(1)
    assert COMPOSE["services"]["kafka"]["image"] == f"apache/kafka:{default}"


def test_every_leadpulse_variable_in_compose_is_a_known_setting_and_parses():
    known = {env_name(f.name) for f in fields(Settings)}
    for name in ("worker", "traffic"):
        environment = {k: str(v) for k, v in COMPOSE["services"][name]["environment"].items()}
        assert set(environment) <= known
        Settings.from_env(environment)


def test_prometheus_scrapes_the_worker_web_port():
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"worker:{Settings().web_port}"]
    assert f"127.0.0.1:{Settings().web_port}:{Settings().web_port}" in COMPOSE["services"]["worker"]["ports"]


def test_compose_publishes_ports_on_loopback_only():
    for name, service in COMPOSE["services"].items():
        for mapping in service.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), f"{name} publishes {mapping} on every interface"


def test_the_grafana_dashboard_only_queries_metrics_that_exist():
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/leadpulse.json").read_text())
    ours = {family.name for family in Metrics.create().registry.collect()}
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for expr in exprs:
        for name in re.findall(r"\b(leadpulse_[a-z_]+)", expr):
            base = re.sub(r"_(total|bucket|count|sum|info)$", "", name)
            assert base in ours, f"{name} is not a LeadPulse metric"
    assert len(exprs) >= 8


def test_the_worker_image_copies_the_package_and_the_build_files_it_installs():
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = [
        path
        for line in re.findall(r"^COPY (?!--from)(.+?) \S+$", dockerfile, flags=re.MULTILINE)
        for path in line.split()
    ]
    assert {"leadpulse", "pyproject.toml", "setup.py"} <= set(copied)
    assert all((ROOT / path).exists() for path in copied)
