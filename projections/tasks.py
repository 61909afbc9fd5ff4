"""The tasks read table: one row per live task, with its status and schedule."""

from __future__ import annotations

from collections.abc import Sequence

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
from projections.batching import (
    Batched,
    apply_in_runs,
    from_log,
    json_rows_writer,
    log_defaults,
    stored_as_decoded,
)

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
    "delivery": "jsonb",
    "end_at": "timestamptz",
    "max_runs": "integer",
    "pause_on_failure": "boolean",
}
_JSON_COLUMNS = {"recurrence_config", "task_payload", "delivery"}

# The status a task settles in when nothing of it is running.
_RESTING_STATUS = """
    CASE
        WHEN status = 'paused' THEN 'paused'
        WHEN running_executions > 0 THEN 'running'
        WHEN completed_by IS NOT NULL THEN 'completed'
        WHEN next_run_time IS NOT NULL OR recurrence_type <> 'once' THEN 'pending'
        WHEN last_execution_status = 'failed' THEN 'failed'
        WHEN last_execution_status = 'success' THEN 'completed'
        ELSE status
    END
"""


_HANDLED = (
    TaskCreated,
    TaskUpdated,
    TaskPaused,
    TaskResumed,
    TaskDeleted,
    TaskDue,
    RunMissed,
    RunSkipped,
    ExecutionCompleted,
)


