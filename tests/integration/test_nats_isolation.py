"""Per-agent NATS users: an agent reaches its own subjects and the files bucket, nothing else."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import nats.aio.client
import nats.aio.msg
import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.object_store import ObjectStore
from prometheus_client import REGISTRY

from services.agent.file import deploy_file as deploy_typed
from services.agent.file_fetch import FileFetcher
from services.agent.file_protocol import STATUS, ChunkRequest, files_subject
from services.agent.main import AgentConfig, connect
from services.agent.protocol import (
    FILES_BUCKET,
    JobOutcome,
    heartbeat_subject,
    jobs_subject,
    results_subject,
)
from services.domain.kinds.file import FilePayload
from services.engine.relay import STREAM, ensure_stream
from services.executor.run import job_id
from services.infra.db import create_pool
from services.infra.embedded_nats import EmbeddedNats
from services.infra.nats_auth import Login, agent_inbox_prefix, write_auth_files
from tests.integration.file_jobs import file_job, file_server

FILES_STREAM = f"OBJ_{FILES_BUCKET}"


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


async def settled(client: nats.aio.client.Client) -> None:
    """Until the server has everything the client sent so far (its subscriptions in place).

    nats-py 2.16 writes a flush's PING straight to the socket, ahead of commands still queued
    for its flusher: one flush may come back before a SUB sent earlier reached the server. The
    second PING leaves after the flusher ran (it was woken before the first PONG could come).
    """
    await client.flush()
    await client.flush()


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
    await settled(rogue)
    await services_client.publish(jobs_subject("dev-b"), b"secret work for dev-b")
    await services_client.publish(jobs_subject("dev-a"), b"work for dev-a")
    await settled(services_client)
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
    await settled(services_client)
    await rogue.publish(results_subject("dev-b"), b'{"job_id": "x", "state": "finished"}')
    await rogue.publish(results_subject("dev-a"), b'{"job_id": "y", "state": "accepted"}')
    await settled(rogue)
    async with asyncio.timeout(5):
        await own_result.wait()

    assert heard == [results_subject("dev-a")]
    await refusal(errors, "permissions violation for publish")
    await rogue.close()


@pytest.fixture
async def files(
    services_client: nats.aio.client.Client, database_url: str
) -> AsyncIterator[asyncpg.Pool]:
    """A file server on the services' login, the files bucket, and the event log it reads."""
    pool = await create_pool(database_url, max_size=4)
    js = services_client.jetstream()
    await js.create_object_store(FILES_BUCKET)
    try:
        async with file_server(pool, services_client, FILES_BUCKET):
            yield pool
    finally:
        await js.delete_object_store(FILES_BUCKET)
        await pool.close()


def agent_config(server: Server, device_id: str, state_dir: Path) -> AgentConfig:
    creds = server.agent_creds(device_id)
    return AgentConfig(device_id=device_id, nats_url=server.url, state_dir=state_dir, creds=creds)


async def test_an_agent_fetches_the_file_of_its_own_job_from_the_file_server(
    server: Server, services_client: nats.aio.client.Client, files: asyncpg.Pool, tmp_path: Path
) -> None:
    store = await services_client.jetstream().object_store(FILES_BUCKET)
    content = os.urandom(512 * 1024 + 3)
    await store.put("f-a", content)
    execution_id = await file_job(files, ["dev-a"], "f-a")
    agent = await connect(agent_config(server, "dev-a", tmp_path))
    destination = tmp_path / "out" / "app.bin"

    outcome = await deploy_file(
        {"file_id": "f-a", "destination": str(destination), "mode": "0600"},
        FileFetcher(agent, "dev-a", job_id(execution_id, "dev-a")),
        [],
    )

    assert outcome.status == "success", outcome
    assert outcome.details["sha256"] == hashlib.sha256(content).hexdigest()
    assert destination.read_bytes() == content
    await agent.close()


def answered() -> float:
    """How many file requests the file servers of this process have dealt with, by any answer."""
    outcomes = ("ok", "refused", "missing", "unavailable", "dropped")
    return sum(
        REGISTRY.get_sample_value("deployx_file_requests_total", {"outcome": outcome}) or 0.0
        for outcome in outcomes
    )


def dropped() -> float:
    return REGISTRY.get_sample_value("deployx_file_requests_total", {"outcome": "dropped"}) or 0.0


