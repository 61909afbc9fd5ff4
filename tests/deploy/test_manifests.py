"""The deployment files are valid for the tools that will read them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.infra.embedded_nats import nats_server_binary

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES = DEPLOY / "kubernetes" / "base"
KUBERNETES_VERSION = "1.31.0"


def test_the_compose_file_follows_the_compose_specification() -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_two_replicas_of_every_service() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    for name in ("api", "projector", "ticker", "relay", "webhooks", "sealer"):
        assert services[name]["deploy"]["replicas"] == 2, name
    for task_type in ("command", "software", "file"):
        assert services[f"executor-{task_type}"]["deploy"]["replicas"] == 2
    assert {"nats-1", "nats-2", "nats-3", "postgres", "agent-1", "agent-2"} <= set(services)


def test_compose_agents_get_none_of_the_services_settings() -> None:
    """An agent's jobs inherit its environment: it must not hold the database URL or the
    services' NATS login, which the services share through one environment block."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    secrets = {
        name: value
        for name, value in services["api"]["environment"].items()
        if name in ("DEPLOYX_DATABASE_URL", "DEPLOYX_NATS_URL")
    }
    assert len(secrets) == 2
    for agent in ("agent-1", "agent-2"):
        environment = services[agent].get("environment", {})
        leaked = {name for name, value in secrets.items() if value in environment.values()}
        assert not leaked and not set(secrets) & set(environment), (agent, environment)


def kubernetes_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        documents += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


@pytest.mark.parametrize(
    "document",
    [doc for _, doc in kubernetes_documents()],
    ids=[f"{name}:{doc['kind']}/{doc['metadata']['name']}" for name, doc in kubernetes_documents()],
)
def test_each_kubernetes_resource_matches_its_schema(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    manifests = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def test_every_deployment_has_probes_and_resource_requests() -> None:
    for _, document in kubernetes_documents():
        if document["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for container in document["spec"]["template"]["spec"]["containers"]:
            assert container["resources"]["requests"], document["metadata"]["name"]
            assert container["livenessProbe"]["httpGet"]["path"].startswith("/healthz")
            readiness = container["readinessProbe"]["httpGet"]["path"]
            # NATS is ready when it is healthy; every DeployX service has its own /readyz.
            assert readiness == (
                "/healthz" if document["metadata"]["name"] == "nats" else "/readyz"
            )


@pytest.mark.parametrize("config", ["nats-1.conf", "nats-2.conf", "nats-3.conf"])
def test_the_nats_cluster_configs_are_valid(config: str) -> None:
    result = subprocess.run(
        [str(nats_server_binary()), "-t", "-c", config],
        cwd=DEPLOY / "nats",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_copies_only_what_exists() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    sources = [
        source
        for line in re.findall(r"^COPY (.+)$", dockerfile, re.MULTILINE)
        for source in line.split()[:-1]
    ]
    assert sources, "the Dockerfile copies nothing"
    for source in sources:
        assert (DEPLOY.parent / source).exists(), source
