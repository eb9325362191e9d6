"""The alert rules (deploy/prometheus/alerts.yml): promtool accepts them and the Prometheus
configuration, each alert fires in promtool's unit tests (alerts.test.yml), queries only
metrics the services export, and has a runbook in its annotations and in the README."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry

from leadpulse.collector.service import CollectorMetrics
from leadpulse.streams.metrics import Metrics
from tests.monitoring import (
    ALERTS,
    MISSING_TOOL,
    PROMETHEUS_DIR,
    ROOT,
    alert_rules,
    metric_name,
    recording_rules,
    selectors,
    tool,
)

PROMETHEUS_OWN = {"up"}  # set by Prometheus for every target


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = tool("promtool")
    if path is None:
        pytest.skip(MISSING_TOOL.format("promtool"))
    return subprocess.run([path, *args], check=False, capture_output=True, text=True, cwd=PROMETHEUS_DIR, timeout=60)


def exported_names(cgroup: Path) -> set[str]:
    """Every series name the worker (RocksDB, in a container with a memory limit) and the
    collector serve on /metrics, as Prometheus stores them (counters with _total, histograms
    with _bucket, _sum and _count)."""
    (cgroup / "memory.max").write_text("1073741824\n")
    worker = Metrics.create(CollectorRegistry(), cgroup=cgroup)
    worker.watch_state_volume(cgroup)
    FaustMetrics.create(worker.registry, "faust")
    return series_names(worker.registry) | series_names(CollectorMetrics.create().registry)


def series_names(registry: CollectorRegistry) -> set[str]:
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
    return {family.name + suffix for family in registry.collect() for suffix in suffixes.get(family.type, ("",))}


def test_the_prometheus_configuration_and_its_rule_files_pass_promtool_check_config():
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "alerts.yml" in result.stdout


def test_the_alert_rules_pass_promtool_check_rules():
    result = promtool("check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_behaves_as_its_promtool_unit_tests_say():
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_shown_firing_by_a_promtool_unit_test():
    """A rule with no firing case in alerts.test.yml is a rule nobody has seen fire."""
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert fired == {rule["alert"] for rule in alert_rules()}


def test_every_alert_has_a_summary_a_runbook_a_severity_and_a_for_window():
    for rule in alert_rules():
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "runbook"}, rule["alert"]
        assert len(annotations["runbook"]) >= 80, rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert re.fullmatch(r"[0-9]+[smh]", rule["for"]), rule["alert"]


def test_the_readme_monitoring_section_explains_every_alert_and_no_other():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n### Monitoring\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    explained = set(re.findall(r"^\| `(LeadPulse[A-Za-z]+)` \|", section, flags=re.MULTILINE))
    assert explained == {rule["alert"] for rule in alert_rules()}


def test_the_rules_query_only_metrics_the_worker_and_collector_export(tmp_path):
    known = exported_names(tmp_path) | PROMETHEUS_OWN | {rule["record"] for rule in recording_rules()}
    for rule in recording_rules() + alert_rules():
        for selector in selectors(rule["expr"]):
            name = metric_name(selector)
            if not name.startswith("leadpulse_notify_"):  # the notify service's: next test
                assert name in known, f"{rule.get('alert') or rule['record']}: {name} is exported by no service"


def test_the_delivery_alert_queries_metrics_the_notify_service_exports():
    notify = pytest.importorskip("leadpulse.notify.metrics", reason="the notify service is not on this branch")
    known = series_names(notify.NotifyMetrics.create().registry)
    used = {metric_name(s) for rule in alert_rules() for s in selectors(rule["expr"])}
    assert {name for name in used if name.startswith("leadpulse_notify_")} <= known
