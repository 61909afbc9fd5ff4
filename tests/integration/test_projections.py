"""Projections: applying an event again changes nothing, and replay gives the live answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from events.execution import DeviceResultRecorded, ExecutionCompleted, ExecutionStarted
from projections import PROJECTIONS
from services.engine.projector import catch_up
from services.engine.replay import rebuild
from services.infra.store import LogCursor, append, read_after
from tests.stack import Stack

COMMAND_TASK = {
    "name": "disk report",
    "task_type": "command",
    "recurrence_type": "custom",
    "recurrence_config": {"cron": "0 8,12,18 * * 1-5", "timezone": "America/New_York"},
    "device_ids": ["dev-1", "dev-2"],
    "task_payload": {"command_payload": {"command": "df -h"}},
}


async def read_tables(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every read table's rows, in a stable order."""
    tables = [table for projection in PROJECTIONS for table in projection.tables]
    return {
        table: [dict(row) for row in await conn.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")]
        for table in tables
    }


async def run_scenario(stack: Stack) -> str:
    """A bit of everything: tasks created, edited, paused, run, finished, deleted; groups."""
    admin = await stack.client("root", "admin")
    operator = await stack.client("olga", "operator")
    _, group = await admin.post("/api/groups", {"name": "web", "device_ids": ["dev-1"]})
    await admin.put(f"/api/groups/{group['id']}", {"device_ids": ["dev-1", "dev-3"]})
    _, kept = await operator.post(
        "/api/schedule/tasks", COMMAND_TASK | {"group_ids": [group["id"]]}
    )
    _, gone = await operator.post("/api/schedule/tasks", COMMAND_TASK | {"name": "temporary"})
    await operator.put(f"/api/schedule/tasks/{kept['id']}", {"name": "disk report (all)"})
    await operator.post(f"/api/schedule/tasks/{kept['id']}/pause")
    _, run = await operator.post(f"/api/schedule/tasks/{kept['id']}/execute")
    await operator.post(f"/api/schedule/tasks/{kept['id']}/resume")
    await operator.delete(f"/api/schedule/tasks/{gone['id']}")
    await record_run(stack.pool, kept["id"], run["execution_id"])
    return str(kept["id"])


async def record_run(pool: asyncpg.Pool, task_id: str, execution_id: str) -> None:
    """What an executor records for a run on two devices, one of which fails."""
    now = datetime.now(UTC)
    events = [
        ExecutionStarted(
            execution_id=execution_id,
            task_id=task_id,
            trigger="manual",
            scheduled_for=now,
            started_at=now,
            device_ids=["dev-1", "dev-2"],
            deadline=now + timedelta(minutes=5),
        ),
        DeviceResultRecorded(
            execution_id=execution_id,
            task_id=task_id,
            device_id="dev-1",
            status="success",
            exit_code=0,
            stdout="/dev/sda1 40%",
            recorded_at=now,
        ),
        DeviceResultRecorded(
            execution_id=execution_id,
            task_id=task_id,
            device_id="dev-2",
            status="failed",
            exit_code=1,
            stderr="df: permission denied",
            recorded_at=now,
        ),
        ExecutionCompleted(
            execution_id=execution_id,
            task_id=task_id,
            status="failed",
            completed_at=now,
            devices_targeted=2,
            devices_succeeded=1,
            devices_failed=1,
        ),
    ]
    await append(pool, execution_id, "command", events, expected_version=0)
    async with pool.acquire() as conn:
        await catch_up(conn)


async def test_replay_rebuilds_the_same_read_tables(stack: Stack, database_url: str) -> None:
    task_id = await run_scenario(stack)
    conn = await asyncpg.connect(database_url)
    try:
        live = await read_tables(conn)
        applied = await rebuild(database_url)
        replayed = await read_tables(conn)
        total = await conn.fetchval("SELECT count(*) FROM events")
    finally:
        await conn.close()
    assert applied == total
    assert replayed == live
    (task,) = live["tasks"]
    assert str(task["id"]) == task_id
    assert (task["execution_count"], task["last_execution_status"]) == (1, "failed")
    assert task["status"] == "pending"
    assert len(live["execution_results"]) == 2


async def test_applying_every_event_again_changes_nothing(stack: Stack, database_url: str) -> None:
    await run_scenario(stack)
    conn = await asyncpg.connect(database_url)
    try:
        before = await read_tables(conn)
        everything = await read_after(conn, LogCursor(), 100_000)
        async with conn.transaction():
            for recorded in everything:
                for projection in PROJECTIONS:
                    await projection.apply(conn, recorded)
        assert await read_tables(conn) == before
    finally:
        await conn.close()


async def test_stats_count_finished_runs_per_hour_and_day_for_their_owner(stack: Stack) -> None:
    await run_scenario(stack)
    owner = await stack.client("olga", "operator")
    stranger = await stack.client("sam", "operator")

    _, stats = await owner.get("/api/schedule/stats")
    _, others = await stranger.get("/api/schedule/stats")

    assert (stats["executions_total"], stats["executions_failed"]) == (1, 1)
    assert len(stats["executions_by_hour"]) == 24
    assert len(stats["executions_by_day"]) == 7
    assert stats["executions_by_hour"][-1] | {"start": None} == {
        "start": None,
        "succeeded": 0,
        "failed": 1,
        "canceled": 0,
    }
    assert sum(bucket["failed"] for bucket in stats["executions_by_day"]) == 1
    assert sum(bucket["failed"] for bucket in others["executions_by_hour"]) == 0
