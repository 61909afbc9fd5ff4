"""The numbers of GET /api/schedule/stats, from the tasks table and the hourly execution counts."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from projections.base import Db


class Bucket(msgspec.Struct, kw_only=True):
    start: datetime
    succeeded: int
    failed: int
    canceled: int


class Stats(msgspec.Struct, kw_only=True):
    total_tasks: int
    by_status: dict[str, int]
    by_type: dict[str, int]
    # Finished runs: success + failed + canceled. A canceled run is neither a success nor a
    # failure: success_rate is success / (success + failed), 0.0 before any.
    executions_total: int
    executions_success: int
    executions_failed: int
    executions_canceled: int
    success_rate: float
    # Finished runs by the hour (UTC) they were due or asked for, over the last 24 hours, and
    # by day over the last 7.
    executions_by_hour: list[Bucket] = []
    executions_by_day: list[Bucket] = []


async def stats(db: Db, owner: str | None) -> Stats:
    """Counts over the tasks and runs owner can see (everything when owner is None), as the
    lists show them: an owner's runs are those of their tasks and those they asked for on
    tasks not theirs (ad-hoc runs, reruns). Read from the counts the triggers of migrations/0001,
    0004 and 0005 keep: a few rows, whatever the number of tasks and runs. One statement, so
    one snapshot and one round trip."""
    row = await (db.fetchrow(_ADMINS) if owner is None else db.fetchrow(_OWNERS, owner))
    assert row is not None
    by_status: dict[str, int] = {}
    by_type: dict[str, int] = {}
    for status, task_type, n in zip(
        row["statuses"] or [], row["types"] or [], row["counts"] or [], strict=True
    ):
        by_status[status] = by_status.get(status, 0) + n
        by_type[task_type] = by_type.get(task_type, 0) + n
    succeeded, failed, canceled = int(row["succeeded"]), int(row["failed"]), int(row["canceled"])
    decided = succeeded + failed
    return Stats(
        total_tasks=sum(by_status.values()),
        by_status=by_status,
        by_type=by_type,
        executions_total=decided + canceled,
        executions_success=succeeded,
        executions_failed=failed,
        executions_canceled=canceled,
        success_rate=round(succeeded / decided, 4) if decided else 0.0,
        executions_by_hour=_buckets(row, "hour"),
        executions_by_day=_buckets(row, "day"),
    )


def _buckets(row: asyncpg.Record, unit: str) -> list[Bucket]:
    return [
        Bucket(start=start, succeeded=int(ok), failed=int(bad), canceled=int(off))
        for start, ok, bad, off in zip(
            row[f"{unit}_starts"],
            row[f"{unit}_ok"],
            row[f"{unit}_failed"],
            row[f"{unit}_canceled"],
            strict=True,
        )
    ]


# The last 7 days' runs per hour, status: $1 is the owner in _owned_runs.
_WEEK = "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '6 days'"
_EVERY_RUN = f"""
    SELECT hour, status, n FROM execution_counts_by_hour WHERE hour >= {_WEEK}
"""
# The runs of the owner's tasks, counted, and those they asked for on tasks not theirs (few,
# through executions_list_by_requester), as the owner's executions list has them.
_ASKED = """
    SELECT date_trunc('hour', e.scheduled_for, 'UTC') AS hour, e.status, 1 AS n
    FROM executions e LEFT JOIN tasks t ON t.id = e.task_id
    WHERE e.requested_by = $1 AND t.user_id IS DISTINCT FROM $1
"""


def _slots(unit: str, count: int) -> str:
    """One bucket per hour or day from `week`, the current one last, empty ones included: four
    arrays. Each hour of `week` goes to its bucket by equality (a hash join), not by range."""
    return f"""
        SELECT array_agg(start ORDER BY start) AS {unit}_starts,
            array_agg(succeeded ORDER BY start) AS {unit}_ok,
            array_agg(failed ORDER BY start) AS {unit}_failed,
            array_agg(canceled ORDER BY start) AS {unit}_canceled
        FROM (
            SELECT slots.start, coalesce(sum(w.succeeded), 0)::bigint AS succeeded,
                coalesce(sum(w.failed), 0)::bigint AS failed,
                coalesce(sum(w.canceled), 0)::bigint AS canceled
            FROM (
                SELECT generate_series(
                    date_trunc('{unit}', now() AT TIME ZONE 'UTC')
                        - interval '1 {unit}' * {count - 1},
                    date_trunc('{unit}', now() AT TIME ZONE 'UTC'),
                    interval '1 {unit}'
                ) AT TIME ZONE 'UTC' AS start
            ) AS slots
            LEFT JOIN week w
                ON date_trunc('{unit}', w.hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' = slots.start
            GROUP BY slots.start
        ) AS buckets
    """


def _statement(kinds: str, runs: str, hours: str) -> str:
    """The stats from the task counts `kinds` picks, the runs per status `runs` (status, n)
    and the last week's runs per hour `hours` (hour, status, n): one statement text for the
    admin, another for an owner. A shared '$1 IS NULL OR user_id = $1' let PostgreSQL's
    generic plan (from a prepared statement's sixth run) read every owner's rows for the
    admin's stats: 50-100 ms instead of 1."""
    return f"""
    WITH week AS MATERIALIZED (
        SELECT hour, sum(n) FILTER (WHERE status = 'success') AS succeeded,
            sum(n) FILTER (WHERE status = 'failed') AS failed,
            sum(n) FILTER (WHERE status = 'canceled') AS canceled
        FROM ({hours}) AS hours GROUP BY hour
    )
    SELECT tasks.*, runs.*, hours.*, days.*
    FROM (
        SELECT array_agg(status) AS statuses, array_agg(task_type) AS types,
            array_agg(n) AS counts
        FROM (
            SELECT status, task_type, sum(n)::bigint AS n FROM task_counts
            WHERE {kinds}
            GROUP BY status, task_type HAVING sum(n) > 0
        ) AS kinds
    ) AS tasks, (
        SELECT coalesce(sum(n) FILTER (WHERE status = 'success'), 0) AS succeeded,
            coalesce(sum(n) FILTER (WHERE status = 'failed'), 0) AS failed,
            coalesce(sum(n) FILTER (WHERE status = 'canceled'), 0) AS canceled
        FROM ({runs}) AS runs
    ) AS runs,
    ({_slots("hour", 24)}) AS hours,
    ({_slots("day", 7)}) AS days
    """


_ADMINS = _statement(
    "true",
    "SELECT status, n FROM execution_counts",
    _EVERY_RUN,
)
_OWNERS = _statement(
    "user_id = $1",
    f"""
    SELECT status, n FROM execution_counts_by_owner WHERE user_id = $1
    UNION ALL SELECT status, n FROM ({_ASKED}) AS asked
    """,
    f"""
    SELECT hour, status, n FROM execution_counts_by_owner_hour
    WHERE user_id = $1 AND hour >= {_WEEK}
    UNION ALL SELECT hour, status, n FROM ({_ASKED} AND e.scheduled_for >= {_WEEK}) AS asked
    """,
)
