"""A run's first delivery starts it without reading its stream first: the start's append at
version 0 is what finds out that the run is recorded already (a redelivery that still counts as
a first, another replica), and the run then goes on from the log instead of starting twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import nats
import pytest

from events.task import TaskDue
from services.executor.results import ResultRouter
from services.executor.run import ExecutionRun
from services.executor.spec import RunOrder
from services.infra.clock import SystemClock
from services.infra.db import create_pool
from services.infra.rejections import Rejections
from services.infra.store import read_stream
from tests.integration.file_jobs import file_run


@pytest.fixture(name="pool")
async def executor_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(database_url, max_size=2, reset_session=False)
    try:
        yield created
    finally:
        await created.close()


async def test_a_first_delivery_of_a_run_started_already_goes_on_from_the_log(
    pool: asyncpg.Pool, nats_url: str
) -> None:
    # Started on a device that never connected: the run ends it unreachable and completes.
    task_id, execution_id = await file_run(pool, ["dev-gone"], "f", "command")
    due = next(r for r in await read_stream(pool, task_id) if isinstance(r.event, TaskDue))
    assert isinstance(due.event, TaskDue)
    client = await nats.connect(nats_url)
    router = ResultRouter(client, Rejections())
    await router.start()
    try:
        order = RunOrder.of_due(due.event, due.version)
        run = ExecutionRun(pool, client, router, SystemClock(), order, "command", fresh=True)
        await asyncio.wait_for(run.run(), timeout=30)
    finally:
        await router.stop()
        await client.close()

    recorded = [r.event.type for r in await read_stream(pool, execution_id)]
    assert recorded == ["ExecutionStarted", "DeviceResultRecorded", "ExecutionCompleted"]
