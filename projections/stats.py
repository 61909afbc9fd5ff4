"""The numbers of GET /api/schedule/stats, from the tasks table and the hourly execution counts."""

from __future__ import annotations

import msgspec

from projections.base import Db


class Stats(msgspec.Struct, kw_only=True):
    total_tasks: int
    by_status: dict[str, int]
    by_type: dict[str, int]
    executions_total: int
    executions_success: int
    executions_failed: int
    success_rate: float


async def stats(db: Db, owner: str | None) -> Stats:
    """Counts over the tasks owner can see (every task when owner is None)."""
    rows = await db.fetch(
        """
        SELECT status, task_type, count(*) AS n FROM tasks
        WHERE $1::text IS NULL OR user_id = $1
        GROUP BY status, task_type
        """,
        owner,
    )
    by_status: dict[str, int] = {}
    by_type: dict[str, int] = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["n"]
        by_type[row["task_type"]] = by_type.get(row["task_type"], 0) + row["n"]
    counts = await db.fetchrow(
        """
        SELECT coalesce(sum(s.succeeded), 0) AS succeeded, coalesce(sum(s.failed), 0) AS failed
        FROM execution_stats_hourly s JOIN tasks t ON t.id = s.task_id
        WHERE $1::text IS NULL OR t.user_id = $1
        """,
        owner,
    )
    assert counts is not None
    succeeded, failed = int(counts["succeeded"]), int(counts["failed"])
    total = succeeded + failed
    return Stats(
        total_tasks=sum(by_status.values()),
        by_status=by_status,
        by_type=by_type,
        executions_total=total,
        executions_success=succeeded,
        executions_failed=failed,
        success_rate=round(succeeded / total, 4) if total else 0.0,
    )
