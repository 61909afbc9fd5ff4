"""`deployx up` as a user runs it, from the outside: its servers take no anonymous logins, its
secrets are its own, and its demo agents (an unprivileged user under root) cannot read them."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest

from services.agent.protocol import heartbeat_subject, results_subject
from services.cli.demo_agents import AGENT_USERS, agent_user
from services.cli.up import read_env_file
from services.infra.embedded import free_port
from services.infra.nats_auth import Login
from tests.e2e.fleet import command_task, run_now
from tests.e2e.processes import ServiceProcess, wait_until
from tests.stack import Client

DEVICES = ["local-1", "local-2"]
SECRETS = ["admin-token", "deployx.env", "postgres-password", "nats-auth/service.json"]
AS_ROOT = os.geteuid() == 0


@dataclass
class Up:
    data_dir: Path
    api: Client
    process: ServiceProcess

    @property
    def env(self) -> dict[str, str]:
        """What `deployx up` wrote to deployx.env: its servers, with the services' logins."""
        return read_env_file(self.data_dir)


@pytest.fixture(scope="module")
async def up() -> AsyncIterator[Up]:
    """`deployx up --agents 2`, ready once /readyz answers and both agents are online."""
    # Our own directory, world-traversable (as a user's project directory usually is): under
    # root the embedded PostgreSQL and the demo agents run as other users.
    base = Path(tempfile.mkdtemp(prefix="deployx-up-"))
    os.chmod(base, 0o755)
    data_dir, logs = base / "data", base / "logs"
    os.mkdir(logs)
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("DEPLOYX_")}
    env["DEPLOYX_LOG_FORMAT"] = "json"
    command = ["up", "--data-dir", str(data_dir), "--port", str(port), "--agents", "2"]
    process = ServiceProcess("up", command, logs, env).start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                try:
                    async with session.get(f"{base_url}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(ready, 90, "deployx up to be ready", [process])
            api = Client(session, base_url, (data_dir / "admin-token").read_text().strip())

            async def agents_online() -> bool:
                status, devices = await api.get("/api/devices")
                online = {d["id"] for d in devices["items"] if d["online"]} if status == 200 else {}
                return set(DEVICES) <= set(online)

            await wait_until(agents_online, 60, "the demo agents to be online", [process])
            yield Up(data_dir, api, process)
    finally:
        process.terminate(timeout=60)
        shutil.rmtree(base, ignore_errors=True)


async def finished(up: Up, body: dict[str, Any]) -> dict[str, Any]:
    """Creates the task, runs it now, and returns the execution once it is over."""
    task_id, execution_id = await run_now(up.api, body)
    found: dict[str, Any] = {}

    async def done() -> bool:
        _, page = await up.api.get(f"/api/schedule/tasks/{task_id}/executions")
        for item in page["items"]:
            if item["id"] == execution_id and item["status"] != "running":
                found.update(item)
        return bool(found)

    await wait_until(done, 60, f"the run of {body['name']!r}", [up.process])
    return found


async def run_on(up: Up, device: str, command: str) -> dict[str, Any]:
    """Runs a shell command on a demo agent; that device's result."""
    execution = await finished(up, command_task(command, [device]))
    result: dict[str, Any] = execution["result"]["execution_details"][device]
    return result


async def test_a_demo_agent_cannot_read_the_secrets_of_the_data_directory(up: Up) -> None:
    me = await run_on(up, "local-1", "id -un; pwd; env | grep -c '^DEPLOYX_.*_URL=' || true")
    assert me["status"] == "success", me
    user, working_dir, urls = me["stdout"].split()
    # Its own working directory; none of the servers' URLs (and their logins) in its jobs' env.
    assert (working_dir, urls) == (str(up.data_dir / "agents" / "local-1"), "0")
    if AS_ROOT:
        assert user in AGENT_USERS
        assert pwd.getpwnam(user).pw_uid != 0
        for secret in SECRETS:
            stolen = await run_on(up, "local-1", f"cat {up.data_dir / secret}")
            assert stolen["status"] == "failed", (secret, stolen)
            assert "Permission denied" in stolen["stderr"], (secret, stolen)
            assert stolen["stdout"] == ""
    else:
        # Without root there is no other user to become: the agents are the invoking user's.
        assert user == pwd.getpwuid(os.geteuid()).pw_name


async def test_a_file_reaches_a_demo_agent_in_its_own_directory(up: Up) -> None:
    content = os.urandom(300_000)
    status, stored = await up.api.post(
        "/api/files?name=demo.bin",
        data=io.BytesIO(content),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert status == 201, stored
    destination = up.data_dir / "agents" / "local-2" / "deployed" / "demo.bin"
    body = {
        "name": "ship demo.bin",
        "task_type": "file_deployment",
        "recurrence_type": "daily",
        "recurrence_config": {"time": "03:00"},
        "device_ids": ["local-2"],
        "task_payload": {
            "file_payload": {"file_id": stored["file_id"], "destination": str(destination)}
        },
    }
    execution = await finished(up, body)
    assert execution["status"] == "success", execution
    assert destination.read_bytes() == content
    user = agent_user()  # the same here as for `up`: both run as the same user
    owner = os.geteuid() if user is None else pwd.getpwnam(user).pw_uid
    assert destination.stat().st_uid == owner


async def nats_login(address: str, connect: dict[str, Any]) -> bytes:
    """What the server says to a client that sends CONNECT (then PING) in the plain protocol."""
    host, _, port = address.partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        info = await reader.readline()
        assert info.startswith(b"INFO "), info
        writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()


async def nats_exchange(address: str, connect: dict[str, Any], command: str) -> bytes:
    """Logs in with CONNECT, sends one command (a PUB of an empty message, say), then PING: the
    server's answer to the command (an -ERR line), or b"" if it took it without a word."""
    host, _, port = address.partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        assert (await reader.readline()).startswith(b"INFO ")
        login = b"CONNECT " + json.dumps(connect).encode()
        writer.write(login + b"\r\n" + command.encode() + b"\r\n\r\nPING\r\n")
        await writer.drain()
        answer = (await reader.readline()).rstrip(b"\r\n")
        return b"" if answer == b"PONG" else answer
    finally:
        writer.close()
        await writer.wait_closed()


async def test_the_embedded_nats_refuses_anonymous_clients(up: Up) -> None:
    services_url = up.env["DEPLOYX_NATS_URL"]
    login, _, address = services_url.removeprefix("nats://").rpartition("@")
    user, _, password = login.partition(":")
    assert user == "deployx-services"
    plain = {"verbose": False, "pedantic": False}
    for anonymous in (plain, {**plain, "user": user}, {**plain, "user": user, "pass": "guess"}):
        assert await nats_login(address, anonymous) == b"-ERR 'Authorization Violation'\r\n"
    assert await nats_login(address, {**plain, "user": user, "pass": password}) == b"PONG\r\n"


async def test_the_embedded_nats_fences_each_demo_agent_as_in_production(up: Up) -> None:
    address = up.env["DEPLOYX_NATS_URL"].rpartition("@")[2]
    for device, other in zip(DEVICES, reversed(DEVICES), strict=True):
        creds = up.data_dir / "nats-auth" / "agents" / f"{device}.json"
        login = msgspec.json.decode(creds.read_bytes(), type=Login)
        assert login.password not in up.env["DEPLOYX_NATS_URL"]
        agent = {"verbose": False, "pedantic": False, "user": login.user, "pass": login.password}
        # Its own heartbeat goes through; another device's results, or the events, do not.
        assert await nats_exchange(address, agent, f"PUB {heartbeat_subject(device)} 0") == b""
        for subject in (results_subject(other), "deployx.events.command.TaskDue"):
            refused = f"-ERR 'Permissions Violation for Publish to \"{subject}\"'"
            assert await nats_exchange(address, agent, f"PUB {subject} 0") == refused.encode()


async def test_the_embedded_postgres_refuses_a_login_without_the_password(up: Up) -> None:
    dsn = up.env["DEPLOYX_DATABASE_URL"]
    scheme, _, rest = dsn.partition("://")
    login, _, address = rest.rpartition("@")
    user, _, password = login.partition(":")
    assert (user, len(password) > 20) == ("postgres", True)
    for attempt in (f"{scheme}://{user}@{address}", f"{scheme}://{user}:guess@{address}"):
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(attempt)
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("select 1") == 1
    finally:
        await conn.close()


async def test_every_secret_is_readable_by_its_owner_only(up: Up) -> None:
    secrets = [up.data_dir / secret for secret in SECRETS]
    secrets += sorted((up.data_dir / "nats-auth").rglob("*.json"))
    secrets.append(up.data_dir / "nats-auth" / "auth.conf")
    modes = {
        str(path.relative_to(up.data_dir)): stat.S_IMODE(path.stat().st_mode) for path in secrets
    }
    assert set(modes.values()) == {0o600}, modes
    for private in ("nats", "nats-auth", "postgres"):
        assert stat.S_IMODE((up.data_dir / private).stat().st_mode) == 0o700, private