class TasksProjection:
    name = "tasks"
    tables = ("tasks", "task_runs")
    version = 1

    async def apply_batch(self, conn: Db, batch: Sequence[RecordedEvent]) -> None:
        await apply_in_runs(conn, batch, _HANDLED, _BATCHED, self.apply)

    async def apply(self, conn: Db, recorded: RecordedEvent) -> None:
        event, version = recorded.event, recorded.version
        match event:
            case TaskCreated():
                await _insert(conn, event, version)
            case TaskUpdated():
                await _update(conn, event, version)
            case TaskPaused():
                # Any pause settles a pause owed for a failed run (pause_on_failure).
                await _task_step(
                    conn,
                    event.task_id,
                    version,
                    "status = 'paused', next_run_time = NULL, failed_run = NULL, "
                    "failed_run_error = NULL",
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
                scheduled = event.trigger == "schedule"
                await conn.execute(
                    "INSERT INTO task_runs (execution_id, task_id, scheduled) VALUES ($1, $2, $3) "
                    "ON CONFLICT DO NOTHING",
                    event.execution_id,
                    event.task_id,
                    scheduled,
                )
                # Only a scheduled fire moves the schedule and counts toward max_runs; "execute
                # now" leaves them alone.
                moves = "CASE WHEN $5 THEN {} ELSE {} END"
                await _task_step(
                    conn,
                    event.task_id,
                    version,
                    f"next_run_time = {moves.format('$3', 'next_run_time')}, "
                    f"scheduled_runs = {moves.format('scheduled_runs + 1', 'scheduled_runs')}, "
                    f"completed_by = {moves.format('$6', 'completed_by')}, "
                    f"{_NO_PAUSE_OWED_WHEN.format('($5 AND $3::timestamptz IS NULL)')}, "
                    "running_executions = running_executions + 1, "
                    "status = CASE WHEN status = 'paused' THEN 'paused' ELSE 'running' END, "
                    "last_run_time = $4",
                    event.next_run_time,
                    event.due_at,
                    scheduled,
                    event.completed_by,
                )
            case RunMissed() | RunSkipped():
                # A one-time task missed for good fails; an end_at that leaves no occurrence
                # completes the task (at once unless a run is in flight, else when it ends).
                status = "status"
                if isinstance(event, RunMissed) and event.task_failed:
                    status = "'failed'"
                elif event.completed_by is not None:
                    status = "CASE WHEN running_executions > 0 THEN status ELSE 'completed' END"
                await _task_step(
                    conn,
                    event.task_id,
                    version,
                    f"next_run_time = $3, completed_by = $4, status = {status}, "
                    f"{_NO_PAUSE_OWED_WHEN.format('$3::timestamptz IS NULL')}",
                    event.next_run_time,
                    event.completed_by,
                )
            case ExecutionCompleted():
                await _execution_completed(conn, event)


# A pause owed for a failed run lapses once the task has nothing left to schedule.
_NO_PAUSE_OWED_WHEN = (
    "failed_run = CASE WHEN {0} THEN NULL ELSE failed_run END, "
    "failed_run_error = CASE WHEN {0} THEN NULL ELSE failed_run_error END"
)


async def _insert(conn: Db, event: TaskCreated, version: int) -> None:
    await conn.execute(
        """
        INSERT INTO tasks (id, version, user_id, name, description, task_type, status,
            recurrence_type, recurrence_config, next_run_time, device_ids, group_ids,
            task_payload, misfire_grace_seconds, overlap_policy, jitter_seconds,
            created_at, updated_at, delivery, end_at, max_runs, pause_on_failure)
        VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10, $11, $12, $13, $14, $15,
            $16, $16, $17, $18, $19, $20)
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
        _json.encode(event.delivery).decode(),
        event.end_at,
        event.max_runs,
        event.pause_on_failure,
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
    values.append(event.completed_by)
    assignments.append(f"completed_by = ${len(values) + 2}")
    if event.rearmed:
        assignments.append(
            "status = CASE WHEN running_executions > 0 THEN 'running' ELSE 'pending' END"
        )
    elif event.completed_by is not None:
        assignments.append(
            "status = CASE WHEN status = 'paused' OR running_executions > 0 THEN status "
            "ELSE 'completed' END"
        )
    # A new pause_on_failure (either way) starts afresh; an ended task owes no pause.
    lapses = "$4::timestamptz IS NULL"
    if event.pause_on_failure is not UNSET:
        lapses = "true"
    assignments.append(_NO_PAUSE_OWED_WHEN.format(lapses))
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
    run = await conn.fetchrow(
        "UPDATE task_runs SET status = $2 WHERE execution_id = $1 AND status = 'running' "
        "RETURNING task_id, scheduled",
        event.execution_id,
        event.status,
    )
    if run is None:
        return
    counted = run["task_id"]
    if run["scheduled"] and event.status == "failed":
        # pause_on_failure: the ticker appends the TaskPaused this owes (docs/scheduling.md).
        await conn.execute(
            "UPDATE tasks SET failed_run = $2, failed_run_error = $3 WHERE id = $1 "
            "AND pause_on_failure AND status <> 'paused' AND next_run_time IS NOT NULL",
            counted,
            event.execution_id,
            event.error_message,
        )
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


# --- Runs of one event type, one statement each (apply_batch) --------------------------------

_TASK_COLUMNS = """
    INSERT INTO tasks (id, version, user_id, name, description, task_type, status,
        recurrence_type, recurrence_config, next_run_time, device_ids, group_ids,
        task_payload, misfire_grace_seconds, overlap_policy, jitter_seconds,
        created_at, updated_at, delivery, end_at, max_runs, pause_on_failure)
    SELECT x.task_id, {version}, x.user_id, x.name, x.description, x.task_type, 'pending',
        x.recurrence_type, x.recurrence_config, x.next_run_time, x.device_ids, x.group_ids,
        x.task_payload, x.misfire_grace_seconds, x.overlap_policy, x.jitter_seconds,
        x.created_at, x.created_at, x.delivery, x.end_at, x.max_runs, x.pause_on_failure
"""
_CREATED_FIELDS = """task_id uuid, user_id text, name text,
    description text, task_type text, recurrence_type text, recurrence_config jsonb,
    next_run_time timestamptz, device_ids text[], group_ids integer[], task_payload jsonb,
    misfire_grace_seconds integer, overlap_policy text, jitter_seconds integer,
    created_at timestamptz, delivery jsonb, end_at timestamptz, max_runs integer,
    pause_on_failure boolean"""
_INSERT_MANY = f"""
{_TASK_COLUMNS.format(version="x.version")}
FROM json_to_recordset($1::json) AS x(version integer, {_CREATED_FIELDS})
ON CONFLICT (id) DO NOTHING
"""
# The same rows read from the log itself (no JSON through Python; about a fifth less work).
_INSERT_FROM_LOG = f"""
{_TASK_COLUMNS.format(version="e.version")}
FROM {from_log(_CREATED_FIELDS)}
ON CONFLICT (id) DO NOTHING
"""
_CREATED_DEFAULTS = log_defaults(TaskCreated)


async def _insert_many(conn: Db, run: list[RecordedEvent]) -> None:
    if stored_as_decoded(TaskCreated):
        positions = [recorded.position for recorded in run]
        await conn.execute(_INSERT_FROM_LOG, positions, _CREATED_DEFAULTS)
        return
    await _insert_from_json(conn, run)


_insert_from_json = json_rows_writer(
    _INSERT_MANY,
    TaskCreated,
    lambda event, recorded: {"version": recorded.version, **msgspec.structs.asdict(event)},
)


# The same steps as TaskDue's apply(), for tasks that are each due once in the run.
_DUE_MANY = f"""
WITH x AS (
    SELECT * FROM json_to_recordset($1::json) AS x(task_id uuid, execution_id uuid,
        version integer, scheduled boolean, next_run_time timestamptz, due_at timestamptz,
        completed_by text)
), runs AS (
    INSERT INTO task_runs (execution_id, task_id, scheduled)
    SELECT execution_id, task_id, scheduled FROM x
    ON CONFLICT DO NOTHING
)
UPDATE tasks SET version = x.version,
    next_run_time = CASE WHEN x.scheduled THEN x.next_run_time ELSE tasks.next_run_time END,
    scheduled_runs = CASE WHEN x.scheduled THEN scheduled_runs + 1 ELSE scheduled_runs END,
    completed_by = CASE WHEN x.scheduled THEN x.completed_by ELSE tasks.completed_by END,
    {_NO_PAUSE_OWED_WHEN.format("(x.scheduled AND x.next_run_time IS NULL)")},
    running_executions = running_executions + 1,
    status = CASE WHEN status = 'paused' THEN 'paused' ELSE 'running' END,
    last_run_time = x.due_at
FROM x WHERE tasks.id = x.task_id AND tasks.version < x.version
"""


_due_many = json_rows_writer(
    _DUE_MANY,
    TaskDue,
    lambda event, recorded: {
        "task_id": event.task_id,
        "execution_id": event.execution_id,
        "version": recorded.version,
        "scheduled": event.trigger == "schedule",
        "next_run_time": event.next_run_time,
        "due_at": event.due_at,
        "completed_by": event.completed_by,
    },
)


# ExecutionCompleted's three steps in one statement, for runs of distinct tasks: the resting
# status is worked out from the counts as the same statement leaves them.
_COMPLETED_MANY = """
WITH x AS (
    SELECT * FROM json_to_recordset($1::json) AS x(execution_id uuid, status text,
        error_message text)
), done AS (
    UPDATE task_runs SET status = x.status FROM x
    WHERE task_runs.execution_id = x.execution_id AND task_runs.status = 'running'
    RETURNING task_runs.task_id, task_runs.scheduled, x.execution_id, x.status, x.error_message
)
UPDATE tasks SET
    failed_run = CASE WHEN {owes} THEN done.execution_id ELSE failed_run END,
    failed_run_error = CASE WHEN {owes} THEN done.error_message ELSE failed_run_error END,
    running_executions = greatest(running_executions - 1, 0),
    execution_count = execution_count + 1,
    last_execution_status = done.status,
    status = CASE
        WHEN tasks.status = 'paused' THEN 'paused'
        WHEN greatest(running_executions - 1, 0) > 0 THEN 'running'
        WHEN completed_by IS NOT NULL THEN 'completed'
        WHEN next_run_time IS NOT NULL OR recurrence_type <> 'once' THEN 'pending'
        WHEN done.status = 'failed' THEN 'failed'
        WHEN done.status = 'success' THEN 'completed'
        ELSE tasks.status
    END
FROM done WHERE tasks.id = done.task_id
""".format(
    # pause_on_failure: the ticker appends the TaskPaused this owes (docs/scheduling.md).
    owes="(done.scheduled AND done.status = 'failed' AND pause_on_failure "
    "AND tasks.status <> 'paused' AND next_run_time IS NOT NULL)"
)


_completed_many = json_rows_writer(
    _COMPLETED_MANY,
    ExecutionCompleted,
    lambda event, _: {
        "execution_id": event.execution_id,
        "status": event.status,
        "error_message": event.error_message,
    },
)


_BATCHED: dict[type, Batched] = {
    TaskCreated: Batched(keys=lambda event: (("task", event.task_id),), write=_insert_many),
    TaskDue: Batched(
        keys=lambda event: (("task", event.task_id), ("run", event.execution_id)),
        write=_due_many,
    ),
    ExecutionCompleted: Batched(
        keys=lambda event: (("task", event.task_id), ("run", event.execution_id)),
        write=_completed_many,
    ),
}
