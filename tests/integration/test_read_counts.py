"""The counts behind list totals and stats (migrations/0001) follow every kind of write to the
read tables: multi-row and single-row statements, status changes, deletes, a run recorded
before its task, and TRUNCATE; they always equal a count of the tables themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.engine.replay import choose, rebuild
from services.infra.db import create_pool

# Each count table as the triggers keep it, and as a count of the tables says it must be.
KEPT_AND_COUNTED = {
    "task_counts": (
        "SELECT user_id, status, task_type, n FROM task_counts WHERE n <> 0",
        "SELECT user_id, status, task_type, count(*) FROM tasks GROUP BY 1, 2, 3",
    ),
    "execution_counts": (
        "SELECT status, trigger, n FROM execution_counts WHERE n <> 0",
        "SELECT status, trigger, count(*) FROM executions GROUP BY 1, 2",
    ),
    "execution_counts_by_owner": (
        "SELECT user_id, status, trigger, n FROM execution_counts_by_owner WHERE n <> 0",
        "SELECT t.user_id, e.status, e.trigger, count(*) FROM executions e "
        "JOIN tasks t ON t.id = e.task_id GROUP BY 1, 2, 3",
    ),
    "execution_stats_by_owner": (
        "SELECT user_id, hour, succeeded, failed FROM execution_stats_by_owner "
        "WHERE succeeded <> 0 OR failed <> 0",
        "SELECT t.user_id, s.hour, sum(s.succeeded), sum(s.failed) FROM execution_stats_hourly s "
        "JOIN tasks t ON t.id = s.task_id GROUP BY 1, 2",
    ),
    "execution_totals_by_owner": (
        "SELECT user_id, succeeded, failed FROM execution_totals_by_owner "
        "WHERE succeeded <> 0 OR failed <> 0",
        "SELECT t.user_id, sum(s.succeeded), sum(s.failed) FROM execution_stats_hourly s "
        "JOIN tasks t ON t.id = s.task_id GROUP BY 1",
    ),
    "execution_counts_by_hour": (
        "SELECT hour, status, trigger, n FROM execution_counts_by_hour WHERE n <> 0",
        "SELECT date_trunc('hour', scheduled_for, 'UTC'), status, trigger, count(*) "
        "FROM executions GROUP BY 1, 2, 3",
    ),
    "execution_counts_by_owner_hour": (
        "SELECT user_id, hour, status, trigger, n FROM execution_counts_by_owner_hour WHERE n <> 0",
        "SELECT t.user_id, date_trunc('hour', e.scheduled_for, 'UTC'), e.status, e.trigger, "
        "count(*) FROM executions e JOIN tasks t ON t.id = e.task_id GROUP BY 1, 2, 3, 4",
    ),
    "task_counts_by_hour": (
        "SELECT hour, n FROM task_counts_by_hour WHERE n <> 0",
        "SELECT date_trunc('hour', created_at, 'UTC'), count(*) FROM tasks GROUP BY 1",
    ),
    "task_counts_by_owner_hour": (
        "SELECT user_id, hour, n FROM task_counts_by_owner_hour WHERE n <> 0",
        "SELECT user_id, date_trunc('hour', created_at, 'UTC'), count(*) FROM tasks GROUP BY 1, 2",
    ),
}


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(database_url, max_size=2)
    try:
        yield created
    finally:
        await created.close()


async def assert_counts_exact(pool: asyncpg.Pool) -> None:
    for table, (kept, counted) in KEPT_AND_COUNTED.items():
        have = sorted(tuple(row) for row in await pool.fetch(kept))
        want = sorted(tuple(row) for row in await pool.fetch(counted))
        assert have == want, table


def task(n: int) -> str:
    return f"00000000-0000-0000-0000-{n:012d}"


async def add_tasks(pool: asyncpg.Pool, numbers: range, user: str, status: str) -> None:
    await pool.execute(
        """
        INSERT INTO tasks (id, version, user_id, name, task_type, status, recurrence_type,
            recurrence_config, created_at, updated_at)
        SELECT ('00000000-0000-0000-0000-' || lpad(n::text, 12, '0'))::uuid, 1, $2,
            'task ' || n, CASE WHEN n % 2 = 0 THEN 'command' ELSE 'file_deployment' END, $3,
            'daily', '{}', now(), now()
        FROM unnest($1::int[]) AS n
        """,
        list(numbers),
        user,
        status,
    )


async def add_runs(pool: asyncpg.Pool, task_number: int, count: int, trigger: str) -> None:
    await pool.execute(
        """
        INSERT INTO executions (id, task_id, task_type, trigger, scheduled_for, status)
        SELECT gen_random_uuid(), $1::uuid, 'command', $3, now(), 'running'
        FROM generate_series(1, $2)
        """,
        task(task_number),
        count,
        trigger,
    )


async def record_finished(pool: asyncpg.Pool, task_number: int, ok: int, failed: int) -> None:
    await pool.execute(
        """
        INSERT INTO execution_stats_hourly (task_id, hour, succeeded, failed)
        VALUES ($1::uuid, date_trunc('hour', now()), $2, $3)
        ON CONFLICT (task_id, hour) DO UPDATE SET
            succeeded = execution_stats_hourly.succeeded + EXCLUDED.succeeded,
            failed = execution_stats_hourly.failed + EXCLUDED.failed
        """,
        task(task_number),
        ok,
        failed,
    )


async def test_counts_follow_inserts_updates_deletes_and_truncate(pool: asyncpg.Pool) -> None:
    await add_tasks(pool, range(1, 11), "alice", "pending")
    await add_tasks(pool, range(11, 15), "bob", "paused")
    await add_runs(pool, 1, 5, "schedule")
    await add_runs(pool, 12, 3, "manual")
    await add_runs(pool, 99, 2, "schedule")  # recorded before its task reached the tasks table
    await record_finished(pool, 1, 3, 1)
    await record_finished(pool, 1, 1, 0)  # the same hour again: an update of the row
    await record_finished(pool, 99, 2, 0)
    await assert_counts_exact(pool)

    await add_tasks(pool, range(99, 100), "bob", "pending")  # now its runs are bob's
    await pool.execute(
        "UPDATE tasks SET status = 'running' WHERE id = ANY($1::uuid[])",
        [task(1), task(2), task(12)],
    )
    await pool.execute("UPDATE tasks SET name = 'renamed' WHERE id = $1::uuid", task(3))
    await pool.execute(
        "UPDATE executions SET status = 'success' WHERE id IN "
        "(SELECT id FROM executions WHERE task_id = $1::uuid LIMIT 2)",
        task(1),
    )
    await pool.execute(  # a run moved to another hour, one deleted
        "UPDATE executions SET scheduled_for = scheduled_for - interval '2 hours' WHERE id IN "
        "(SELECT id FROM executions WHERE task_id = $1::uuid LIMIT 1)",
        task(12),
    )
    await pool.execute(
        "DELETE FROM executions WHERE id IN (SELECT id FROM executions WHERE task_id = $1::uuid "
        "LIMIT 1)",
        task(12),
    )
    await assert_counts_exact(pool)
    assert await pool.fetchval("SELECT sum(n) FROM task_counts WHERE user_id = 'bob'") == 5

    # A deleted task leaves its owner's counts; the admin's run counts keep its runs.
    await pool.execute("DELETE FROM tasks WHERE id = ANY($1::uuid[])", [task(1), task(11)])
    await assert_counts_exact(pool)
    assert await pool.fetchval("SELECT sum(n) FROM execution_counts") == 9
    assert (
        await pool.fetchval(
            "SELECT coalesce(sum(n), 0) FROM execution_counts_by_owner WHERE user_id = 'alice'"
        )
        == 0
    )

    await pool.execute("TRUNCATE tasks")
    await assert_counts_exact(pool)
    await pool.execute("TRUNCATE executions, execution_stats_hourly")
    await assert_counts_exact(pool)
    assert await pool.fetchval("SELECT count(*) FROM execution_counts WHERE n <> 0") == 0


async def test_a_refresh_counts_again_what_the_tables_hold(pool: asyncpg.Pool) -> None:
    await add_tasks(pool, range(1, 6), "alice", "pending")
    await add_runs(pool, 2, 4, "schedule")
    await record_finished(pool, 2, 2, 2)
    # Counts gone astray (as after swapping in only some rebuilt tables): counted again.
    await pool.execute("UPDATE task_counts SET n = n + 7")
    await pool.execute("DELETE FROM execution_totals_by_owner")
    await pool.execute("SELECT read_counts_refresh()")
    await assert_counts_exact(pool)


async def test_a_rebuild_swaps_in_counts_of_what_it_rebuilt(
    pool: asyncpg.Pool, database_url: str
) -> None:
    # Rows no event backs: a rebuild from the (empty) log leaves none of them.
    await add_tasks(pool, range(1, 6), "alice", "pending")
    await add_runs(pool, 2, 4, "schedule")
    await record_finished(pool, 2, 2, 2)

    await rebuild(database_url, projections=choose(["executions"]))
    await assert_counts_exact(pool)
    assert await pool.fetchval("SELECT sum(n) FROM task_counts") == 5

    await rebuild(database_url)
    await assert_counts_exact(pool)
    assert await pool.fetchval("SELECT count(*) FROM task_counts WHERE n <> 0") == 0
