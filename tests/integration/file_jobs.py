"""File jobs as the executor records them, and the file server that hands out their files."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
import nats
import nats.aio.client
import pytest

from events.execution import ExecutionStarted
from events.task import TaskCreated, TaskDue
from services.agent.file_fetch import FileFetcher
from services.executor.file_server import FileServer
from services.executor.run import job_id
from services.infra.db import create_pool
from services.infra.nats_auth import agent_inbox_prefix
from services.infra.rejections import Rejections
from services.infra.store import append

DEVICE = "dev-a"  # the device whose agent the `agent` fixture is


async def file_job(
    db: asyncpg.Pool,
    device_ids: list[str],
    file_id: str,
    task_type: str = "file_deployment",
) -> str:
    """A run of a task handing file_id to its devices (a file deployment, or a script), started
    on device_ids; its execution id."""
    _, execution_id = await file_run(db, device_ids, file_id, task_type)
    return execution_id


async def file_run(
    db: asyncpg.Pool,
    device_ids: list[str],
    file_id: str,
    task_type: str = "file_deployment",
    *,
    destination: str = "/tmp/x",
    started_at: datetime | None = None,
    deadline: datetime | None = None,
) -> tuple[str, str]:
    """file_job's run, to land at destination, started at started_at (None: now) with the
    deadline its start recorded (None: as runs started before deadlines were recorded);
    (task id, execution id)."""
    task_id, execution_id = str(uuid.uuid4()), str(uuid.uuid4())
    now = started_at or datetime.now(UTC)
    payload = {"file_payload": {"file_id": file_id, "destination": destination}}
    if task_type == "command":
        payload = {"command_payload": {"command": f"echo {file_id}"}}
    if task_type == "script":
        payload = {"script_payload": {"file_id": file_id}}
    created = TaskCreated(
        task_id=task_id,
        user_id="ops",
        name="ship a file",
        task_type=task_type,
        recurrence_type="daily",
        recurrence_config={"time": "03:00"},
        device_ids=device_ids,
        task_payload=payload,
        created_at=now,
    )
    due = TaskDue(
        task_id=task_id, execution_id=execution_id, scheduled_for=now, trigger="manual", due_at=now
    )
    await append(db, task_id, task_type, [created, due], expected_version=0)
    started = ExecutionStarted(
        execution_id=execution_id,
        task_id=task_id,
        trigger="manual",
        scheduled_for=now,
        started_at=now,
        device_ids=device_ids,
        deadline=deadline,
    )
    await append(db, execution_id, task_type, [started], expected_version=0)
    return task_id, execution_id


def fetcher(client: nats.aio.client.Client, device_id: str, execution_id: str) -> FileFetcher:
    """What the agent of device_id uses for its job of that execution."""
    return FileFetcher(client, device_id, job_id(execution_id, device_id))


async def agent_connection(url: str, device_id: str) -> nats.aio.client.Client:
    """A client with the agent's inbox, as an agent connects (no login: an open server)."""
    return await nats.connect(url, inbox_prefix=agent_inbox_prefix(device_id))


@pytest.fixture(name="services")
async def services_connection(nats_url: str) -> AsyncIterator[nats.aio.client.Client]:
    """The services' NATS connection (the file server's, the test's object store)."""
    nc = await nats.connect(nats_url)
    try:
        yield nc
    finally:
        await nc.close()


@pytest.fixture(name="pool")
async def file_server_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(database_url, max_size=4)
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture(name="agent")
async def agent_of_device(nats_url: str) -> AsyncIterator[nats.aio.client.Client]:
    """DEVICE's agent's connection."""
    nc = await agent_connection(nats_url, DEVICE)
    try:
        yield nc
    finally:
        await nc.close()


@asynccontextmanager
async def file_server(
    db: asyncpg.Pool, client: nats.aio.client.Client, bucket: str
) -> AsyncIterator[FileServer]:
    server = FileServer(db, client, Rejections(), bucket)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
