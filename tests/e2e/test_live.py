"""GET /api/live: events arrive as Server-Sent Events, and each user sees only their own tasks'."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from services.cli.runtime import serve_relay
from services.infra.settings import Settings
from tests.e2e.api import TASKS, command_task
from tests.e2e.fleet import Fleet
from tests.stack import Client, Stack


@pytest.fixture
async def relayed(stack: Stack, database_url: str, nats_url: str) -> AsyncIterator[Stack]:
    """The stack, with a relay publishing the log to NATS (what the live feed listens to)."""
    stop = asyncio.Event()
    relay = asyncio.create_task(
        serve_relay(Settings(database_url=database_url, nats_url=nats_url), stop)
    )
    yield stack
    stop.set()
    await relay


async def sse_events(client: Client, ready: asyncio.Event) -> AsyncIterator[dict[str, Any]]:
    """Parses the stream: yields {"event", "id", "data"} for each message."""
    headers = {"Authorization": f"Bearer {client.token}"}
    async with client.session.get(f"{client.base_url}/api/live", headers=headers) as response:
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        ready.set()
        message: dict[str, Any] = {}
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if not line:
                if "data" in message:
                    yield message
                message = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                message[field] = json.loads(value) if field == "data" else value


async def first_task_event(client: Client, ready: asyncio.Event) -> dict[str, Any]:
    async for message in sse_events(client, ready):
        if message["event"].startswith("Task"):
            return message
    raise AssertionError("the stream ended")


async def test_a_users_live_stream_shows_their_task_and_not_others(relayed: Stack) -> None:
    alice = await relayed.client("alice", "operator")
    bob = await relayed.client("bob", "operator")
    alice_ready, bob_ready = asyncio.Event(), asyncio.Event()
    alice_sees = asyncio.create_task(first_task_event(alice, alice_ready))
    bob_sees = asyncio.create_task(first_task_event(bob, bob_ready))
    await asyncio.wait_for(asyncio.gather(alice_ready.wait(), bob_ready.wait()), 10)

    _, bobs = await bob.post(TASKS, command_task(name="bob's"))
    _, alices = await alice.post(TASKS, command_task(name="alice's"))

    seen_by_alice = await asyncio.wait_for(alice_sees, 10)
    seen_by_bob = await asyncio.wait_for(bob_sees, 10)
    assert seen_by_alice["event"] == "TaskCreated"
    assert seen_by_alice["data"]["stream_id"] == alices["id"]
    assert seen_by_bob["data"]["stream_id"] == bobs["id"]


async def test_the_live_stream_needs_a_token(relayed: Stack) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{relayed.base_url}/api/live") as response,
    ):
        assert response.status == 401


async def collect_until(
    client: Client, ready: asyncio.Event, last: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """The stream's messages up to and including the first for which last is true."""
    seen: list[dict[str, Any]] = []
    async for message in sse_events(client, ready):
        seen.append(message)
        if last(message):
            return seen
    raise AssertionError("the stream ended")


async def test_an_adhoc_runs_events_reach_its_requester_live_and_nobody_else(
    fleet: Fleet, stack: Stack
) -> None:
    fleet.executor()
    alice = await stack.client("alice", "operator")
    bob = await stack.client("bob", "operator")
    alice_ready, bob_ready = asyncio.Event(), asyncio.Event()
    alice_sees = asyncio.create_task(
        collect_until(alice, alice_ready, lambda m: m["event"] == "ExecutionCompleted")
    )
    bob_sees = asyncio.create_task(
        collect_until(bob, bob_ready, lambda m: m["event"] == "TaskCreated")
    )
    await asyncio.wait_for(asyncio.gather(alice_ready.wait(), bob_ready.wait()), 10)

    # An ad-hoc run (no task) on a device that never connected: it starts, the device is
    # unreachable, the run ends; each step an event of the run's own stream.
    status, accepted = await alice.post(
        "/api/executions",
        {
            "name": "alice's hotfix",
            "task_type": "command",
            "device_ids": ["dev-nowhere"],
            "task_payload": {"command_payload": {"command": "echo secret-fix"}},
        },
    )
    assert status == 202, accepted
    run = accepted["execution_id"]
    seen_by_alice = await asyncio.wait_for(alice_sees, 30)
    _, bobs = await bob.post(TASKS, command_task(name="bob's"))
    seen_by_bob = await asyncio.wait_for(bob_sees, 10)

    alices_run = [m["event"] for m in seen_by_alice if m["data"]["stream_id"] == run]
    assert alices_run == [
        "ExecutionRequested",
        "ExecutionStarted",
        "DeviceResultRecorded",
        "ExecutionCompleted",
    ], seen_by_alice
    assert [m["data"]["stream_id"] for m in seen_by_bob] == [bobs["id"]], seen_by_bob
