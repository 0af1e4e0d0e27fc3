"""deploy/ checked without a container engine: promtool on the Prometheus rules (check and
unit tests), every metric the dashboard and the rules name is one the code exports, every
expression of the dashboard is valid PromQL, and every YAML file parses with the fields the
Kubernetes objects, docker-compose and the Dockerfile must carry."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from metrics import ApiMetrics, WorkerMetrics, metric_names

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "rules_test.yml"
DASHBOARD = DEPLOY / "grafana" / "license-server.json"
K8S = DEPLOY / "k8s" / "base"
# Series Prometheus makes itself, not the code.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool from PATH; installed with apt-get (Debian package `prometheus`) when missing,
    so `make test` works on a fresh machine."""
    found = shutil.which("promtool")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.fail(
            "promtool is missing and cannot be installed here (needs root and apt-get): "
            "install the Debian/Ubuntu package `prometheus`, or put promtool on PATH"
        )
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        [apt, "update", "-q"],
        [apt, "install", "-y", "-q", "--no-install-recommends", "prometheus"],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
    )
    if found is None:
        pytest.fail("apt-get installed `prometheus` but promtool is not on PATH")
    return found


def _run(command: list[str], cwd: Path) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# --- Prometheus rules and the dashboard -----------------------------------------------------


def test_promtool_check_rules(promtool: str) -> None:
    assert "SUCCESS" in _run([promtool, "check", "rules", str(RULES)], ROOT)


def test_promtool_test_rules(promtool: str) -> None:
    assert "SUCCESS" in _run([promtool, "test", "rules", RULES_TEST.name], RULES_TEST.parent)


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def _grafana_to_promql(expr: str) -> str:
    return expr.replace("$__rate_interval", "5m").replace("$__range", "1h")


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    exprs = _dashboard_exprs()
    assert exprs
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": _grafana_to_promql(expr)}
                    for n, expr in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    assert "SUCCESS" in _run([promtool, "check", "rules", str(path)], tmp_path)


_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "atan2"}
)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords,
    label names (in `{…}`, `by (…)`, `on (…)`…), durations, numbers or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", text):
        if match.group(1) not in _KEYWORDS:
            names.add(match.group(1))
    return names


def test_promql_metric_names_parser() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(activation_duration_seconds_bucket{job="a"}'
        "[$__rate_interval]))) / clamp_min(sum without (instance) (up == bool 1), 1e-9) "
        "and on (job) absent(worker_last_pass_timestamp_seconds offset 5m)"
    )
    assert promql_metric_names(expr) == {
        "activation_duration_seconds_bucket",
        "up",
        "worker_last_pass_timestamp_seconds",
    }


def test_every_metric_the_dashboard_and_rules_use_is_exported() -> None:
    exported = metric_names()
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    known = exported | recorded | PROMETHEUS_SERIES
    used: dict[str, set[str]] = {}
    for rule in _rules():
        for name in promql_metric_names(str(rule["expr"])):
            used.setdefault(name, set()).add(f"rules.yml {rule.get('record') or rule['alert']}")
    for expr in _dashboard_exprs():
        for name in promql_metric_names(expr):
            used.setdefault(name, set()).add("dashboard")
    unknown = {name: where for name, where in used.items() if name not in known}
    assert not unknown, f"names the code does not export: {unknown}"
    # Conversely every metric family the code exports is watched somewhere (SPEC §8).
    families = {
        family.name
        for metrics in (ApiMetrics(), WorkerMetrics())
        for family in metrics.registry.collect()
    }
    unwatched = {
        family
        for family in families
        if not any(name == family or name.startswith(family + "_") for name in used)
    }
    assert not unwatched, f"exported but in no panel or rule: {sorted(unwatched)}"


def test_dashboard_has_the_required_panels_and_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])
    for wanted in (
        "throughput by code",
        "p50 / p99",
        "errors",
        "lag",
        "cases by stage",
        "notifications by outcome",
        "disabled keys",
    ):
        assert wanted in titles, wanted
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uids = {source["uid"] for source in provisioned["datasources"]}
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in uids
    providers = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/license-server.yml").read_text()
    )
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


# --- every YAML file, docker-compose, the Dockerfile ------------------------------------------


def _yaml_documents(path: Path) -> list[Any]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def test_every_yaml_file_under_deploy_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])
    assert len(files) >= 15
    for path in files:
        assert _yaml_documents(path), path


def test_docker_compose_runs_the_whole_system() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("api", "worker", "redis", "postgres", "migrate", "prometheus", "grafana"):
        assert name in services, name
    assert "mailpit" in services  # the SMTP catcher
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command
    assert "--appendfsync everysec" in redis_command
    assert services["migrate"]["command"] == ["migrate"]
    assert services["worker"]["entrypoint"] == ["fraud-worker"]
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        environment = services[name]["environment"]
        assert environment["SMTP_URL"] == "smtp://mailpit:1025"
        assert environment["REDIS_URL"].startswith("redis://redis:")
    prometheus_mounts = " ".join(services["prometheus"]["volumes"])
    assert "./prometheus/rules.yml:/etc/prometheus/rules.yml" in prometheus_mounts
    grafana_mounts = " ".join(services["grafana"]["volumes"])
    assert "./grafana/provisioning:/etc/grafana/provisioning" in grafana_mounts
    assert "./grafana/license-server.json:/var/lib/grafana/dashboards/" in grafana_mounts
    scrape = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    assert set(jobs) == {"activation-api", "fraud-worker"}  # the jobs rules.yml names
    assert scrape["rule_files"] == ["/etc/prometheus/rules.yml"]
    for mount in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (DEPLOY / source).exists(), source


