"""A projector killed (-9) while it catches up in batches resumes where its last batch
committed: every event is applied exactly once, as applying the log one event at a time would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from events.base import Event
from events.execution import DeviceResultRecorded, ExecutionCompleted, ExecutionStarted
from events.task import TaskCreated, TaskDue
from projections import PROJECTIONS
from services.engine.relay import CHECKPOINT as RELAY_CHECKPOINT
from services.infra.store import (
    LogCursor,
    StreamAppend,
    append,
    append_many,
    load_checkpoint,
    never_appending,
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

    live, expected = await live_and_once(pool)
    assert live == expected
    assert len(live["tasks"]) == TASKS
    assert sum(row["execution_count"] for row in live["tasks"]) == RUNS
    assert len(live["execution_results"]) == RUNS * DEVICES


async def live_and_once(pool: asyncpg.Pool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The read tables, and what applying the log once, one event at a time, gives."""
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
    return live, expected


async def created(pool: asyncpg.Pool, count: int) -> LogCursor:
    """count new tasks in one transaction; the place of the last one in the log."""
    now = datetime.now(UTC)
    items = [
        StreamAppend(
            task_id,
            "command",
            0,
            TaskCreated(
                task_id=task_id,
                user_id="olga",
                name="report",
                task_type="command",
                recurrence_type="daily",
                recurrence_config={"time": "02:30", "timezone": "UTC"},
                device_ids=["dev-1"],
                created_at=now,
                next_run_time=now + timedelta(days=1),
            ),
            new_event_id(),
        )
        for task_id in (str(uuid.uuid4()) for _ in range(count))
    ]
    return max(LogCursor.of(recorded) for recorded in await append_many(pool, items))


async def test_a_projector_killed_mid_transaction_held_no_reader_back_and_applies_once(
    services: Services, pool: asyncpg.Pool
) -> None:
    """The projector's batch transaction (an xid, read tables only) stays open while newer
    events commit: the relay publishes them meanwhile (it does not wait for a transaction
    that never appends). Killed -9 there, the projector leaves nothing behind: its batch is
    undone and, started again, it applies every event once."""
    names = [projection.name for projection in PROJECTIONS]
    projector = services.start("projector", "projector")
    relay = services.start("relay", "relay")
    first = await created(pool, 1)

    async def projected(place: LogCursor) -> bool:
        return all([await load_checkpoint(pool, name) >= place for name in names])

    await wait_until(lambda: projected(first), 60, "the first task projected", [projector])
    async with pool.acquire() as blocker, never_appending(blocker):
        # Holds the projector's next batch open at its checkpoints, after its rows.
        await blocker.execute("SELECT 1 FROM checkpoints WHERE name = ANY($1) FOR UPDATE", names)
        held = await created(pool, 100)

        async def projector_waiting() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND backend_xid IS NOT NULL "
                    "AND query LIKE '%INSERT INTO checkpoints%'"
                )
            )

        await wait_until(projector_waiting, 60, "the projector's batch to wait", [projector])
        stuck = await pool.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO checkpoints%'"
        )
        later = await created(pool, 100)

        async def relayed() -> bool:
            return await load_checkpoint(pool, RELAY_CHECKPOINT) >= later

        await wait_until(relayed, 60, "the relay to pass the open batch", [relay])
        projector.kill9()
        assert not await projected(held)

    async def ended() -> bool:
        return not await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", stuck
        )

    await wait_until(ended, 30, "the killed projector's session to end", [relay])
    assert not await projected(held), "the killed projector's batch was committed"
    projector.start()
    await wait_until(lambda: projected(later), 60, "the restarted projector", [projector])
    projector.terminate()
    live, expected = await live_and_once(pool)
    assert live == expected
    assert len(live["tasks"]) == 201
