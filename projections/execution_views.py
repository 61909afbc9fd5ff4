"""Reading the executions tables: the Execution shape of the contract, newest first."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import msgspec

from projections.base import Db
from projections.page_seek import SEEK_FROM, hour_cut
from projections.snapshot import in_one_snapshot

_delivery = msgspec.json.Decoder(dict[str, Any])


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
    task_id: str | None  # None for an ad-hoc run
    name: str
    task_type: str
    trigger: str  # "schedule" | "manual" | "rerun" | "adhoc"
    rerun_of: str | None
    scheduled_for: datetime
    started_at: datetime | None
    completed_at: datetime | None
    status: str  # "running" | "success" | "failed" | "canceled"
    error_message: str | None
    cancel_requested_at: datetime | None
    delivery: dict[str, Any]
    result: ExecutionResult


class ExecutionFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Who asks (None: an admin, who sees every run) and what they look for."""

    owner: str | None = None
    task_id: str | None = None
    status: str | None = None
    device_id: str | None = None
    trigger: str | None = None


class ExecutionPage(msgspec.Struct):
    items: list[Execution]
    total: int


_COLUMNS = """
    e.id::text, e.task_id::text, coalesce(nullif(e.name, ''), t.name, '') AS name, e.task_type,
    e.trigger, e.rerun_of::text, e.scheduled_for, e.started_at, e.completed_at, e.status,
    e.error_message, e.cancel_requested_at, e.delivery::text, e.devices_targeted,
    e.devices_succeeded, e.devices_failed
"""


async def list_executions(db: Db, task_id: str, limit: int, offset: int) -> ExecutionPage:
    """A task's runs, newest first (whoever may see the task sees them all)."""
    return await find_executions(db, ExecutionFilter(task_id=task_id), limit, offset)


async def find_executions(db: Db, where: ExecutionFilter, limit: int, offset: int) -> ExecutionPage:
    """One page, newest first, and the exact total (from execution_counts where the filter
    allows, migrations/0001); the page's ids come from an index in list order, read from the
    end nearer to the offset, and only those runs are read whole."""
    return await in_one_snapshot(db, lambda conn: _find_executions(conn, where, limit, offset))


async def _find_executions(
    db: Db, where: ExecutionFilter, limit: int, offset: int
) -> ExecutionPage:
    total = await _total(db, where)
    if offset >= total:
        return ExecutionPage(items=[], total=total)
    limit = min(limit, total - offset)
    conditions, values = _conditions(where)
    newest_first = offset + limit <= total // 2
    if newest_first:
        order = "e.scheduled_for DESC, e.id"
    else:  # nearer the end: walk the index backwards, past fewer entries
        order, offset = "e.scheduled_for, e.id DESC", total - offset - limit
    if offset >= SEEK_FROM and _counted_by_hour(where):
        cut = await hour_cut(db, where.owner, where.status, where.trigger, offset, newest_first)
        if cut is not None:  # enter the index at the page's hour instead of passing the others
            values.append(cut.edge)
            side = "<" if newest_first else ">="
            conditions.append(f"e.scheduled_for {side} ${len(values)}")
            offset = cut.skip
    count = len(values)
    rows = await db.fetch(
        f"""
        SELECT {_COLUMNS} FROM (
            SELECT e.id FROM executions e
            WHERE {" AND ".join(conditions)}
            ORDER BY {order} LIMIT ${count + 1} OFFSET ${count + 2}
        ) AS page JOIN executions e ON e.id = page.id LEFT JOIN tasks t ON t.id = e.task_id
        ORDER BY e.scheduled_for DESC, e.id
        """,
        *values,
        limit,
        offset,
    )
    details = await _details(db, [row["id"] for row in rows])
    return ExecutionPage(items=[_execution(row, details) for row in rows], total=total)


def _counted_by_hour(where: ExecutionFilter) -> bool:
    """Whether the runs per hour count this filter's runs (migrations/0004, 0005)."""
    return where.task_id is None and where.device_id is None


