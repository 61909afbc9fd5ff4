"""File jobs through the file server, from a real JetStream Object Store: bytes, mode, atomic
replace, refusals."""

from __future__ import annotations

import hashlib
import os
import pwd
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import nats.aio.client
import pytest
from nats.js.object_store import ObjectStore

from services.agent.file import deploy_file as deploy_typed
from services.agent.file_fetch import FileFetcher
from services.agent.protocol import JobOutcome
from services.domain.kinds.file import FilePayload
from tests.integration.file_jobs import (  # noqa: F401 (the fixtures agent, pool, services)
    DEVICE,
    agent_of_device,
    fetcher,
    file_job,
    file_server,
    file_server_pool,
    services_connection,
)

BUCKET = "deployx-files-test"
CHUNK = 128 * 1024  # nats-py's default chunk size
Source = Callable[[str], Awaitable[FileFetcher]]


@pytest.fixture
def js(services: nats.aio.client.Client) -> nats.js.JetStreamContext:
    return services.jetstream()


@pytest.fixture
async def store(js: nats.js.JetStreamContext) -> ObjectStore:
    return await js.create_object_store(BUCKET)


@pytest.fixture
async def source(
    pool: asyncpg.Pool, services: nats.aio.client.Client, agent: nats.aio.client.Client
) -> AsyncIterator[Source]:
    """With a file server running: the agent's fetcher for a job of DEVICE deploying a file."""

    async def for_file(file_id: str) -> FileFetcher:
        return fetcher(agent, DEVICE, await file_job(pool, [DEVICE], file_id))

    async with file_server(pool, services, BUCKET):
        yield for_file


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".deployx-tmp"))


async def rewrite_chunks(
    js: nats.js.JetStreamContext, store: ObjectStore, name: str, data: bytes
) -> None:
    """Replaces the object's chunks behind its back, keeping the recorded digest and size."""
    info = await store.get_info(name)
    subject = f"$O.{BUCKET}.C.{info.nuid}"
    await js.purge_stream(f"OBJ_{BUCKET}", subject=subject)
    for start in range(0, len(data), CHUNK):
        await js.publish(subject, data[start : start + CHUNK])


async def test_a_few_megabytes_land_byte_for_byte_with_mode_and_parents(
    store: ObjectStore, source: Source, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 777)
    await store.put("blob-1", data)
    destination = tmp_path / "a" / "b" / "c" / "app.bin"
    payload = {"file_id": "blob-1", "destination": str(destination), "mode": "0640"}
    outcome = await deploy_file(payload, await source("blob-1"), [tmp_path])
    assert outcome.status == "success", outcome
    assert destination.read_bytes() == data
    assert stat.S_IMODE(destination.stat().st_mode) == 0o640
    assert outcome.details == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "destination": str(destination),
    }
    assert leftovers(destination.parent) == []


async def test_an_empty_file_lands_too(store: ObjectStore, source: Source, tmp_path: Path) -> None:
    await store.put("empty", b"")
    destination = tmp_path / "empty.conf"
    payload = {"file_id": "empty", "destination": str(destination)}
    outcome = await deploy_file(payload, await source("empty"), [])
    assert outcome.status == "success", outcome
    assert destination.read_bytes() == b""
    assert stat.S_IMODE(destination.stat().st_mode) == 0o644


async def test_replaces_an_existing_file_atomically(
    store: ObjectStore, source: Source, tmp_path: Path
) -> None:
    destination = tmp_path / "app.conf"
    destination.write_bytes(b"old contents")
    await store.put("conf", b"new contents " * 50_000)
    with destination.open("rb") as old:
        payload = {"file_id": "conf", "destination": str(destination)}
        outcome = await deploy_file(payload, await source("conf"), [])
        assert outcome.status == "success", outcome
        # A rename, not a rewrite in place: whoever had the old file open still reads it whole.
        assert old.read() == b"old contents"
    assert destination.read_bytes() == b"new contents " * 50_000
    assert leftovers(tmp_path) == []


async def test_corrupted_object_fails_and_leaves_the_old_file(
    js: nats.js.JetStreamContext, store: ObjectStore, source: Source, tmp_path: Path
) -> None:
    data = os.urandom(1024 * 1024)
    await store.put("corrupt", data)
    await rewrite_chunks(js, store, "corrupt", data[:-1] + bytes([data[-1] ^ 0xFF]))
    destination = tmp_path / "app.bin"
    destination.write_bytes(b"old")
    payload = {"file_id": "corrupt", "destination": str(destination)}
    outcome = await deploy_file(payload, await source("corrupt"), [])
    assert outcome.status == "failed"
    assert outcome.error == "file 'corrupt': sha256 mismatch"
    assert destination.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


async def test_missing_object_fails_and_leaves_the_old_file(
    store: ObjectStore, source: Source, tmp_path: Path
) -> None:
    destination = tmp_path / "app.bin"
    destination.write_bytes(b"old")
    payload = {"file_id": "nope", "destination": str(destination)}
    outcome = await deploy_file(payload, await source("nope"), [])
    assert outcome.status == "failed"
    assert outcome.error == "file 'nope' is not in the object store"
    assert destination.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


