"""Reading the tasks table: the Task shape of the contract, lookups, and the filtered list."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from events.execution import Delivery
from projections.base import Db
from projections.page_seek import SEEK_FROM, task_hour_cut
from projections.snapshot import in_one_snapshot

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
    values["recurrence_config"] = _config_decoder.decode(row["recurrence_config"])
    values["task_payload"] = _config_decoder.decode(row["task_payload"])
    values["delivery"] = _delivery_decoder.decode(row["delivery"])
    return Task(**values)


async def get_task(db: Db, task_id: str) -> Task | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM tasks WHERE id = $1", task_id)
    return to_task(dict(row)) if row else None


async def get_tasks(db: Db, task_ids: list[str]) -> dict[str, Task]:
    """The tasks among task_ids that exist, by id: one query for many."""
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM tasks WHERE id = ANY($1::uuid[])", task_ids)
    return {row["id"]: to_task(dict(row)) for row in rows}


async def list_tasks(db: Db, query: TaskFilter) -> TaskPage:
    """One page, newest first, and the exact total.

    The total comes from task_counts (kept by triggers, migrations/0001) unless q is given; the
    page's ids come from an index in list order, read from the end nearer to the offset, and
    only those rows are read whole.
    """
    return await in_one_snapshot(db, lambda conn: _list_tasks(conn, query))


async def _list_tasks(db: Db, query: TaskFilter) -> TaskPage:
    conditions, values = _where(query)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    if query.q is None:
        total = await db.fetchval(
            """
            SELECT coalesce(sum(n), 0)::bigint FROM task_counts
            WHERE ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR status = $2)
                AND ($3::text IS NULL OR task_type = $3)
            """,
            query.owner,
            query.status,
            query.task_type,
        )
    else:
        total = await db.fetchval(f"SELECT count(*) FROM tasks {where}", *values)
    if query.offset >= total:
        return TaskPage(items=[], total=total)
    limit = min(query.limit, total - query.offset)
    newest_first = query.offset + limit <= total // 2
    if newest_first:
        order, offset = "created_at DESC, id", query.offset
    else:  # nearer the end: walk the index backwards, past fewer entries
        order, offset = "created_at, id DESC", total - query.offset - limit
    if offset >= SEEK_FROM and _counted_by_hour(query):
        cut = await task_hour_cut(db, query.owner, offset, newest_first)
        if cut is not None:  # enter the index at the page's hour instead of passing the others
            values.append(cut.edge)
            conditions.append(f"created_at {'<' if newest_first else '>='} ${len(values)}")
            where = f"WHERE {' AND '.join(conditions)}"
            offset = cut.skip
    count = len(values)
    rows = await db.fetch(
        f"""
        SELECT {_COLUMNS} FROM (
            SELECT id FROM tasks {where} ORDER BY {order} LIMIT ${count + 1} OFFSET ${count + 2}
        ) AS page JOIN tasks USING (id)
        ORDER BY created_at DESC, id
        """,
        *values,
        limit,
        offset,
    )
    return TaskPage(items=[to_task(dict(row)) for row in rows], total=total)


def _counted_by_hour(query: TaskFilter) -> bool:
    """Whether the tasks per hour count this filter's tasks (migrations/0006): every task's,
    or one owner's. A status changes with every run, so it is not counted by hour; a type
    filter's list is a third of the tasks at most in practice, and walked."""
    return (
        query.status is None
        and query.task_type is None
        and query.q is None
        and (query.group_id is None)
    )


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
