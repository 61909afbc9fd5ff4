"""Reading the tasks table: the Task shape of the contract, lookups, and the filtered list."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from events.execution import Delivery
from projections.base import Db

_config_decoder = msgspec.json.Decoder(dict[str, Any])


class DeliveryPolicy(Delivery, frozen=True, kw_only=True, omit_defaults=True):
    """A task's `delivery` as the API shows it: the fields that differ from their defaults, as
    in the Execution's `delivery`."""


_delivery_decoder = msgspec.json.Decoder(DeliveryPolicy)


class Task(msgspec.Struct, kw_only=True):
    """A task as the API shows it."""

    id: str
    user_id: str
    name: str
    description: str
    task_type: str
    status: str
    recurrence_type: str
    recurrence_config: dict[str, Any]
    next_run_time: datetime | None
    last_run_time: datetime | None
    last_execution_status: str | None
    execution_count: int
    device_ids: list[str]
    group_ids: list[int]
    task_payload: dict[str, Any]
    misfire_grace_seconds: int
    overlap_policy: str
    jitter_seconds: int
    created_at: datetime
    updated_at: datetime
    version: int
    delivery: DeliveryPolicy
    end_at: datetime | None
    max_runs: int | None
    # Runs the schedule fired so far ("execute now" not counted): what max_runs counts.
    scheduled_runs: int
    pause_on_failure: bool


class TaskPage(msgspec.Struct):
    items: list[Task]
    total: int


class TaskFilter(msgspec.Struct, kw_only=True, frozen=True):
    """A list query; owner None means every user's tasks (admins)."""

    owner: str | None = None
    status: str | None = None
    task_type: str | None = None
    q: str | None = None
    group_id: int | None = None  # tasks that target this group
    limit: int = 50
    offset: int = 0


_COLUMNS = """
    id::text, user_id, name, description, task_type, status, recurrence_type,
    recurrence_config::text, next_run_time, last_run_time, last_execution_status,
    execution_count, device_ids, group_ids, task_payload::text, misfire_grace_seconds,
    overlap_policy, jitter_seconds, created_at, updated_at, version, delivery::text, end_at,
    max_runs, scheduled_runs, pause_on_failure
"""


def to_task(row: Mapping[str, Any]) -> Task:
    values = dict(row)
    values.pop("total", None)
    values["recurrence_config"] = _config_decoder.decode(row["recurrence_config"])
    values["task_payload"] = _config_decoder.decode(row["task_payload"])
    values["delivery"] = _delivery_decoder.decode(row["delivery"])
    return Task(**values)


async def get_task(db: Db, task_id: str) -> Task | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM tasks WHERE id = $1", task_id)
    return to_task(dict(row)) if row else None


async def list_tasks(db: Db, query: TaskFilter) -> TaskPage:
    conditions, values = _where(query)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    count = len(values)
    rows = await db.fetch(
        f"""
        SELECT {_COLUMNS}, count(*) OVER () AS total FROM tasks {where}
        ORDER BY created_at DESC, id LIMIT ${count + 1} OFFSET ${count + 2}
        """,
        *values,
        query.limit,
        query.offset,
    )
    if rows:
        total = rows[0]["total"]
    elif query.offset:
        total = await db.fetchval(f"SELECT count(*) FROM tasks {where}", *values)
    else:
        total = 0
    return TaskPage(items=[to_task(dict(row)) for row in rows], total=total)


def _where(query: TaskFilter) -> tuple[list[str], list[object]]:
    conditions: list[str] = []
    values: list[object] = []
    for column, value in (
        ("user_id", query.owner),
        ("status", query.status),
        ("task_type", query.task_type),
    ):
        if value is not None:
            values.append(value)
            conditions.append(f"{column} = ${len(values)}")
    if query.group_id is not None:
        values.append(query.group_id)
        conditions.append(f"${len(values)} = ANY (group_ids)")
    if query.q:
        escaped = query.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        values.append(f"%{escaped}%")
        conditions.append(f"(name ILIKE ${len(values)} OR description ILIKE ${len(values)})")
    return conditions, values