def _conditions(where: ExecutionFilter) -> tuple[list[str], list[object]]:
    conditions: list[str] = ["true"]
    values: list[object] = []

    def value(of: object) -> str:
        values.append(of)
        return f"${len(values)}"

    if where.owner is not None:
        # A non-admin sees the runs of its own tasks (as long as the task exists) and the
        # ad-hoc runs and reruns it asked for. The owner's task ids are hashed once and each
        # run checked against them: joining every run walked with `tasks` (a lookup each, ten
        # runs looked at for each of a tenth's owner) cost 4 to 10 times more.
        owner = value(where.owner)
        conditions.append(
            f"(e.task_id IN (SELECT id FROM tasks WHERE user_id = {owner})"
            f" OR e.requested_by = {owner})"
        )
    if where.task_id is not None:
        conditions.append(f"e.task_id = {value(where.task_id)}::uuid")
    if where.status is not None:
        conditions.append(f"e.status = {value(where.status)}")
    if where.trigger is not None:
        conditions.append(f"e.trigger = {value(where.trigger)}")
    if where.device_id is not None:
        device = value(where.device_id)
        conditions.append(
            f"e.id IN (SELECT r.execution_id FROM execution_results r WHERE r.device_id = {device})"
        )
    return conditions, values


async def _total(db: Db, where: ExecutionFilter) -> int:
    """The count from execution_counts when no filter needs the rows themselves."""
    if where.task_id is not None or where.device_id is not None:
        conditions, values = _conditions(where)
        counted = await db.fetchval(
            f"SELECT count(*) FROM executions e WHERE {' AND '.join(conditions)}",
            *values,
        )
        return int(counted)
    if where.owner is None:
        counted = await db.fetchval(
            """
            SELECT coalesce(sum(n), 0) FROM execution_counts
            WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR trigger = $2)
            """,
            where.status,
            where.trigger,
        )
        return int(counted)
    # The runs of the owner's tasks, counted, and those they asked for on other tasks.
    counted = await db.fetchval(
        """
        SELECT (SELECT coalesce(sum(n), 0) FROM execution_counts_by_owner
                WHERE user_id = $1 AND ($2::text IS NULL OR status = $2)
                    AND ($3::text IS NULL OR trigger = $3))
            + (SELECT count(*) FROM executions e LEFT JOIN tasks t ON t.id = e.task_id
               WHERE e.requested_by = $1 AND t.user_id IS DISTINCT FROM $1
                   AND ($2::text IS NULL OR e.status = $2)
                   AND ($3::text IS NULL OR e.trigger = $3))
        """,
        where.owner,
        where.status,
        where.trigger,
    )
    return int(counted)


async def get_execution(db: Db, execution_id: str, owner: str | None) -> Execution | None:
    row = await db.fetchrow(
        f"""
        SELECT {_COLUMNS} FROM executions e LEFT JOIN tasks t ON t.id = e.task_id
        WHERE e.id = $2 AND ($1::text IS NULL OR t.user_id = $1 OR e.requested_by = $1)
        """,
        owner,
        execution_id,
    )
    if row is None:
        return None
    return _execution(row, await _details(db, [row["id"]]))


def _execution(row: Any, details: dict[str, dict[str, DeviceResult]]) -> Execution:
    return Execution(
        id=row["id"],
        task_id=row["task_id"],
        name=row["name"],
        task_type=row["task_type"],
        trigger=row["trigger"],
        rerun_of=row["rerun_of"],
        scheduled_for=row["scheduled_for"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        status=row["status"],
        error_message=row["error_message"],
        cancel_requested_at=row["cancel_requested_at"],
        delivery=_delivery.decode(row["delivery"]),
        result=ExecutionResult(
            devices_targeted=row["devices_targeted"],
            devices_succeeded=row["devices_succeeded"],
            devices_failed=row["devices_failed"],
            execution_details=details.get(row["id"], {}),
        ),
    )


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