async def test_an_agent_cannot_get_a_file_of_another_devices_job(
    server: Server, services_client: nats.aio.client.Client, files: asyncpg.Pool, tmp_path: Path
) -> None:
    store = await services_client.jetstream().object_store(FILES_BUCKET)
    await store.put("f-b", b"for dev-b's eyes only " * 10_000)
    await store.put("f-a", b"dev-a's own file")
    for_b = await file_job(files, ["dev-b"], "f-b")
    for_a = await file_job(files, ["dev-a"], "f-a")
    errors: list[str] = []
    rogue = await agent_client(server, "dev-a", errors)
    victim = await agent_client(server, "dev-b", [])
    stolen: list[bytes] = []

    async def on_message(msg: nats.aio.msg.Msg) -> None:
        stolen.append(msg.data)

    # dev-b's own subjects: its jobs, and its inbox, where its file chunks come.
    await victim.subscribe(jobs_subject("dev-b"), cb=on_message)
    await victim.subscribe(f"{agent_inbox_prefix('dev-b')}.>", cb=on_message)
    await settled(victim)

    # Through the agent's own download: the job of dev-b's run, as if it were dev-a's.
    destination = tmp_path / "stolen.bin"
    outcome = await deploy_file(
        {"file_id": "f-b", "destination": str(destination)},
        FileFetcher(rogue, "dev-a", job_id(for_b, "dev-a")),
        [],
    )
    assert (outcome.status, outcome.error) == (
        "failed",
        "file 'f-b' is not available to this device",
    )
    assert not destination.exists()

    # Asking by dev-b's own job id, or for dev-b's file under its own job: refused, no bytes.
    for job, file_id in ((job_id(for_b, "dev-b"), "f-b"), (job_id(for_a, "dev-a"), "f-b")):
        request = ChunkRequest(job_id=job, file_id=file_id)
        reply = await rogue.request(files_subject("dev-a"), msgspec.json.encode(request), timeout=5)
        assert (reply.headers or {}).get(STATUS) == "refused"
        assert reply.data == b""

    # On dev-b's subject: the server refuses the publish itself.
    request = ChunkRequest(job_id=job_id(for_b, "dev-b"), file_id="f-b")
    await rogue.publish(
        files_subject("dev-b"), msgspec.json.encode(request), reply="_INBOX_dev-a.x"
    )
    await settled(rogue)
    await refusal(errors, f'permissions violation for publish to "{files_subject("dev-b")}"')

    # Its own job, with the answer sent to dev-b's jobs subject: the file server drops it.
    before, dropped_before = answered(), dropped()
    request = ChunkRequest(job_id=job_id(for_a, "dev-a"), file_id="f-a")
    await rogue.publish(
        files_subject("dev-a"), msgspec.json.encode(request), reply=jobs_subject("dev-b")
    )
    await settled(rogue)
    for _ in range(500):
        if answered() > before:
            break
        await asyncio.sleep(0.01)
    assert dropped() == dropped_before + 1
    await settled(services_client)
    await settled(victim)
    assert stolen == []
    await rogue.close()
    await victim.close()


async def test_auth_files_keep_existing_logins_when_an_agent_is_added(tmp_path: Path) -> None:
    auth_dir = tmp_path / "auth"
    first = write_auth_files(auth_dir, ["dev-a"])
    dev_a = (auth_dir / "agents" / "dev-a.json").read_bytes()
    again = write_auth_files(auth_dir, ["dev-b"])
    assert again == first
    assert (auth_dir / "agents" / "dev-a.json").read_bytes() == dev_a
    # A server started on the new files takes the old logins and the new agent's.
    nats_server = EmbeddedNats(tmp_path / "nats", extra_args=["-c", str(auth_dir / "auth.conf")])
    nats_server.start()
    try:
        server = Server(nats_server.url, auth_dir, again)
        for device in ("dev-a", "dev-b"):
            errors: list[str] = []
            agent = await agent_client(server, device, errors)
            await agent.publish(heartbeat_subject(device), b"{}")
            await settled(agent)
            assert errors == [], (device, errors)
            await agent.close()
        services = await nats.connect(server.with_login(first))
        await services.close()
    finally:
        nats_server.stop()


async def test_an_agent_cannot_publish_a_heartbeat_as_another_device(
    server: Server, services_client: nats.aio.client.Client
) -> None:
    errors: list[str] = []
    rogue = await agent_client(server, "dev-a", errors)
    heard: list[str] = []
    own_beat = asyncio.Event()

    async def on_beat(msg: nats.aio.msg.Msg) -> None:
        heard.append(msg.subject)
        if msg.subject == heartbeat_subject("dev-a"):
            own_beat.set()

    await services_client.subscribe("deployx.agents.*.heartbeat", cb=on_beat)
    await settled(services_client)
    await rogue.publish(heartbeat_subject("dev-b"), b"{}")
    await rogue.publish(heartbeat_subject("dev-a"), b"{}")
    await settled(rogue)
    async with asyncio.timeout(5):
        await own_beat.wait()

    assert heard == [heartbeat_subject("dev-a")]
    await refusal(errors, f'permissions violation for publish to "{heartbeat_subject("dev-b")}"')
    await rogue.close()


