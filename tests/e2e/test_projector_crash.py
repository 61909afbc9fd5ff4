"""A projector killed (-9) while it catches up in batches resumes where its last batch
committed: every event is applied exactly once, as applying the log one event at a time would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from events.base import Event
from events.execution import DeviceResultRecorded, ExecutionCompleted, ExecutionStarted
from events.task import TaskCreated, TaskDue
from projections import PROJECTIONS
from services.infra.store import (
    LogCursor,
    StreamAppend,
    append,
    append_many,
    load_checkpoint,
    new_event_id,
    read_after,
)
from tests.e2e.processes import Services, wait_until
from tests.integration.test_projections import read_tables

pytestmark = pytest.mark.e2e

TASKS = 3000
RUNS, DEVICES = 10, 100


async def backlog(pool: asyncpg.Pool) -> int:
    """TASKS tasks, then RUNS runs of DEVICES devices each; the last position."""
    now = datetime.now(UTC)
    tasks = [
        TaskCreated(
            task_id=str(uuid.uuid4()),
            user_id="olga",
            name=f"report {index}",
            task_type="command",
            recurrence_type="daily",
            recurrence_config={"time": "02:30", "timezone": "UTC"},
            device_ids=["dev-1"],
            created_at=now,
            next_run_time=now + timedelta(days=1),
        )
        for index in range(TASKS)
    ]
    for start in range(0, TASKS, 1000):
        items = [
            StreamAppend(task.task_id, "command", 0, task, new_event_id())
            for task in tasks[start : start + 1000]
        ]
        await append_many(pool, items)
    for task in tasks[:RUNS]:
        run = str(uuid.uuid4())
        devices = [f"dev-{n}" for n in range(DEVICES)]
        due = TaskDue(
            task_id=task.task_id,
            execution_id=run,
            scheduled_for=now,
            trigger="schedule",
            due_at=now,
            next_run_time=now + timedelta(days=1),
        )
        await append(pool, task.task_id, "command", [due], expected_version=1)
        events: list[Event] = [
            ExecutionStarted(
                execution_id=run,
                task_id=task.task_id,
                trigger="schedule",
                scheduled_for=now,
                started_at=now,
                device_ids=devices,
            )
        ]
        events += [
            DeviceResultRecorded(
                execution_id=run,
                task_id=task.task_id,
                device_id=device,
                status="success",
                exit_code=0,
                recorded_at=now,
            )
            for device in devices
        ]
        events.append(
            ExecutionCompleted(
                execution_id=run,
                task_id=task.task_id,
                status="success",
                completed_at=now,
                devices_targeted=DEVICES,
                devices_succeeded=DEVICES,
            )
        )
        await append(pool, run, "command", events, expected_version=0)
    return int(await pool.fetchval("SELECT max(position) FROM events"))


async def test_a_projector_killed_while_catching_up_applies_every_event_once(
    services: Services, pool: asyncpg.Pool
) -> None:
    last = await backlog(pool)
    names = [projection.name for projection in PROJECTIONS]

    async def positions() -> list[int]:
        return [(await load_checkpoint(pool, name)).position for name in names]

    projector = services.start("projector", "projector")

    async def partway() -> bool:
        return any(0 < position < last for position in await positions())

    await wait_until(partway, 60, "the projector to be partway through", [projector], 0.002)
    projector.kill9()
    stopped_at = await positions()
    assert min(stopped_at) < last, "killed too late: the projector had caught up"
    projector.start()

    async def caught_up() -> bool:
        return all(position == last for position in await positions())

    await wait_until(caught_up, 120, "the restarted projector to catch up", [projector])
    projector.terminate()

    async with pool.acquire() as proxy:
        conn: asyncpg.Connection = proxy  # type: ignore[assignment]
        live = await read_tables(conn)
        # What the log applied once, one event at a time, gives (then rolled back).
        once = conn.transaction()
        await once.start()
        try:
            tables = ", ".join(table for p in PROJECTIONS for table in p.tables)
            await conn.execute(f"TRUNCATE {tables}")
            everything = await read_after(conn, LogCursor(), 100_000)
            for projection in PROJECTIONS:
                for recorded in everything:
                    await projection.apply(conn, recorded)
            expected = await read_tables(conn)
        finally:
            await once.rollback()
    assert live == expected
    assert len(live["tasks"]) == TASKS
    assert sum(row["execution_count"] for row in live["tasks"]) == RUNS
    assert len(live["execution_results"]) == RUNS * DEVICES
