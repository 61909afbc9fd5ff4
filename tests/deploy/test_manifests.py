"""The deployment files are valid for the tools that will read them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.infra.embedded_nats import nats_server_binary

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


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
        if not line.startswith("--from=")  # from another stage, not the build context
        for source in line.split()[:-1]
    ]
    assert sources, "the Dockerfile copies nothing"
    for source in sources:
        assert (DEPLOY.parent / source).exists(), source
