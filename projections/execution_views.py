"""Reading the executions tables: the Execution shape of the contract, newest first."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import msgspec

from projections.base import Db


class DeviceResult(msgspec.Struct, kw_only=True):
    status: str
    exit_code: int | None
    stdout: str
    stderr: str
    error: str | None


class ExecutionResult(msgspec.Struct, kw_only=True):
    devices_targeted: int
    devices_succeeded: int
    devices_failed: int
    execution_details: dict[str, DeviceResult]


class Execution(msgspec.Struct, kw_only=True):
    id: str
    task_id: str
    trigger: str
    scheduled_for: datetime
    started_at: datetime | None
    completed_at: datetime | None
    status: str
    error_message: str | None
    result: ExecutionResult


class ExecutionPage(msgspec.Struct):
    items: list[Execution]
    total: int


async def list_executions(db: Db, task_id: str, limit: int, offset: int) -> ExecutionPage:
    rows = await db.fetch(
        """
        SELECT id::text, task_id::text, trigger, scheduled_for, started_at, completed_at,
            status, error_message, devices_targeted, devices_succeeded, devices_failed,
            count(*) OVER () AS total
        FROM executions WHERE task_id = $1
        ORDER BY scheduled_for DESC, id LIMIT $2 OFFSET $3
        """,
        task_id,
        limit,
        offset,
    )
    if rows:
        total = rows[0]["total"]
    else:
        total = await db.fetchval("SELECT count(*) FROM executions WHERE task_id = $1", task_id)
    details = await _details(db, [row["id"] for row in rows])
    items = [
        Execution(
            id=row["id"],
            task_id=row["task_id"],
            trigger=row["trigger"],
            scheduled_for=row["scheduled_for"],
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            status=row["status"],
            error_message=row["error_message"],
            result=ExecutionResult(
                devices_targeted=row["devices_targeted"],
                devices_succeeded=row["devices_succeeded"],
                devices_failed=row["devices_failed"],
                execution_details=details.get(row["id"], {}),
            ),
        )
        for row in rows
    ]
    return ExecutionPage(items=items, total=total)


async def _details(db: Db, execution_ids: list[str]) -> dict[str, dict[str, DeviceResult]]:
    if not execution_ids:
        return {}
    rows = await db.fetch(
        """
        SELECT execution_id::text, device_id, status, exit_code, stdout, stderr, error
        FROM execution_results WHERE execution_id = ANY ($1::uuid[])
        ORDER BY device_id
        """,
        execution_ids,
    )
    details: dict[str, dict[str, DeviceResult]] = defaultdict(dict)
    for row in rows:
        details[row["execution_id"]][row["device_id"]] = DeviceResult(
            status=row["status"],
            exit_code=row["exit_code"],
            stdout=row["stdout"],
            stderr=row["stderr"],
            error=row["error"],
        )
    return details
