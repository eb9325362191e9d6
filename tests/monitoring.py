"""The monitoring files as the tests read them: the alert rules, the Grafana dashboard's
queries, the series each expression selects, and where promtool and prometheus are."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "deploy/prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
DASHBOARD = ROOT / "deploy/grafana/dashboards/leadpulse.json"
MISSING_TOOL = "{} not installed: `make ops-tools` installs Debian's prometheus package (root and apt-get)"

_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_RANGES = re.compile(r"\[[^\]]*\]")
_NAME = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])\s*(\{[^}]*\})?(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "on", "without", "ignoring", "group_left", "group_right"}


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(ALERTS.read_text())["groups"]
    return groups


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def recording_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "record" in rule]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def selectors(expr: str) -> list[str]:
    """The series selectors of a PromQL expression (`name{matchers}`), without functions,
    keywords and label lists: each one must match series for the expression to mean anything."""
    labels: list[str] = []

    def keep(match: re.Match[str]) -> str:  # matchers hold strings: set them aside first
        labels.append(match.group(0))
        return f"{{#{len(labels) - 1}}}"

    text = re.sub(r"\{[^}]*\}", keep, expr)
    text = _LABEL_LISTS.sub(" ", _RANGES.sub(" ", _STRINGS.sub(" ", text)))
    found = []
    for name, matchers in _NAME.findall(text):
        if name in _KEYWORDS or re.fullmatch(r"[0-9.e+]+", name):
            continue
        found.append(name + (labels[int(matchers[2:-1])] if matchers else ""))
    return found


def metric_name(selector: str) -> str:
    return selector.split("{", 1)[0]


def tool(name: str) -> str | None:
    return shutil.which(name)
