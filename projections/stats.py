"""The numbers of GET /api/schedule/stats, from the tasks table and the hourly execution counts."""

from __future__ import annotations

from datetime import datetime

import msgspec

from projections.base import Db
from projections.snapshot import in_one_snapshot


class Bucket(msgspec.Struct, kw_only=True):
    start: datetime
    succeeded: int
    failed: int


class Stats(msgspec.Struct, kw_only=True):
    total_tasks: int
    by_status: dict[str, int]
    by_type: dict[str, int]
    executions_total: int
    executions_success: int
    executions_failed: int
    success_rate: float
    # Finished executions per hour over the last 24 hours and per day (UTC) over the last 7.
    executions_by_hour: list[Bucket] = []
    executions_by_day: list[Bucket] = []


async def stats(db: Db, owner: str | None) -> Stats:
    """Counts over the tasks owner can see (every task when owner is None), read from the
    counts the triggers of migrations/0001 keep: a few rows, whatever the number of tasks."""
    return await in_one_snapshot(db, lambda conn: _stats(conn, owner))


async def _stats(db: Db, owner: str | None) -> Stats:
    rows = await db.fetch(
        """
        SELECT status, task_type, sum(n)::bigint AS n FROM task_counts
        WHERE $1::text IS NULL OR user_id = $1
        GROUP BY status, task_type HAVING sum(n) > 0
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
        SELECT coalesce(sum(succeeded), 0) AS succeeded, coalesce(sum(failed), 0) AS failed
        FROM execution_totals_by_owner WHERE $1::text IS NULL OR user_id = $1
        """,
        owner,
    )
    assert counts is not None
    succeeded, failed = int(counts["succeeded"]), int(counts["failed"])
    by_hour = await _buckets(db, owner, "hour", 24)
    by_day = await _buckets(db, owner, "day", 7)
    total = succeeded + failed
    return Stats(
        total_tasks=sum(by_status.values()),
        by_status=by_status,
        by_type=by_type,
        executions_total=total,
        executions_success=succeeded,
        executions_failed=failed,
        success_rate=round(succeeded / total, 4) if total else 0.0,
        executions_by_hour=by_hour,
        executions_by_day=by_day,
    )


async def _buckets(db: Db, owner: str | None, unit: str, count: int) -> list[Bucket]:
    """One bucket per hour or day, the current one last, empty ones included."""
    rows = await db.fetch(
        f"""
        WITH slots AS (
            SELECT generate_series(
                date_trunc('{unit}', now() AT TIME ZONE 'UTC') - interval '1 {unit}' * ($2 - 1),
                date_trunc('{unit}', now() AT TIME ZONE 'UTC'),
                interval '1 {unit}'
            ) AT TIME ZONE 'UTC' AS start
        )
        SELECT slots.start, coalesce(sum(s.succeeded), 0) AS succeeded,
            coalesce(sum(s.failed), 0) AS failed
        FROM slots
        LEFT JOIN execution_stats_by_owner s
            ON s.hour >= slots.start AND s.hour < slots.start + interval '1 {unit}'
            AND ($1::text IS NULL OR s.user_id = $1)
        GROUP BY slots.start ORDER BY slots.start
        """,
        owner,
        count,
    )
    return [
        Bucket(start=row["start"], succeeded=int(row["succeeded"]), failed=int(row["failed"]))
        for row in rows
    ]