def test_dockerfile_is_slim_non_root_and_without_dev_dependencies() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", text, re.M)[-1] == "python:3.11-slim"
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    installs = [line for line in text.splitlines() if "pip " in line and not line.startswith("#")]
    assert installs
    assert not [line for line in installs if "[" in line or "-e " in line]  # no extras, no dev
    assert re.search(r"^ENTRYPOINT \[\"activation-server\"\]", text, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".venv", ".git", "tests", "*.pem", ".env"):
        assert entry in ignored, entry


# --- Kubernetes ------------------------------------------------------------------------------


def _k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, "kustomization.yaml must list every manifest"
    objects = {}
    for name in sorted(listed):
        for document in _yaml_documents(K8S / name):
            assert {"apiVersion", "kind", "metadata"} <= set(document), name
            objects[(document["kind"], document["metadata"]["name"])] = document
    return objects


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def _check_hardened(pod: dict[str, Any]) -> None:
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] != 0
    for container in pod["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert {"cpu", "memory"} <= set(resources["limits"])
        assert container["image"].split(":")[0] == "license-server"  # kustomize `images`
        sources = {next(iter(source.values()))["name"] for source in container["envFrom"]}
        assert sources == {"license-server-config", "license-server-secrets"}


def _probe_path(container: dict[str, Any], probe: str) -> str:
    path: str = container[probe]["httpGet"]["path"]
    return path


def test_k8s_api_deployment_hpa_and_pdb() -> None:
    objects = _k8s_objects()
    api = objects[("Deployment", "license-api")]
    pod = _pod(api)
    _check_hardened(pod)
    (container,) = pod["containers"]
    assert _probe_path(container, "readinessProbe") == "/readyz"
    assert _probe_path(container, "livenessProbe") == "/healthz"
    assert container["args"][0] == "serve"
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert api["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = objects[("HorizontalPodAutoscaler", "license-api")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "license-api",
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pdb = objects[("PodDisruptionBudget", "license-api")]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for service in ("license-api", "license-admin"):
        assert objects[("Service", service)]["spec"]["selector"].items() <= labels.items()


def test_k8s_worker_deployment_has_a_grace_period_that_fits_its_drain() -> None:
    objects = _k8s_objects()
    worker = objects[("Deployment", "license-worker")]
    pod = _pod(worker)
    _check_hardened(pod)
    (container,) = pod["containers"]
    assert container["command"] == ["fraud-worker"]
    # A pass (the drain on SIGTERM) is bounded well under 30 s; the default 30 s is too tight.
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert _probe_path(container, "livenessProbe") == "/healthz"
    assert _probe_path(container, "readinessProbe") == "/healthz"
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert (
        objects[("PodDisruptionBudget", "license-worker")]["spec"]["selector"][
            "matchLabels"
        ].items()
        <= labels.items()
    )


def test_k8s_migration_job_config_map_and_secrets() -> None:
    objects = _k8s_objects()
    job = objects[("Job", "license-migrate")]
    pod = job["spec"]["template"]["spec"]
    _check_hardened(pod)
    (container,) = pod["containers"]
    command = [*container.get("command", []), *container.get("args", [])]
    assert command == ["activation-server", "migrate"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    config = objects[("ConfigMap", "license-server-config")]["data"]
    assert {"REDIS_URL", "SIGNING_KEY_FILE", "HOST"} <= set(config)
    assert all(isinstance(value, str) for value in config.values())
    secrets = objects[("Secret", "license-server-secrets")]["stringData"]
    assert {"DATABASE_URL", "ADMIN_BOOTSTRAP_TOKEN"} <= set(secrets)
    key = objects[("Secret", "license-server-signing-key")]
    api_volumes = {
        volume["name"]: volume for volume in _pod(objects[("Deployment", "license-api")])["volumes"]
    }
    assert api_volumes["signing-key"]["secret"]["secretName"] == key["metadata"]["name"]


def test_worker_stop_grace_outlasts_the_longest_send_and_agrees_in_k8s_and_compose() -> None:
    """SIGTERM: the pass and the sends in hand (each cut off at its timeout) fit the grace, and
    the outbox lease outlasts a send (fraud/notify/sending.py)."""
    from fraud.notify.sending import LEASE_MARGIN, SendOptions

    options = SendOptions()
    pod = _pod(_k8s_objects()[("Deployment", "license-worker")])
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    grace = pod["terminationGracePeriodSeconds"]
    assert compose["services"]["worker"]["stop_grace_period"] == f"{grace}s"
    assert grace >= options.longest_timeout + 30  # + a pass in hand
    assert options.lease.total_seconds() >= options.longest_timeout + LEASE_MARGIN.total_seconds()
