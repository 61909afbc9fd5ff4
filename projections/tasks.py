"""The tasks read table: one row per live task, with its status and schedule."""

from __future__ import annotations

import msgspec
from msgspec import UNSET

from events.codec import RecordedEvent
from events.execution import ExecutionCompleted
from events.task import (
    RunMissed,
    RunSkipped,
    TaskCreated,
    TaskDeleted,
    TaskDue,
    TaskPaused,
    TaskResumed,
    TaskUpdated,
)
from projections.base import Db

_json = msgspec.json.Encoder()

# Columns a TaskUpdated may change, with the SQL cast each needs.
_UPDATABLE = {
    "name": "text",
    "description": "text",
    "recurrence_type": "text",
    "recurrence_config": "jsonb",
    "device_ids": "text[]",
    "group_ids": "integer[]",
    "task_payload": "jsonb",
    "misfire_grace_seconds": "integer",
    "overlap_policy": "text",
    "jitter_seconds": "integer",
}
_JSON_COLUMNS = {"recurrence_config", "task_payload"}

# The status a task settles in when nothing of it is running.
_RESTING_STATUS = """
    CASE
        WHEN status = 'paused' THEN 'paused'
        WHEN running_executions > 0 THEN 'running'
        WHEN next_run_time IS NOT NULL OR recurrence_type <> 'once' THEN 'pending'
        WHEN last_execution_status = 'failed' THEN 'failed'
        WHEN last_execution_status = 'success' THEN 'completed'
        ELSE status
    END
"""


class TasksProjection:
    name = "tasks"
    tables = ("tasks", "task_runs")

    async def apply(self, conn: Db, recorded: RecordedEvent) -> None:
        event, version = recorded.event, recorded.version
        match event:
            case TaskCreated():
                await _insert(conn, event, version)
            case TaskUpdated():
                await _update(conn, event, version)
            case TaskPaused():
                await _task_step(
                    conn, event.task_id, version, "status = 'paused', next_run_time = NULL"
                )
            case TaskResumed():
                await _task_step(
                    conn,
                    event.task_id,
                    version,
                    "next_run_time = $3, status = CASE WHEN running_executions > 0 "
                    "THEN 'running' ELSE 'pending' END",
                    event.next_run_time,
                )
            case TaskDeleted():
                await conn.execute("DELETE FROM tasks WHERE id = $1", event.task_id)
            case TaskDue():
                await conn.execute(
                    "INSERT INTO task_runs (execution_id, task_id) VALUES ($1, $2) "
                    "ON CONFLICT DO NOTHING",
                    event.execution_id,
                    event.task_id,
                )
                # Only a scheduled fire moves the schedule; "execute now" leaves it alone.
                await _task_step(
                    conn,
                    event.task_id,
                    version,
                    "next_run_time = CASE WHEN $5 THEN $3 ELSE next_run_time END, "
                    "running_executions = running_executions + 1, "
                    "status = CASE WHEN status = 'paused' THEN 'paused' ELSE 'running' END, "
                    "last_run_time = $4",
                    event.next_run_time,
                    event.due_at,
                    event.trigger == "schedule",
                )
            case RunMissed():
                failed = ", status = 'failed'" if event.task_failed else ""
                await _task_step(
                    conn, event.task_id, version, f"next_run_time = $3{failed}", event.next_run_time
                )
            case RunSkipped():
                await _task_step(
                    conn, event.task_id, version, "next_run_time = $3", event.next_run_time
                )
            case ExecutionCompleted():
                await _execution_completed(conn, event)


async def _insert(conn: Db, event: TaskCreated, version: int) -> None:
    await conn.execute(
        """
        INSERT INTO tasks (id, version, user_id, name, description, task_type, status,
            recurrence_type, recurrence_config, next_run_time, device_ids, group_ids,
            task_payload, misfire_grace_seconds, overlap_policy, jitter_seconds,
            created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, $11, $12, $13, $14, $15,
            $16, $16)
        ON CONFLICT (id) DO NOTHING
        """,
        event.task_id,
        version,
        event.user_id,
        event.name,
        event.description,
        event.task_type,
        event.recurrence_type,
        _json.encode(event.recurrence_config).decode(),
        event.next_run_time,
        event.device_ids,
        event.group_ids,
        _json.encode(event.task_payload).decode(),
        event.misfire_grace_seconds,
        event.overlap_policy,
        event.jitter_seconds,
        event.created_at,
    )


async def _update(conn: Db, event: TaskUpdated, version: int) -> None:
    assignments = ["updated_at = $3", "next_run_time = $4"]
    values: list[object] = [event.updated_at, event.next_run_time]
    for column, cast in _UPDATABLE.items():
        value = getattr(event, column)
        if value is UNSET:
            continue
        values.append(_json.encode(value).decode() if column in _JSON_COLUMNS else value)
        assignments.append(f"{column} = ${len(values) + 2}::{cast}")
    if event.rearmed:
        assignments.append(
            "status = CASE WHEN running_executions > 0 THEN 'running' ELSE 'pending' END"
        )
    await _task_step(conn, event.task_id, version, ", ".join(assignments), *values)


async def _task_step(
    conn: Db, task_id: str, version: int, assignments: str, *values: object
) -> None:
    """Applies one event of the task's own stream once: the version guard skips a re-apply."""
    await conn.execute(
        f"UPDATE tasks SET version = $2, {assignments} WHERE id = $1 AND version < $2",
        task_id,
        version,
        *values,
    )


async def _execution_completed(conn: Db, event: ExecutionCompleted) -> None:
    # task_runs says whether this execution was counted already, which makes re-apply harmless.
    counted = await conn.fetchval(
        "UPDATE task_runs SET status = $2 WHERE execution_id = $1 AND status = 'running' "
        "RETURNING task_id",
        event.execution_id,
        event.status,
    )
    if counted is None:
        return
    await conn.execute(
        """
        UPDATE tasks SET
            running_executions = greatest(running_executions - 1, 0),
            execution_count = execution_count + 1,
            last_execution_status = $2
        WHERE id = $1
        """,
        counted,
        event.status,
    )
    await conn.execute(f"UPDATE tasks SET status = {_RESTING_STATUS} WHERE id = $1", counted)
