"""The executions read tables: one row per run, its per-device results, and hourly stats."""

from __future__ import annotations

from events.codec import RecordedEvent
from events.execution import DeviceResultRecorded, ExecutionCompleted, ExecutionStarted
from events.task import TaskDue
from projections.base import Db


class ExecutionsProjection:
    name = "executions"
    tables = ("executions", "execution_results", "execution_stats_hourly")

    async def apply(self, conn: Db, recorded: RecordedEvent) -> None:
        event = recorded.event
        match event:
            case TaskDue():
                # The run exists from the moment it is due, so a GET after "execute now" shows it.
                await conn.execute(
                    """
                    INSERT INTO executions (id, task_id, task_type, trigger, scheduled_for,
                        status)
                    VALUES ($1, $2, $3, $4, $5, 'running')
                    ON CONFLICT (id) DO NOTHING
                    """,
                    event.execution_id,
                    event.task_id,
                    recorded.category,
                    event.trigger,
                    event.scheduled_for,
                )
            case ExecutionStarted():
                await conn.execute(
                    """
                    UPDATE executions SET started_at = $2, deadline = $3, devices_targeted = $4
                    WHERE id = $1
                    """,
                    event.execution_id,
                    event.started_at,
                    event.deadline,
                    len(event.device_ids),
                )
            case DeviceResultRecorded():
                await conn.execute(
                    """
                    INSERT INTO execution_results (execution_id, device_id, status, exit_code,
                        stdout, stderr, error, recorded_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                    ON CONFLICT (execution_id, device_id) DO NOTHING
                    """,
                    event.execution_id,
                    event.device_id,
                    event.status,
                    event.exit_code,
                    event.stdout,
                    event.stderr,
                    event.error,
                    event.recorded_at,
                )
            case ExecutionCompleted():
                await _completed(conn, event)


async def _completed(conn: Db, event: ExecutionCompleted) -> None:
    finished = await conn.fetchval(
        """
        UPDATE executions SET status = $2, completed_at = $3, error_message = $4,
            devices_targeted = $5, devices_succeeded = $6, devices_failed = $7
        WHERE id = $1 AND status = 'running'
        RETURNING task_id
        """,
        event.execution_id,
        event.status,
        event.completed_at,
        event.error_message,
        event.devices_targeted,
        event.devices_succeeded,
        event.devices_failed,
    )
    if finished is None:
        return  # already applied
    succeeded = 1 if event.status == "success" else 0
    await conn.execute(
        """
        INSERT INTO execution_stats_hourly (task_id, hour, succeeded, failed)
        VALUES ($1, date_trunc('hour', $2::timestamptz), $3, $4)
        ON CONFLICT (task_id, hour) DO UPDATE SET
            succeeded = execution_stats_hourly.succeeded + EXCLUDED.succeeded,
            failed = execution_stats_hourly.failed + EXCLUDED.failed
        """,
        finished,
        event.completed_at,
        succeeded,
        1 - succeeded,
    )
