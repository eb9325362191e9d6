"""The worker's /metrics says which rules version it scores with, so that a rollout (a new
app id, or workers restarted with a new file) can be followed per worker on the dashboard."""

import tomllib
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[2] / "leadpulse" / "scoring" / "default_rules.toml"


def test_the_metrics_name_the_rules_version_in_use_and_no_other(scorer):
    version = tomllib.loads(SHIPPED.read_text())["version"]
    (metric,) = [metric for metric in scorer.metrics.registry.collect() if metric.name == "leadpulse_rules"]
    samples = metric.samples
    assert [(sample.name, sample.labels, sample.value) for sample in samples] == [
        ("leadpulse_rules_info", {"version": version}, 1.0)
    ]