async def test_object_whose_chunks_are_gone_fails_and_cleans_up(
    js: nats.js.JetStreamContext, store: ObjectStore, source: Source, tmp_path: Path
) -> None:
    info = await store.put("hollow", os.urandom(300_000))
    await js.purge_stream(f"OBJ_{BUCKET}", subject=f"$O.{BUCKET}.C.{info.nuid}")
    destination = tmp_path / "app.bin"
    destination.write_bytes(b"old")
    payload = {"file_id": "hollow", "destination": str(destination)}
    outcome = await deploy_file(payload, await source("hollow"), [])
    assert outcome.status == "failed"
    assert outcome.error == "file 'hollow' is incomplete in the object store"
    assert destination.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


async def test_with_no_file_server_the_download_times_out_and_cleans_up(
    pool: asyncpg.Pool, agent: nats.aio.client.Client, store: ObjectStore, tmp_path: Path
) -> None:
    await store.put("conf", b"x")
    execution_id = await file_job(pool, [DEVICE], "conf")
    destination = tmp_path / "app.bin"
    destination.write_bytes(b"old")
    payload = {"file_id": "conf", "destination": str(destination), "timeout_seconds": 1}
    outcome = await deploy_file(payload, fetcher(agent, DEVICE, execution_id), [])
    assert outcome.status == "timeout"
    assert outcome.error == "download of 'conf' timed out after 1 s"
    assert destination.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


async def test_a_file_not_of_this_devices_job_is_refused(
    pool: asyncpg.Pool,
    services: nats.aio.client.Client,
    agent: nats.aio.client.Client,
    store: ObjectStore,
    tmp_path: Path,
) -> None:
    await store.put("conf", b"for dev-b only")
    await store.put("other", b"not this job's")
    for_b = await file_job(pool, ["dev-b"], "conf")
    for_a = await file_job(pool, [DEVICE], "conf")
    command = await file_job(pool, [DEVICE], "conf", task_type="command")
    destination = tmp_path / "app.conf"
    attempts = [
        (fetcher(agent, DEVICE, for_b), "conf"),  # dev-b's job, asked for by dev-a
        (FileFetcher(agent, DEVICE, f"{for_b}:dev-b"), "conf"),  # dev-b's job id, as is
        (fetcher(agent, DEVICE, for_a), "other"),  # its own job, another file
        (fetcher(agent, DEVICE, command), "conf"),  # a job that is no file deployment
        (fetcher(agent, DEVICE, "no-such-execution"), "conf"),
    ]
    async with file_server(pool, services, BUCKET):
        for source, file_id in attempts:
            payload = {"file_id": file_id, "destination": str(destination)}
            outcome = await deploy_file(payload, source, [])
            assert (outcome.status, outcome.error) == (
                "failed",
                f"file {file_id!r} is not available to this device",
            )
    assert not destination.exists()
    assert leftovers(tmp_path) == []


async def test_destinations_outside_the_allowed_roots_are_refused(
    store: ObjectStore, source: Source, tmp_path: Path
) -> None:
    await store.put("conf", b"x")
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "link").symlink_to(outside)
    for destination in (
        outside / "app.conf",
        allowed / ".." / "outside" / "app.conf",
        allowed / "link" / "app.conf",  # a symlinked directory that leads out
    ):
        payload = {"file_id": "conf", "destination": str(destination)}
        outcome = await deploy_file(payload, await source("conf"), [allowed])
        assert outcome.status == "failed"
        assert outcome.error == (
            f"destination {destination} is outside the allowed roots ({allowed})"
        )
    assert list(outside.iterdir()) == []
    inside = allowed / "sub" / "app.conf"
    payload = {"file_id": "conf", "destination": str(inside)}
    outcome = await deploy_file(payload, await source("conf"), [allowed])
    assert outcome.status == "success", outcome


async def test_owner_is_set_and_an_unknown_owner_is_refused(
    store: ObjectStore, source: Source, tmp_path: Path
) -> None:
    await store.put("conf", b"owned")
    destination = tmp_path / "owned.conf"
    payload = {"file_id": "conf", "destination": str(destination), "owner": "no-such-user-x"}
    outcome = await deploy_file(payload, await source("conf"), [])
    assert outcome.status == "failed"
    assert outcome.error == "owner 'no-such-user-x': no such user or group on this device"
    assert not destination.exists()
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    nobody = pwd.getpwnam("nobody")
    payload["owner"] = f"nobody:{nobody.pw_gid}"
    outcome = await deploy_file(payload, await source("conf"), [])
    assert outcome.status == "success", outcome
    assert (destination.stat().st_uid, destination.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)


async def deploy_file(
    payload: dict[str, Any], source: FileFetcher, allow_roots: list[Path]
) -> JobOutcome:
    """The runner, given the payload as a user writes it and the agent decodes it."""
    return await deploy_typed(msgspec.convert(payload, FilePayload), source, allow_roots)