def consumer_request(deliver_subject: str) -> bytes:
    """A JetStream API request for a push consumer delivering to deliver_subject."""
    config = {"deliver_subject": deliver_subject, "ack_policy": "none", "deliver_policy": "all"}
    return json.dumps({"stream_name": FILES_STREAM, "config": config}).encode()


# Everything an agent could ask of JetStream itself: each is refused by the server.
FORBIDDEN_PUBLISHES = [
    pytest.param("$JS.API.INFO", b"", id="account-info"),
    pytest.param("$JS.API.STREAM.NAMES", b"", id="stream-names"),
    pytest.param(f"$JS.API.STREAM.INFO.{FILES_STREAM}", b"", id="files-stream-info"),
    pytest.param(
        f"$JS.API.CONSUMER.CREATE.{FILES_STREAM}",
        consumer_request(jobs_subject("dev-b")),
        id="consumer-delivering-to-another-agents-jobs",
    ),
    pytest.param(
        f"$JS.API.CONSUMER.CREATE.{FILES_STREAM}.rogue",
        consumer_request(jobs_subject("dev-b")),
        id="named-consumer-delivering-to-another-agents-jobs",
    ),
    pytest.param(
        f"$JS.API.CONSUMER.DURABLE.CREATE.{FILES_STREAM}.rogue",
        consumer_request(f"{agent_inbox_prefix('dev-a')}.x"),
        id="durable-consumer",
    ),
    pytest.param(f"$JS.API.CONSUMER.DELETE.{FILES_STREAM}.keeper", b"", id="delete-consumer"),
    pytest.param(f"$JS.API.CONSUMER.DELETE.{STREAM}.keeper", b"", id="delete-events-consumer"),
    pytest.param(f"$JS.API.STREAM.MSG.GET.{FILES_STREAM}", b'{"seq": 1}', id="get-message"),
    pytest.param(f"$JS.API.DIRECT.GET.{FILES_STREAM}", b'{"seq": 1}', id="direct-get"),
    pytest.param(f"$JS.API.STREAM.PURGE.{FILES_STREAM}", b"{}", id="purge-files"),
    pytest.param(f"$JS.API.STREAM.DELETE.{FILES_STREAM}", b"", id="delete-files-stream"),
    pytest.param(f"$O.{FILES_BUCKET}.C.rogue", b"planted", id="put-chunk"),
    pytest.param(f"$O.{FILES_BUCKET}.M.cm9ndWU=", b"{}", id="put-object-meta"),
    pytest.param(f"$JS.API.STREAM.INFO.{STREAM}", b"", id="events-stream-info"),
    pytest.param(
        f"$JS.API.CONSUMER.CREATE.{STREAM}",
        json.dumps(
            {"stream_name": STREAM, "config": {"deliver_subject": "_INBOX_dev-a.e"}}
        ).encode(),
        id="events-consumer",
    ),
    pytest.param("deployx.events.command.TaskDue", b"{}", id="publish-event"),
    pytest.param(f"$JS.API.STREAM.MSG.GET.{STREAM}", b'{"seq": 1}', id="get-event"),
    pytest.param(f"$JS.API.DIRECT.GET.{STREAM}", b'{"seq": 1}', id="direct-get-event"),
    pytest.param(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.keeper", b"1", id="pull-events"),
    pytest.param(f"$JS.API.CONSUMER.INFO.{STREAM}.keeper", b"", id="events-consumer-info"),
    pytest.param(f"$JS.ACK.{STREAM}.keeper.1.1.1.0.0", b"", id="ack-an-event"),
    pytest.param(f"$JS.API.STREAM.PURGE.{STREAM}", b"{}", id="purge-events"),
    pytest.param(f"$JS.API.STREAM.UPDATE.{STREAM}", b"{}", id="update-events-stream"),
    pytest.param(f"$JS.API.STREAM.DELETE.{STREAM}", b"", id="delete-events-stream"),
]


@pytest.fixture
async def stores(services_client: nats.aio.client.Client) -> AsyncIterator[None]:
    """The files bucket with one object, DEPLOYX_EVENTS, and a services' consumer on each."""
    js = services_client.jetstream()
    store = await js.create_object_store(FILES_BUCKET)
    await store.put("f-0", b"secret file")
    await ensure_stream(js, 1)
    for stream in (FILES_STREAM, STREAM):
        await js.add_consumer(
            stream, ConsumerConfig(durable_name="keeper", ack_policy=AckPolicy.EXPLICIT)
        )
    yield
    for stream in (FILES_STREAM, STREAM):
        await js.delete_stream(stream)


async def test_an_agent_cannot_use_jetstream_at_all(
    server: Server, services_client: nats.aio.client.Client, stores: None
) -> None:
    js = services_client.jetstream()
    before = {name: (await js.stream_info(name)).state for name in (FILES_STREAM, STREAM)}
    errors: list[str] = []
    rogue = await agent_client(server, "dev-a", errors)
    victim = await nats.connect(server.with_login(server.service))
    delivered: list[bytes] = []

    async def on_job(msg: nats.aio.msg.Msg) -> None:
        delivered.append(msg.data)

    await victim.subscribe(jobs_subject("dev-b"), cb=on_job)
    await settled(victim)

    for param in FORBIDDEN_PUBLISHES:
        subject, payload = param.values
        assert isinstance(subject, str) and isinstance(payload, bytes)
        await rogue.publish(subject, payload, reply=f"{agent_inbox_prefix('dev-a')}.r")
    # The server answers in order: once the last is refused, every refusal has come.
    await rogue.publish("deployx.last")
    await settled(rogue)
    await refusal(errors, 'permissions violation for publish to "deployx.last"')

    allowed = [
        param.values[0]
        for param in FORBIDDEN_PUBLISHES
        if not any(f'publish to "{param.values[0]}"'.lower() in error for error in errors)
    ]
    assert allowed == []
    for stream in (FILES_STREAM, STREAM):
        names = [c.name for c in await js.consumers_info(stream)]
        assert names == ["keeper"], (stream, names)
    after = {name: (await js.stream_info(name)).state for name in (FILES_STREAM, STREAM)}
    assert after == before
    await settled(victim)
    assert delivered == []
    await rogue.close()
    await victim.close()


async def test_an_agent_can_neither_change_the_files_nor_read_the_events_with_a_client(
    server: Server, services_client: nats.aio.client.Client, stores: None
) -> None:
    """What a compromised agent would try with nats-py itself: every call fails, and the
    bucket and the events stream are as they were."""
    js = services_client.jetstream()
    await js.publish("deployx.events.command.TaskDue", b'{"real": true}')
    before = {name: (await js.stream_info(name)).state for name in (FILES_STREAM, STREAM)}
    errors: list[str] = []
    rogue = await agent_client(server, "dev-a", errors)
    rogue_js = rogue.jetstream(timeout=1)
    bucket = ObjectStore(FILES_BUCKET, FILES_STREAM, rogue_js)
    refused = (nats.errors.Error, nats.js.errors.Error, TimeoutError)

    with pytest.raises(refused):
        await bucket.put("f-0", b"planted by dev-a")
    with pytest.raises(refused):
        await bucket.put("f-new", b"planted by dev-a")
    with pytest.raises(refused):
        await bucket.delete("f-0")
    with pytest.raises(refused):
        await rogue_js.stream_info(STREAM)
    with pytest.raises(refused):
        await rogue_js.publish("deployx.events.command.TaskDue", b"{}")
    with pytest.raises(refused):
        await rogue_js.pull_subscribe("deployx.events.>", durable="rogue", stream=STREAM)
    await refusal(errors, "permissions violation")
    await rogue.close()

    after = {name: (await js.stream_info(name)).state for name in (FILES_STREAM, STREAM)}
    assert after == before
    for stream in (FILES_STREAM, STREAM):
        assert [c.name for c in await js.consumers_info(stream)] == ["keeper"], stream
    store = await js.object_store(FILES_BUCKET)
    assert (await store.get("f-0")).data == b"secret file"
    assert [info.name for info in await store.list()] == ["f-0"]


@pytest.mark.parametrize(
    "subject", ["$O.deployx-files.>", "$O.deployx-files.C.*", "deployx.events.>", "$JS.>"]
)
async def test_an_agent_cannot_subscribe_to_stored_subjects(server: Server, subject: str) -> None:
    errors: list[str] = []
    rogue = await agent_client(server, "dev-a", errors)
    await rogue.subscribe(subject)
    await settled(rogue)
    await refusal(errors, f'permissions violation for subscription to "{subject}"'.lower())
    await rogue.close()


async def deploy_file(
    payload: dict[str, Any], source: FileFetcher, allow_roots: list[Path]
) -> JobOutcome:
    """The runner, given the payload as a user writes it and the agent decodes it."""
    return await deploy_typed(msgspec.convert(payload, FilePayload), source, allow_roots)
