"""Per-agent NATS users: an agent reaches its own subjects and the files bucket, nothing else."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import nats
import nats.aio.client
import nats.aio.msg
import pytest

from services.agent.files import deploy_file
from services.agent.main import AgentConfig, connect
from services.agent_protocol import FILES_BUCKET, jobs_subject, results_subject
from services.embedded_nats import EmbeddedNats
from services.nats_auth import Login, agent_inbox_prefix, write_auth_files


class Server:
    def __init__(self, url: str, auth_dir: Path, service: Login) -> None:
        self.url, self.auth_dir, self.service = url, auth_dir, service

    def with_login(self, login: Login) -> str:
        return self.url.replace("nats://", f"nats://{login.user}:{login.password}@")

    def agent_creds(self, device_id: str) -> Path:
        return self.auth_dir / "agents" / f"{device_id}.json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    auth_dir = tmp_path_factory.mktemp("auth")
    service = write_auth_files(auth_dir, ["dev-a", "dev-b"])
    nats_server = EmbeddedNats(
        tmp_path_factory.mktemp("nats"), extra_args=["-c", str(auth_dir / "auth.conf")]
    )
    nats_server.start()
    try:
        yield Server(nats_server.url, auth_dir, service)
    finally:
        nats_server.stop()


@pytest.fixture
async def services_client(server: Server) -> AsyncIterator[nats.aio.client.Client]:
    client = await nats.connect(server.with_login(server.service))
    yield client
    await client.drain()


async def agent_client(server: Server, device_id: str, errors: list[str]) -> nats.aio.client.Client:
    """Connects as the agent does (its login, its inbox), recording the server's refusals."""
    login = msgspec.json.decode(server.agent_creds(device_id).read_bytes(), type=Login)

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    return await nats.connect(
        server.url,
        user=login.user,
        password=login.password,
        inbox_prefix=agent_inbox_prefix(device_id),
        error_cb=on_error,
    )


async def refusal(errors: list[str], text: str) -> None:
    """The server's -ERR reaches the client's error callback a moment after the refusal."""
    for _ in range(500):
        if any(text in error for error in errors):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the server did not refuse ({text}): {errors}")


async def test_an_agent_cannot_read_another_agents_jobs(
    server: Server, services_client: nats.aio.client.Client, tmp_path: Path
) -> None:
    errors: list[str] = []
    rogue = await agent_client(server, "dev-a", errors)
    received: list[str] = []
    own_job = asyncio.Event()

    async def on_message(msg: nats.aio.msg.Msg) -> None:
        received.append(msg.subject)
        if msg.subject == jobs_subject("dev-a"):
            own_job.set()

    await rogue.subscribe(jobs_subject("dev-b"), cb=on_message)
    await rogue.subscribe(jobs_subject("dev-a"), cb=on_message)
    await rogue.flush()
    await services_client.publish(jobs_subject("dev-b"), b"secret work for dev-b")
    await services_client.publish(jobs_subject("dev-a"), b"work for dev-a")
    await services_client.flush()
    async with asyncio.timeout(5):
        await own_job.wait()  # sent after dev-b's: had dev-b's come, it came first

    assert received == [jobs_subject("dev-a")]
    await refusal(errors, "permissions violation for subscription")
    await rogue.close()


async def test_an_agent_cannot_publish_a_result_as_another_device(
    server: Server, services_client: nats.aio.client.Client, tmp_path: Path
) -> None:
    errors: list[str] = []
    rogue = await agent_client(server, "dev-a", errors)
    heard: list[str] = []
    own_result = asyncio.Event()

    async def on_result(msg: nats.aio.msg.Msg) -> None:
        heard.append(msg.subject)
        if msg.subject == results_subject("dev-a"):
            own_result.set()

    await services_client.subscribe("deployx.agents.*.results", cb=on_result)
    await services_client.flush()
    await rogue.publish(results_subject("dev-b"), b'{"job_id": "x", "state": "finished"}')
    await rogue.publish(results_subject("dev-a"), b'{"job_id": "y", "state": "accepted"}')
    await rogue.flush()
    async with asyncio.timeout(5):
        await own_result.wait()

    assert heard == [results_subject("dev-a")]
    await refusal(errors, "permissions violation for publish")
    await rogue.close()


async def test_an_agent_with_its_credentials_can_fetch_a_deployment_file(
    server: Server, services_client: nats.aio.client.Client, tmp_path: Path
) -> None:
    store = await services_client.jetstream().create_object_store(FILES_BUCKET)
    content = os.urandom(512 * 1024)
    await store.put("f-1", content)
    agent = await connect(
        AgentConfig(
            device_id="dev-a",
            nats_url=server.url,
            state_dir=tmp_path,
            creds=server.agent_creds("dev-a"),
        )
    )
    destination = tmp_path / "out" / "app.bin"

    outcome = await deploy_file(
        {"file_id": "f-1", "destination": str(destination), "mode": "0600"},
        await agent.jetstream().object_store(FILES_BUCKET),
        [],
    )

    assert outcome.status == "success", outcome
    assert outcome.details["sha256"] == hashlib.sha256(content).hexdigest()
    assert destination.read_bytes() == content
    await agent.close()


def test_auth_files_keep_existing_logins_when_an_agent_is_added(tmp_path: Path) -> None:
    first = write_auth_files(tmp_path, ["dev-a"])
    dev_a = msgspec.json.decode((tmp_path / "agents" / "dev-a.json").read_bytes(), type=Login)
    again = write_auth_files(tmp_path, ["dev-b"])
    conf = (tmp_path / "auth.conf").read_text()
    assert again == first
    assert dev_a.password in conf
    assert '"user": "agent-dev-b"' in conf
