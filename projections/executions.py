"""The executions read tables: one row per run, its per-device results, and hourly stats."""

from __future__ import annotations

from datetime import datetime

import msgspec

from events.codec import RecordedEvent
from events.execution import (
    DeviceJobDispatched,
    DeviceResultRecorded,
    DevicesWaiting,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionRequested,
    ExecutionStarted,
)
from events.task import TaskDue
from projections.base import Db

_json = msgspec.json.Encoder()
# A device's row moves pending -> waiting/running -> a final status, never back from final.
_NOT_FINAL = "execution_results.status IN ('pending', 'waiting', 'running')"


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
            case ExecutionRequested():
                await conn.execute(
                    """
                    INSERT INTO executions (id, task_id, task_type, trigger, scheduled_for,
                        status, name, requested_by, rerun_of, delivery)
                    VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $9::jsonb)
                    ON CONFLICT (id) DO NOTHING
                    """,
                    event.execution_id,
                    event.task_id,
                    event.task_type,
                    event.trigger,
                    event.requested_at,
                    event.name,
                    str(recorded.metadata.get("user", "")),
                    event.rerun_of,
                    _json.encode(event.delivery).decode(),
                )
            case ExecutionStarted():
                await conn.execute(
                    """
                    UPDATE executions SET started_at = $2, deadline = $3, devices_targeted = $4,
                        delivery = $5::jsonb
                    WHERE id = $1
                    """,
                    event.execution_id,
                    event.started_at,
                    event.deadline,
                    len(event.device_ids),
                    _json.encode(event.delivery).decode(),
                )
                # One row per target from the start: the run shows who is still pending.
                await conn.execute(
                    """
                    INSERT INTO execution_results (execution_id, device_id, status, recorded_at)
                    SELECT $1, device, 'pending', $3 FROM unnest($2::text[]) AS device
                    ON CONFLICT (execution_id, device_id) DO NOTHING
                    """,
                    event.execution_id,
                    event.device_ids,
                    event.started_at,
                )
            case DeviceJobDispatched():
                await _progress(conn, event.execution_id, event.device_ids, "running",
                                event.dispatched_at)  # fmt: skip
            case DevicesWaiting():
                await _progress(conn, event.execution_id, event.device_ids, "waiting", event.since)
            case ExecutionCancelRequested():
                await conn.execute(
                    "UPDATE executions SET cancel_requested_at = $2 WHERE id = $1",
                    event.execution_id,
                    event.requested_at,
                )
            case DeviceResultRecorded():
                await conn.execute(
                    f"""
                    INSERT INTO execution_results (execution_id, device_id, status, exit_code,
                        stdout, stderr, error, recorded_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                    ON CONFLICT (execution_id, device_id) DO UPDATE SET
                        status = EXCLUDED.status, exit_code = EXCLUDED.exit_code,
                        stdout = EXCLUDED.stdout, stderr = EXCLUDED.stderr,
                        error = EXCLUDED.error, recorded_at = EXCLUDED.recorded_at
                    WHERE {_NOT_FINAL}
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


async def _progress(
    conn: Db, execution_id: str, devices: list[str], status: str, when: datetime
) -> None:
    await conn.execute(
        f"""
        INSERT INTO execution_results (execution_id, device_id, status, recorded_at)
        SELECT $1, device, $3, $4 FROM unnest($2::text[]) AS device
        ON CONFLICT (execution_id, device_id) DO UPDATE SET
            status = EXCLUDED.status, recorded_at = EXCLUDED.recorded_at
        WHERE {_NOT_FINAL}
        """,
        execution_id,
        devices,
        status,
        when,
    )


async def _completed(conn: Db, event: ExecutionCompleted) -> None:
    finished = await conn.fetchval(
        """
        UPDATE executions SET status = $2, completed_at = $3, error_message = $4,
            devices_targeted = $5, devices_succeeded = $6, devices_failed = $7
        WHERE id = $1 AND status = 'running'
        RETURNING coalesce(task_id::text, '')
        """,
        event.execution_id,
        event.status,
        event.completed_at,
        event.error_message,
        event.devices_targeted,
        event.devices_succeeded,
        event.devices_failed,
    )
    if not finished:
        return  # already applied, or an ad-hoc run: no task to count it for
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
