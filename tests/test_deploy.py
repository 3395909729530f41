"""The deployment files (deploy/, .dockerignore) agree with the code: settings, commands, paths."""

from __future__ import annotations

import ast
import json
import re
import shlex
import tomllib
from dataclasses import replace
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from iam import settings as settings_module
from iam.app import create_app
from iam.db import migrate
from iam.db.store import Store
from iam.services.sms import ConsoleSms
from iam.web import STATIC_DIR, TEMPLATES_DIR

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SETTINGS_SOURCE = (ROOT / "iam" / "settings.py").read_text()
SETTINGS = {"IAM_" + name for name in re.findall(r'text\("([A-Z_]+)"', SETTINGS_SOURCE)}
DEPLOY_FILES = [*sorted(DEPLOY.rglob("*.*")), DEPLOY / "Dockerfile", ROOT / "docs" / "deploy.md"]


def manifests() -> dict[str, dict]:
    """Every object under deploy/k8s by kind (each file holds one); CronJobs, of which there
    are several, by `CronJob/<name>`."""
    objects = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            key = document["kind"]
            if key == "CronJob":
                key = f"CronJob/{document['metadata']['name']}"
            assert key not in objects, f"two {key} objects"
            objects[key] = document
    return objects


def cronjob_container(name: str) -> dict:
    (container,) = manifests()[f"CronJob/{name}"]["spec"]["jobTemplate"]["spec"]["template"][
        "spec"
    ]["containers"]
    return container


def containers(kind: str) -> list[dict]:
    return manifests()[kind]["spec"]["template"]["spec"]["containers"]


def dockerfile_json(instruction: str) -> list[str]:
    line = re.search(rf"^{instruction} (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert line, f"no exec-form {instruction} in the Dockerfile"
    return json.loads(line.group(1))


def unit_lines(key: str, unit: str = "iam.service") -> list[list[str]]:
    text = (DEPLOY / unit).read_text()
    return [shlex.split(value) for value in re.findall(rf"^{key}=(.+)$", text, re.M)]


def test_settings_are_found_in_the_source() -> None:
    assert {"IAM_ISSUER", "IAM_SECRET_KEY", "IAM_DATABASE_URL", "IAM_REDIS_URL"} <= SETTINGS


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda path: path.name)
def test_each_manifest_is_one_named_kubernetes_object(path: Path) -> None:
    (document,) = yaml.safe_load_all(path.read_text())
    assert document["apiVersion"] and document["kind"] and document["metadata"]["name"]


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_iam_name_in_deploy_files_is_a_setting(path: Path) -> None:
    assert set(re.findall(r"\bIAM_[A-Z_]+", path.read_text())) <= SETTINGS


def test_the_env_example_names_every_setting() -> None:
    example = (DEPLOY / "iam.env.example").read_text()
    assert set(re.findall(r"^#?(IAM_[A-Z_]+)=", example, re.M)) == SETTINGS


def test_pods_take_their_environment_from_the_configmap_and_secret_only() -> None:
    objects = manifests()
    config, secret = objects["ConfigMap"], objects["Secret"]
    config_keys, secret_keys = set(config["data"]), set(secret["stringData"])
    assert not config_keys & secret_keys
    assert {"IAM_SECRET_KEY", "IAM_DATABASE_URL", "IAM_REDIS_URL"} <= secret_keys
    assert "IAM_ISSUER" in config_keys
    for kind in ("Deployment", "Job"):
        for container in containers(kind):
            assert "env" not in container, f"{kind}: literal env outside the configmap/secret"
            assert container["envFrom"] == [
                {"configMapRef": {"name": config["metadata"]["name"]}},
                {"secretRef": {"name": secret["metadata"]["name"]}},
            ]


def test_probes_and_scrape_path_are_served(app) -> None:
    """From loopback: the Dockerfile's health check, and what IAM_METRICS_ALLOW_CIDRS allows
    by default (the kubelet's probes may come from anywhere: only /metrics is guarded)."""
    client = TestClient(app, base_url="https://testserver", client=("127.0.0.1", 50000))
    deployment = manifests()["Deployment"]
    (container,) = containers("Deployment")
    probes = [container[name] for name in ("startupProbe", "livenessProbe", "readinessProbe")]
    assert {probe["httpGet"]["port"] for probe in probes} == {container["ports"][0]["name"]}
    healthcheck = re.search(r"127\.0\.0\.1:8000(/\w+)", (DEPLOY / "Dockerfile").read_text())
    paths = {probe["httpGet"]["path"] for probe in probes}
    paths |= {deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]}
    paths |= {healthcheck.group(1)}
    assert {"/healthz", "/readyz", "/metrics"} <= paths
    for path in paths:
        assert client.get(path).status_code == 200, path


def test_the_configmap_lets_the_pod_network_scrape_metrics(
    database_url: str, store: Store, sms: ConsoleSms
) -> None:
    """Prometheus scrapes each pod from the pod network, not from loopback; the public is still
    refused, and the kubelet's probes (from the node) are not guarded."""
    cidrs = manifests()["ConfigMap"]["data"]["IAM_METRICS_ALLOW_CIDRS"]
    environ = {"IAM_SECRET_KEY": "k" * 40, "IAM_METRICS_ALLOW_CIDRS": cidrs}
    loaded = settings_module.load(environ, env_file=DEPLOY / "no.env")
    app = create_app(replace(loaded, database_url=database_url), store=store, sms=sms)
    scraper = TestClient(app, client=(str(next(loaded.metrics_allow_cidrs[0].hosts())), 50000))
    outsider = TestClient(app, client=("203.0.113.9", 50000))
    assert scraper.get("/metrics").status_code == 200
    assert outsider.get("/metrics").status_code == 403
    (container,) = containers("Deployment")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert outsider.get(container[probe]["httpGet"]["path"]).status_code == 200, probe


