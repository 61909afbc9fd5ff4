"""Script jobs through the file server, from a real JetStream Object Store: the script runs with
its arguments and environment from a private file that is gone afterwards; what is refused."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import nats.aio.client
import nats.js
import pytest
from nats.js.object_store import ObjectStore

from services.agent.dispatch import JobContext
from services.agent.protocol import Job, JobOutcome
from services.agent.script import SCRIPTS_DIR, run
from services.domain.kinds.script import ScriptPayload
from services.executor.run import job_id
from tests.integration.file_jobs import (  # noqa: F401 (the fixtures agent, pool, services)
    DEVICE,
    agent_of_device,
    file_job,
    file_server,
    file_server_pool,
    services_connection,
)
from tests.integration.test_agent_command import gone

BUCKET = "deployx-files-script-test"
CHUNK = 128 * 1024  # nats-py's default chunk size


@pytest.fixture
async def store(services: nats.aio.client.Client) -> ObjectStore:
    return await services.jetstream().create_object_store(BUCKET)


class Device:
    """DEVICE's agent running script jobs, with a file server answering for the executor."""

    def __init__(self, pool: asyncpg.Pool, agent: nats.aio.client.Client, state: Path) -> None:
        self.pool, self.agent, self.state = pool, agent, state

    async def run(self, file_id: str, job_of: list[str] | None = None, **fields: Any) -> JobOutcome:
        """Runs a script job of file_id, of a run of a script task on job_of (DEVICE alone)."""
        execution_id = await file_job(self.pool, job_of or [DEVICE], file_id, "script")
        job = Job(
            job_id=job_id(execution_id, DEVICE),
            execution_id=execution_id,
            task_id="the-task",
            task_type="script",
            payload=msgspec.Raw(b"{}"),  # the runner is handed its payload decoded
            timeout_seconds=300,
        )
        context = JobContext(
            job=job, device_id=DEVICE, client=self.agent, state_dir=self.state, allow_roots=[]
        )
        payload = msgspec.convert({"file_id": file_id, **fields}, ScriptPayload)
        return await run(payload, context)

    def leftovers(self) -> list[Path]:
        return list((self.state / SCRIPTS_DIR).iterdir())


@pytest.fixture
async def device(
    pool: asyncpg.Pool,
    services: nats.aio.client.Client,
    agent: nats.aio.client.Client,
    tmp_path: Path,
) -> AsyncIterator[Device]:
    async with file_server(pool, services, BUCKET):
        yield Device(pool, agent, tmp_path / "state")


async def test_a_script_runs_with_its_arguments_and_environment_then_is_deleted(
    store: ObjectStore, device: Device
) -> None:
    script = (
        b'#!/bin/sh\nprintf "%s|" "$@"; echo\necho "$GREETING from $DEPLOYX_DEVICE_ID"\n'
        b'stat -c "%a" "$0"\necho oops >&2\nexit 3\n'
    )
    await store.put("report.sh", script)

    outcome = await device.run(
        "report.sh", args=["one", "two words", "--flag=x y", ""], env={"GREETING": "hello"}
    )

    assert (outcome.status, outcome.exit_code) == ("failed", 3), outcome
    assert outcome.error == "exited with code 3"
    assert outcome.stdout == "one|two words|--flag=x y||\nhello from dev-a\n700\n"
    assert outcome.stderr == "oops\n"
    assert outcome.details == {"sha256": hashlib.sha256(script).hexdigest(), "size": len(script)}
    assert device.leftovers() == []


async def test_an_interpreter_runs_a_script_without_a_shebang(
    store: ObjectStore, device: Device
) -> None:
    await store.put("args.py", b"import sys\nprint(sys.argv[1:])\n")

    outcome = await device.run("args.py", interpreter="python3", args=["a", "b c"])

    assert (outcome.status, outcome.exit_code, outcome.stdout) == ("success", 0, "['a', 'b c']\n")
    assert device.leftovers() == []


async def test_without_an_interpreter_a_script_needs_its_shebang(
    store: ObjectStore, device: Device, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    await store.put("bare.sh", f"touch {marker}\n".encode())

    outcome = await device.run("bare.sh")

    assert (outcome.status, outcome.exit_code) == ("failed", None)
    assert outcome.error == "the script has no #! line: give it one, or choose an interpreter"
    assert not marker.exists()
    assert device.leftovers() == []


async def test_a_script_past_its_timeout_is_killed_with_its_children(
    store: ObjectStore, device: Device, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    await store.put("slow.sh", f"echo started\nsleep 60 &\necho $! > {pid_file}\nwait\n".encode())

    outcome = await device.run("slow.sh", interpreter="sh", timeout_seconds=1)

    assert (outcome.status, outcome.error) == ("timeout", "timed out after 1 s")
    assert outcome.stdout == "started\n"
    assert gone(int(pid_file.read_text()))
    assert device.leftovers() == []


async def test_a_script_whose_bytes_changed_in_the_store_is_not_run(
    services: nats.aio.client.Client, store: ObjectStore, device: Device, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    await store.put("tampered.sh", b"#!/bin/sh\necho fine\n")
    # The recorded digest and size stay; the chunk behind them is another script.
    info = await store.get_info("tampered.sh")
    subject = f"$O.{BUCKET}.C.{info.nuid}"
    js = services.jetstream()
    await js.purge_stream(f"OBJ_{BUCKET}", subject=subject)
    await js.publish(subject, f"#!/bin/sh\ntouch {marker}\n".encode()[: info.size])

    outcome = await device.run("tampered.sh")

    assert (outcome.status, outcome.error) == ("failed", "file 'tampered.sh': sha256 mismatch")
    assert not marker.exists()
    assert device.leftovers() == []


async def test_a_script_of_another_devices_job_is_refused(
    store: ObjectStore, device: Device, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    await store.put("theirs.sh", f"#!/bin/sh\ntouch {marker}\n".encode())

    outcome = await device.run("theirs.sh", job_of=["dev-b"])

    assert (outcome.status, outcome.error) == (
        "failed",
        "file 'theirs.sh' is not available to this device",
    )
    assert not marker.exists()
    assert device.leftovers() == []
