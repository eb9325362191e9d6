"""The Kubernetes manifests (deploy/k8s): valid objects for kubeconform in strict mode, against
Kubernetes' own schemas (`make ops-tools` builds them), and in agreement with the code: every
LEADPULSE_ variable a pod gets is a setting the worker, collector or notify accepts, ports and
probe paths are the ones they serve, the RocksDB volume is where the worker keeps its tables,
notify's config file loads with the secrets mounted where it reads them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadpulse.collector.service import Collector
from leadpulse.notify.config import SLACK_RATE_PER_S, load_notify_config
from leadpulse.notify.service import web_app
from leadpulse.schemas.limits import DEFAULT_LIMITS
from leadpulse.scoring.rules import load_rules
from leadpulse.streams.pipeline import create_app
from leadpulse.streams.settings import Settings, SettingsError
from tests.monitoring import ROOT, alert_rules

BASE = ROOT / "deploy/k8s/base"
CACHE = Path(os.environ.get("LEADPULSE_CACHE", Path.home() / ".cache/leadpulse"))
SCHEMAS = CACHE / "k8s-schemas"
NO_TOOL = "{} not built: `make ops-tools` builds it with Go (go install), once per machine"
FILE_CONTENTS = {  # what a Secret would hold, for a *_FILE setting to be read
    "LEADPULSE_SASL_PASSWORD_FILE": "a-kafka-password\n",
    "LEADPULSE_API_TOKENS_FILE": "api-token-0123456789abcdef  # dashboards\n",
    "LEADPULSE_WRITE_KEYS_FILE": "write-key-0123456789  # web site\n",
}
NOTIFY_SECRETS = {  # what the leadpulse-notify Secret would hold, by key
    "sales-slack-url": "https://hooks.slack.com/services/T0000/B0000/0123456789abcdef\n",
    "crm-signing-secret": "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
}


def manifests() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(BASE.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def find(kind: str, name: str) -> dict[str, Any]:
    return next(doc for doc in manifests() if doc["kind"] == kind and doc["metadata"]["name"] == name)


WORKER = find("StatefulSet", "leadpulse-worker")
COLLECTOR = find("Deployment", "leadpulse-collector")
NOTIFY = find("Deployment", "leadpulse-notify")
CONFIG = find("ConfigMap", "leadpulse")["data"]
WORKLOADS = {"worker": WORKER, "collector": COLLECTOR, "notify": NOTIFY}


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def environment(workload: dict[str, Any], files: Path) -> dict[str, str]:
    """The variables the pod's process gets (ConfigMap, then its own env, `$(VAR)` expanded
    as Kubernetes does), each secret file replaced by one under `files` with its content."""
    env = dict(CONFIG)
    pod_name = f"{workload['metadata']['name']}-0"
    for variable in container(workload)["env"]:
        if "valueFrom" in variable:
            assert variable["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
            env[variable["name"]] = pod_name
        else:
            env[variable["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], variable["value"])
    for name in env:
        if name.endswith("_FILE"):
            path = files / name
            path.write_text(FILE_CONTENTS[name])
            env[name] = str(path)
    return env


def mounted_secret(workload: dict[str, Any], path: str) -> tuple[str, str]:
    """The Secret and key mounted at `path` in the pod."""
    spec = workload["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for mount in container(workload)["volumeMounts"]:
        folder = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(folder) and "secret" in volumes[mount["name"]]:
            secret = volumes[mount["name"]]["secret"]
            item = next(item for item in secret["items"] if item["path"] == path.removeprefix(folder))
            return secret["secretName"], item["key"]
    raise AssertionError(f"nothing mounted at {path}")


def test_the_manifests_are_valid_kubernetes_objects_in_kubeconforms_strict_mode(tmp_path):
    kubeconform = CACHE / "bin/kubeconform"
    if not kubeconform.exists():
        pytest.skip(NO_TOOL.format("kubeconform"))
    if not (SCHEMAS / "VERSION").exists():
        pytest.skip(NO_TOOL.format("Kubernetes' JSON schemas"))
    kustomize = CACHE / "bin/kustomize"
    if kustomize.exists():
        rendered = subprocess.run([kustomize, "build", BASE], check=True, capture_output=True, text=True).stdout
    elif shutil.which("kubectl"):
        rendered = subprocess.run(["kubectl", "kustomize", BASE], check=True, capture_output=True, text=True).stdout
    else:
        pytest.skip(NO_TOOL.format("kustomize"))
    (tmp_path / "rendered.yaml").write_text(rendered)
    result = subprocess.run(
        [
            kubeconform,
            "-strict",
            "-summary",
            "-schema-location",
            f"{SCHEMAS}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
            tmp_path / "rendered.yaml",
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(rendered))
    assert f"Valid: {len(kinds)}, Invalid: 0, Errors: 0, Skipped: 0" in result.stdout
    assert kinds == sorted(doc["kind"] for doc in manifests())
    assert {doc["metadata"].get("namespace") for doc in yaml.safe_load_all(rendered) if doc["kind"] != "Namespace"} == {
        "leadpulse"
    }


@pytest.mark.parametrize("workload", WORKLOADS.values(), ids=WORKLOADS.keys())
def test_every_leadpulse_variable_a_pod_gets_is_a_setting_its_process_accepts(workload, tmp_path):
    env = environment(workload, tmp_path)
    settings = Settings.from_env(env)  # an unknown or bad LEADPULSE_ variable stops start-up
    assert {name for name in env if not name.startswith("LEADPULSE_")} <= {"POD_NAME"}
    assert settings.security_protocol == "SASL_SSL" and settings.sasl_password is None
    if workload is COLLECTOR:
        assert settings.write_keys_file is not None


@pytest.mark.parametrize("workload", WORKLOADS.values(), ids=WORKLOADS.keys())
def test_secrets_come_from_files_mounted_from_secrets_never_from_the_configmap(workload):
    assert not {name for name in CONFIG if re.search("PASSWORD|TOKEN|KEY", name) and not name.endswith("_FILE")}
    for variable in container(workload)["env"]:
        if variable["name"].endswith("_FILE"):
            secret, key = mounted_secret(workload, variable["value"])
            assert secret.startswith("leadpulse-") and key


def test_without_enable_service_links_off_kubernetes_variables_would_stop_the_pods():
    """Kubernetes gives every pod {SERVICE}_SERVICE_HOST... for each Service of its namespace:
    for leadpulse-worker that is LEADPULSE_WORKER_SERVICE_HOST, which the worker refuses."""
    with pytest.raises(SettingsError, match="LEADPULSE_WORKER_SERVICE_HOST: unknown setting"):
        Settings.from_env({"LEADPULSE_WORKER_SERVICE_HOST": "10.0.0.1"})
    for workload in WORKLOADS.values():
        assert workload["spec"]["template"]["spec"]["enableServiceLinks"] is False


def test_the_pods_listen_and_advertise_on_the_ports_the_settings_name(tmp_path):
    worker = Settings.from_env(environment(WORKER, tmp_path))
    collector = Settings.from_env(environment(COLLECTOR, tmp_path))
    notify = Settings.from_env(environment(NOTIFY, tmp_path))
    assert container(WORKER)["ports"] == [{"name": "http", "containerPort": worker.web_port}]
    assert container(COLLECTOR)["ports"] == [{"name": "http", "containerPort": collector.collect_port}]
    assert container(NOTIFY)["ports"] == [{"name": "http", "containerPort": notify.notify_port}]
    assert worker.web_host == collector.collect_host == notify.notify_host == "0.0.0.0"
    # each worker advertises its own pod's name under the headless Service, on its port
    headless = find("Service", WORKER["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert worker.advertised_url == f"http://leadpulse-worker-0.{headless['metadata']['name']}:{worker.web_port}"
    for service, workload in ((headless, WORKER), (find("Service", "leadpulse-collector"), COLLECTOR)):
        assert service["spec"]["selector"] == workload["spec"]["template"]["metadata"]["labels"]
        assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]


def served_paths(tmp_path: Path) -> dict[str, set[str]]:
    worker = create_app(Settings(store="memory://", data_dir=tmp_path)).app.web.views
    collector = Collector(keys=(), sink=None, rules=load_rules(), limits=DEFAULT_LIMITS).app()  # type: ignore[arg-type]
    return {
        "worker": set(worker),
        "collector": {route.resource.canonical for route in collector.router.routes() if route.resource},
        "notify": {route.resource.canonical for route in web_app(None).router.routes() if route.resource},  # type: ignore[arg-type]
    }


@pytest.mark.parametrize("workload", WORKLOADS.values(), ids=WORKLOADS.keys())
def test_ready_is_health_and_alive_is_an_answer_that_a_long_restore_or_a_broker_outage_does_not_stop(
    workload, tmp_path
):
    """/health is 503 while restoring or while the broker is away: as liveness it would restart
    a pod in the middle of its restore (which begins again) or during an outage."""
    name = next(name for name, one in WORKLOADS.items() if one is workload)
    spec = container(workload)
    assert spec["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    for probe in ("livenessProbe", "startupProbe") if workload is WORKER else ("livenessProbe",):
        assert spec[probe]["httpGet"] == {"path": "/metrics", "port": "http"}
        assert spec[probe]["periodSeconds"] * spec[probe]["failureThreshold"] >= 60
    assert {"/health", "/metrics"} <= served_paths(tmp_path)[name]


def test_the_rocksdb_volume_of_each_worker_is_where_it_keeps_its_tables(tmp_path):
    settings = Settings.from_env(environment(WORKER, tmp_path))
    assert settings.store == "rocksdb://"
    (claim,) = WORKER["spec"]["volumeClaimTemplates"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container(WORKER)["volumeMounts"]}
    assert Path(mounts[claim["metadata"]["name"]]) == settings.data_dir
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_workers_standbys_and_disruptions_fit_the_partitions(tmp_path):
    settings = Settings.from_env(environment(WORKER, tmp_path))
    replicas = WORKER["spec"]["replicas"]
    assert replicas <= settings.partitions  # a worker more than partitions would sit idle
    # a notify pod without a partition of the output topics is never ready (/health: 503)
    assert NOTIFY["spec"]["replicas"] <= settings.partitions
    assert settings.standby_replicas < replicas  # a standby lives on another worker than the active copy
    for workload in WORKLOADS.values():
        budget = find("PodDisruptionBudget", workload["metadata"]["name"])
        assert budget["spec"]["selector"]["matchLabels"] == workload["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["maxUnavailable"] == 1 < workload["spec"]["replicas"]


def test_the_kubernetes_prometheus_configuration_scrapes_the_jobs_the_alert_rules_query():
    config = yaml.safe_load((ROOT / "deploy/k8s/prometheus-scrape.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    queried = {job for rule in alert_rules() for job in re.findall(r'job="([^"]+)"', rule["expr"])}
    assert queried <= set(jobs)
    for name, workload in WORKLOADS.items():
        job = f"leadpulse-{name}"
        keep = next(rule for rule in jobs[job]["relabel_configs"] if rule["action"] == "keep")
        label = workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        port = container(workload)["ports"][0]["name"]
        assert re.fullmatch(keep["regex"], f"{label};{port}")
        assert keep["source_labels"] == [
            "__meta_kubernetes_pod_label_app_kubernetes_io_name",
            "__meta_kubernetes_pod_container_port_name",
        ]


def test_notifys_config_file_loads_with_its_secrets_read_from_files_mounted_from_the_notify_secret(tmp_path):
    """The file the pod's command names is the ConfigMap's, mounted; every file it reads a
    secret from (signing secrets, the Slack URL) is an item of a mounted Secret; with those
    files in place it loads as `leadpulse notify run` loads it (no variable needed)."""
    spec = container(NOTIFY)
    assert spec["args"][:2] == ["notify", "run"]
    (config_path,) = spec["args"][2:]
    volumes = {volume["name"]: volume for volume in NOTIFY["spec"]["template"]["spec"]["volumes"]}
    mount = next(m for m in spec["volumeMounts"] if config_path.startswith(m["mountPath"].rstrip("/") + "/"))
    config_map = find("ConfigMap", volumes[mount["name"]]["configMap"]["name"])
    text = config_map["data"][config_path.removeprefix(mount["mountPath"].rstrip("/") + "/")]

    read = [
        path
        for destination in tomllib.loads(text)["destinations"].values()
        for key in ("url_file", "secret_file")
        for path in ([destination[key]] if isinstance(destination.get(key), str) else destination.get(key, []))
    ]
    assert read, "the example reads no secret from a file"
    for path in read:
        secret, key = mounted_secret(NOTIFY, path)
        assert secret == "leadpulse-notify" and key in NOTIFY_SECRETS
        (tmp_path / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path.lstrip("/")).write_text(NOTIFY_SECRETS[key])
    local = tmp_path / "notify.toml"
    local.write_text(text.replace('"/run/secrets/', f'"{tmp_path}/run/secrets/'))
    config = load_notify_config(local, environ={})
    assert config.destinations and config.routes

    # rate_per_s is each pod's: all the pods together stay within Slack's rate per channel
    for destination in config.destinations.values():
        if destination.kind == "slack":
            assert destination.rate_per_s is not None
            assert destination.rate_per_s * NOTIFY["spec"]["replicas"] <= SLACK_RATE_PER_S