def test_the_service_reaches_the_container_port() -> None:
    objects = manifests()
    (port,) = objects["Service"]["spec"]["ports"]
    (container,) = containers("Deployment")
    assert port["port"] == 80 and port["targetPort"] == container["ports"][0]["name"]
    assert container["ports"][0]["containerPort"] == 8000
    assert (
        objects["Deployment"]["spec"]["selector"]["matchLabels"]
        == objects["Service"]["spec"]["selector"]
    )


def test_the_migration_job_runs_db_upgrade() -> None:
    (container,) = containers("Job")
    assert container["command"] + container.get("args", []) == ["iam", "db", "upgrade"]
    (deployed,) = containers("Deployment")
    assert container["image"] == deployed["image"]


def test_the_prune_cronjob_runs_db_prune_like_the_servers() -> None:
    container = cronjob_container("iam-prune")
    assert container["command"] + container.get("args", []) == ["iam", "db", "prune"]
    (deployed,) = containers("Deployment")
    assert container["image"] == deployed["image"]
    assert container["envFrom"] == deployed["envFrom"]


def test_the_prune_timer_starts_db_prune() -> None:
    (start,) = unit_lines("ExecStart", "iam-prune.service")
    assert Path(start[0]).name == "iam" and start[1:] == ["db", "prune"]
    assert unit_lines("EnvironmentFile", "iam-prune.service") == [["/etc/iam/iam.env"]]
    assert unit_lines("OnCalendar", "iam-prune.timer") == [["hourly"]]


def test_the_sync_cronjob_runs_corps_sync_hourly_like_the_servers() -> None:
    cronjob = manifests()["CronJob/iam-corps-sync"]
    minute, *every = cronjob["spec"]["schedule"].split()
    assert minute.isdigit() and every == ["*", "*", "*", "*"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"  # a slow run is never doubled
    container = cronjob_container("iam-corps-sync")
    assert container["command"] + container.get("args", []) == ["iam", "corps", "sync"]
    (deployed,) = containers("Deployment")
    assert container["image"] == deployed["image"]
    assert container["envFrom"] == deployed["envFrom"]


def test_the_sync_timer_starts_corps_sync_hourly() -> None:
    (start,) = unit_lines("ExecStart", "iam-corps-sync.service")
    assert Path(start[0]).name == "iam" and start[1:] == ["corps", "sync"]
    assert unit_lines("EnvironmentFile", "iam-corps-sync.service") == [["/etc/iam/iam.env"]]
    assert unit_lines("OnCalendar", "iam-corps-sync.timer") == [["hourly"]]


def test_the_systemd_unit_migrates_then_serves() -> None:
    (start,) = unit_lines("ExecStart")
    assert Path(start[0]).name == "iam" and start[1] == "serve"
    assert [cmd[1:] for cmd in unit_lines("ExecStartPre")] == [["db", "upgrade"]]
    assert unit_lines("EnvironmentFile") == [["/etc/iam/iam.env"]]


def test_the_image_serves_on_all_interfaces_of_the_exposed_port() -> None:
    command = dockerfile_json("ENTRYPOINT") + dockerfile_json("CMD")
    assert command[:2] == ["iam", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = command[command.index("--port") + 1]
    assert re.search(rf"^EXPOSE {port}$", (DEPLOY / "Dockerfile").read_text(), re.M)


def test_the_image_keeps_the_source_layout() -> None:
    """web.py and migrate.py find these next to the iam/ package: the Dockerfile must copy each
    to the same place under its WORKDIR, and .dockerignore must not leave it out."""
    needed = {TEMPLATES_DIR, STATIC_DIR, migrate.ROOT / "alembic.ini", migrate.ROOT / "migrations"}
    names = {path.relative_to(ROOT).as_posix() for path in needed} | {"iam"}
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^WORKDIR /app$", dockerfile, re.M)
    copied = set()
    for line in re.findall(r"^COPY (.+)$", dockerfile, re.M):
        *sources, target = line.split()
        if target in ("./", "/app/"):
            copied |= set(sources)
        elif len(sources) == 1 and target in (f"./{sources[0]}", f"/app/{sources[0]}"):
            copied.add(sources[0])
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert names <= copied - ignored


def _distribution_names(requirements: list[str]) -> set[str]:
    names = (re.match(r"[A-Za-z0-9._-]+", requirement).group() for requirement in requirements)
    return {re.sub(r"[-_.]+", "-", name).lower() for name in names}


def test_the_image_installs_the_server_without_extras() -> None:
    """The image's pip install names no extra, so the code it runs (`iam serve`, dev mode
    included) imports no package that only the `demo` or `test` extra brings (PyJWT, httpx2...).
    The one exception: the demo's relying parties, run by `iam demo` alone."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    installs = re.findall(r"^RUN pip install ([^\n&\\]+)", dockerfile, re.M)
    assert installs and not any("[" in install for install in installs)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _distribution_names(project["dependencies"])
    extras = set().union(*map(_distribution_names, project["optional-dependencies"].values()))
    assert {"pyjwt", "httpx2"} <= extras - runtime
    providers = {
        module: _distribution_names(distributions)
        for module, distributions in packages_distributions().items()
    }
    imported = set()
    for path in sorted((ROOT / "iam").rglob("*.py")):
        if path.relative_to(ROOT).as_posix() == "iam/devtools/demo_apps.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    extra_only = {
        module for module in imported if providers.get(module, set()) & (extras - runtime)
    }
    assert "argon2" in imported and "jwt" not in imported
    assert extra_only == set()
