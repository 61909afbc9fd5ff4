"""Finishes executions left `running` past their deadline, e.g. after every executor died."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import structlog

from events.base import Event
from events.execution import DeviceResultRecorded, ExecutionCompleted, ExecutionStarted
from services.infra.store import ConcurrencyError, append, read_stream

log = structlog.get_logger("deployx.reconciler")

# Past its deadline by this much, a running execution has no executor left to finish it.
MARGIN = timedelta(seconds=60)
# An execution no executor ever started is given up after this long.
NEVER_STARTED = timedelta(hours=1)
METADATA = {"user": "scheduler", "service": "reconciler"}

_STALE = """
SELECT id::text, task_id::text FROM executions
WHERE status = 'running' AND task_type = $1
  AND coalesce(deadline + $3::interval, scheduled_for + $4::interval) < $2
ORDER BY scheduled_for LIMIT 100
"""


async def reconcile(pool: asyncpg.Pool, task_type: str, now: datetime) -> int:
    """Closes stale executions of one task type; returns how many it closed."""
    rows = await pool.fetch(_STALE, task_type, now, MARGIN, NEVER_STARTED)
    closed = 0
    for row in rows:
        closed += await _close(pool, row["id"], row["task_id"], task_type, now)
    return closed


async def _close(
    pool: asyncpg.Pool, execution_id: str, task_id: str, task_type: str, now: datetime
) -> int:
    history = await read_stream(pool, execution_id)
    started: ExecutionStarted | None = None
    reported: set[str] = set()
    for recorded in history:
        match recorded.event:
            case ExecutionCompleted():
                return 0  # the read table is behind; nothing to do
            case ExecutionStarted() as event:
                started = event
            case DeviceResultRecorded() as event:
                reported.add(event.device_id)
    targets = started.device_ids if started else []
    missing = [device for device in targets if device not in reported]
    events: list[Event] = [
        DeviceResultRecorded(
            execution_id=execution_id,
            task_id=task_id,
            device_id=device,
            status="timeout",
            error="no result was recorded before the deadline (its executor stopped)",
            recorded_at=now,
        )
        for device in missing
    ]
    succeeded = sum(
        1
        for recorded in history
        if isinstance(recorded.event, DeviceResultRecorded) and recorded.event.status == "success"
    )
    reason = (
        "finished by the reconciler: no executor completed it before its deadline"
        if started
        else "never started: no executor took it within an hour of being due"
    )
    events.append(
        ExecutionCompleted(
            execution_id=execution_id,
            task_id=task_id,
            status="failed",
            completed_at=now,
            error_message=reason,
            devices_targeted=len(targets),
            devices_succeeded=succeeded,
            devices_failed=len(targets) - succeeded,
        )
    )
    try:
        await append(
            pool, execution_id, task_type, events, expected_version=len(history), metadata=METADATA
        )
    except ConcurrencyError:
        return 0  # an executor is still at it after all
    log.warning("execution_reconciled", execution_id=execution_id, reason=reason)
    return 1
