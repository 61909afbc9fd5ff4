"""A write whose read tables lag: 503 `read_model_lagging`, the write stored once, and a retry
with the same Idempotency-Key answers what the first call would have once the read side has it.

The API runs with a real projector that the test stops and starts (as an operator would see
when the projector service is down or far behind), on a read-your-writes wait of WAIT seconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.api.app import create_app
from services.api.server import start_api
from services.engine.projector import run_projector
from services.infra.auth import create_token
from services.infra.db import create_pool
from services.infra.embedded import free_port
from services.infra.settings import Settings
from tests.e2e.api import TASKS, assert_error, command_task, task_path
from tests.stack import Client

pytestmark = pytest.mark.e2e

WAIT = 1.0  # seconds a write waits for the read tables before its 503


class Projector:
    """The real projector, in-process, that the test stops and starts."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        assert self._task is None
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(run_projector(self.pool, self._stop))

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None


class Lagging:
    def __init__(self, client: Client, pool: asyncpg.Pool, projector: Projector) -> None:
        self.client, self.pool, self.projector = client, pool, projector


@pytest.fixture
async def lagging(database_url: str, nats_url: str) -> AsyncIterator[Lagging]:
    port = free_port()
    config = Settings(
        database_url=database_url, nats_url=nats_url, port=port, read_your_writes_timeout=WAIT
    )
    runner = await start_api(create_app(config), config)
    pool = await create_pool(database_url, max_size=4)
    projector = Projector(pool)
    try:
        async with aiohttp.ClientSession() as session:
            token = await create_token(pool, "ops", "operator")
            client = Client(session, f"http://127.0.0.1:{port}", token)
            yield Lagging(client, pool, projector)
    finally:
        await projector.stop()
        await runner.cleanup()
        await pool.close()


async def events_of(pool: asyncpg.Pool, event_type: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT stream_id, data::text FROM events WHERE type = $1 ORDER BY position", event_type
    )
    return [{"stream_id": row["stream_id"], **json.loads(row["data"])} for row in rows]


def lagged(response: tuple[int, Any]) -> None:
    error = assert_error(response, 503, "read_model_lagging")
    assert "stored" in error["message"], error


async def test_a_create_the_read_side_has_not_shown_is_a_503_and_its_retry_the_201(
    lagging: Lagging,
) -> None:
    api, pool = lagging.client, lagging.pool
    body, key = command_task(name="nightly"), {"Idempotency-Key": "create-while-lagging"}

    # The projector is down: the write is stored, but no read table shows it in time.
    lagged(await api.post(TASKS, body, headers=key))
    (created,) = await events_of(pool, "TaskCreated")
    status, page = await api.get(TASKS)
    assert (status, page["total"]) == (200, 0), page

    # Retried while it still lags: the same 503, and the task is not created a second time.
    lagged(await api.post(TASKS, body, headers=key))
    assert len(await events_of(pool, "TaskCreated")) == 1

    # Retried again, and the projector comes back while the retry waits: the first call's
    # answer, 201 and the task, as soon as the read side has it.
    retry = asyncio.create_task(api.post(TASKS, body, headers=key))
    lagging.projector.start()
    status, task = await retry
    assert status == 201, task
    assert task["id"] == created["stream_id"]
    assert (task["name"], task["status"]) == ("nightly", "pending")

    # From now on the stored answer, the same every time; one task in the list and in the log.
    assert await api.post(TASKS, body, headers=key) == (201, task)
    status, page = await api.get(TASKS)
    assert [item["id"] for item in page["items"]] == [task["id"]], page
    assert len(await events_of(pool, "TaskCreated")) == 1


async def test_a_pause_retried_after_a_503_answers_the_paused_task_not_a_conflict(
    lagging: Lagging,
) -> None:
    api, pool = lagging.client, lagging.pool
    lagging.projector.start()
    status, task = await api.post(TASKS, command_task())
    assert status == 201, task
    await lagging.projector.stop()
    key = {"Idempotency-Key": "pause-while-lagging"}

    lagged(await api.post(task_path(task["id"], "pause"), headers=key))
    lagging.projector.start()
    status, paused = await api.post(task_path(task["id"], "pause"), headers=key)

    assert status == 200, paused
    assert (paused["id"], paused["status"], paused["next_run_time"]) == (task["id"], "paused", None)
    assert len(await events_of(pool, "TaskPaused")) == 1


async def test_a_run_now_retried_after_a_503_answers_the_same_execution(
    lagging: Lagging,
) -> None:
    api, pool = lagging.client, lagging.pool
    lagging.projector.start()
    status, task = await api.post(TASKS, command_task())
    assert status == 201, task
    await lagging.projector.stop()
    key = {"Idempotency-Key": "run-while-lagging"}

    lagged(await api.post(task_path(task["id"], "execute"), headers=key))
    lagging.projector.start()
    status, accepted = await api.post(task_path(task["id"], "execute"), headers=key)

    assert status == 202, accepted
    (due,) = await events_of(pool, "TaskDue")
    assert accepted == {"execution_id": due["execution_id"]}
    status, page = await api.get(task_path(task["id"], "executions"))
    assert [item["id"] for item in page["items"]] == [due["execution_id"]], page


async def test_a_key_reused_for_another_request_after_a_503_is_refused(lagging: Lagging) -> None:
    api, pool = lagging.client, lagging.pool
    key = {"Idempotency-Key": "reused"}

    lagged(await api.post(TASKS, command_task(name="first"), headers=key))
    lagging.projector.start()
    response = await api.post(TASKS, command_task(name="second"), headers=key)

    assert "different request" in assert_error(response, 422)["message"]
    assert [event["name"] for event in await events_of(pool, "TaskCreated")] == ["first"]


async def test_a_group_created_during_the_lag_is_answered_on_retry_under_its_first_id(
    lagging: Lagging,
) -> None:
    api, pool = lagging.client, lagging.pool
    admin = Client(api.session, api.base_url, await create_token(pool, "root", "admin"))
    body, key = {"name": "racks", "device_ids": ["dev-1"]}, {"Idempotency-Key": "group"}

    lagged(await admin.post("/api/groups", body, headers=key))
    (created,) = await events_of(pool, "GroupCreated")
    lagging.projector.start()
    status, group = await admin.post("/api/groups", body, headers=key)

    assert status == 201, group
    assert (f"group-{group['id']}", group["name"]) == (created["stream_id"], "racks")
    assert len(await events_of(pool, "GroupCreated")) == 1


async def test_creates_sent_together_share_commits_and_each_answers_its_own_task(
    lagging: Lagging,
) -> None:
    api, pool = lagging.client, lagging.pool
    lagging.projector.start()
    names = [f"together-{n}" for n in range(24)]

    answers = await asyncio.gather(*(api.post(TASKS, command_task(name=name)) for name in names))

    assert [status for status, _ in answers] == [201] * len(names), answers
    assert [task["name"] for _, task in answers] == names
    for _, task in answers:  # each answer is its own task, as the read side shows it
        assert await api.get(task_path(task["id"])) == (200, task)
    # Group commit: the 24 creates went into the log in fewer transactions than requests.
    commits = await pool.fetchval(
        "SELECT count(DISTINCT tx_id) FROM events WHERE type = 'TaskCreated'"
    )
    assert commits < len(names), commits
