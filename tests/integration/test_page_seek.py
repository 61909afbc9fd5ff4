"""Deep pages of the executions and task lists entered at their hour (projections/page_seek.py)
are the pages OFFSET gives: every run exactly once across the pages, in list order, ties in
scheduled_for or created_at included (many at one instant, and some right on an hour's edge),
for the admin and for an owner."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from projections import execution_views, page_seek, task_views
from projections.base import Db
from projections.execution_views import ExecutionFilter, find_executions
from projections.task_views import TaskFilter, list_tasks
from services.infra.db import create_pool

FILTERS = (
    ExecutionFilter(),
    ExecutionFilter(status="failed"),
    ExecutionFilter(trigger="manual"),
    ExecutionFilter(status="success", trigger="schedule"),
    ExecutionFilter(owner="alice"),  # her tasks' runs and those she asked for on bob's
    ExecutionFilter(owner="alice", status="success"),
    ExecutionFilter(owner="bob", trigger="schedule"),
)
LIMIT = 7  # prime: pages straddle the hours and the groups of ties at every possible point


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(database_url, max_size=2)
    try:
        yield created
    finally:
        await created.close()


async def add_runs(pool: asyncpg.Pool) -> None:
    """150 runs over four hours: groups of up to 9 at the same instant, 20 on an hour's edge;
    of ten tasks, alice owns five, bob three, and two are gone; alice asked for every 7th run."""
    await pool.execute(
        """
        INSERT INTO tasks (id, version, user_id, name, task_type, status, recurrence_type,
            recurrence_config, created_at, updated_at)
        SELECT md5('task' || n)::uuid, 1, CASE WHEN n <= 5 THEN 'alice' ELSE 'bob' END,
            'task ' || n, 'command', 'pending', 'daily', '{}', now(), now()
        FROM generate_series(1, 8) AS n
        """
    )
    await pool.execute(
        """
        INSERT INTO executions (id, task_id, task_type, trigger, scheduled_for, status,
            requested_by)
        SELECT gen_random_uuid(), md5('task' || (1 + n % 10))::uuid, 'command',
            CASE WHEN n % 3 = 0 THEN 'manual' ELSE 'schedule' END,
            CASE WHEN n <= 20 THEN timestamptz '2026-11-30 10:00:00+00'
                 ELSE timestamptz '2026-11-30 08:00:00+00' + interval '1 minute' * (n / 9 * 13)
            END,
            CASE WHEN n % 4 = 0 THEN 'failed' ELSE 'success' END,
            CASE WHEN n % 7 = 0 THEN 'alice' END
        FROM generate_series(1, 150) AS n
        """
    )


async def every_page(pool: asyncpg.Pool, where: ExecutionFilter) -> list[list[str]]:
    first = await find_executions(pool, where, LIMIT, 0)
    pages = [[run.id for run in first.items]]
    for offset in range(LIMIT, first.total, LIMIT):
        page = await find_executions(pool, where, LIMIT, offset)
        assert page.total == first.total
        pages.append([run.id for run in page.items])
    return pages


async def test_pages_entered_at_their_hour_hold_every_run_once_in_list_order(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_runs(pool)
    monkeypatch.setattr(execution_views, "SEEK_FROM", 1)  # every page but the ends seeks
    seeks = inner_pages = 0
    real_cut = page_seek.hour_cut

    async def counted_cut(
        db: Db,
        owner: str | None,
        status: str | None,
        trigger: str | None,
        skip: int,
        newest_first: bool,
    ) -> page_seek.Cut | None:
        nonlocal seeks
        seeks += 1
        return await real_cut(db, owner, status, trigger, skip, newest_first)

    monkeypatch.setattr(execution_views, "hour_cut", counted_cut)
    for where in FILTERS:
        conditions = ["true"]
        if where.owner:
            conditions.append(f"(t.user_id = '{where.owner}' OR e.requested_by = '{where.owner}')")
        if where.status:
            conditions.append(f"e.status = '{where.status}'")
        if where.trigger:
            conditions.append(f"e.trigger = '{where.trigger}'")
        in_order = [
            row["id"]
            for row in await pool.fetch(
                "SELECT e.id::text FROM executions e LEFT JOIN tasks t ON t.id = e.task_id "
                f"WHERE {' AND '.join(conditions)} ORDER BY e.scheduled_for DESC, e.id"
            )
        ]
        assert len(in_order) > 3 * LIMIT, where
        pages = await every_page(pool, where)
        assert [run for page in pages for run in page] == in_order, where
        assert all(len(page) == LIMIT for page in pages[:-1]), where
        inner_pages += len(pages) - 2
    # Every page but the first and the last (no row to pass) was entered at its hour.
    assert seeks == inner_pages


async def add_tasks(pool: asyncpg.Pool) -> None:
    """150 tasks over four hours of created_at, in groups of up to 9 at the same instant and
    10 on each of two hours' edges (one in each half of the list): alice owns every third, bob
    the others."""
    await pool.execute(
        """
        INSERT INTO tasks (id, version, user_id, name, task_type, status, recurrence_type,
            recurrence_config, created_at, updated_at)
        SELECT gen_random_uuid(), 1, CASE WHEN n % 3 = 0 THEN 'alice' ELSE 'bob' END,
            'task ' || n, 'command', 'pending', 'daily', '{}',
            CASE WHEN n <= 10 THEN timestamptz '2026-11-30 10:00:00+00'
                 WHEN n <= 20 THEN timestamptz '2026-11-30 11:00:00+00'
                 ELSE timestamptz '2026-11-30 08:00:00+00' + interval '1 minute' * (n / 9 * 13)
            END,
            now()
        FROM generate_series(1, 150) AS n
        """
    )
    # A task deleted and one moved to another owner: the counts follow both.
    await pool.execute("DELETE FROM tasks WHERE name = 'task 42'")
    await pool.execute("UPDATE tasks SET user_id = 'alice' WHERE name = 'task 43'")


async def test_task_pages_entered_at_their_hour_hold_every_task_once_in_list_order(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_tasks(pool)
    monkeypatch.setattr(task_views, "SEEK_FROM", 1)  # every page but the ends seeks
    seeks = inner_pages = 0
    real_cut = page_seek.task_hour_cut

    async def counted_cut(
        db: Db, owner: str | None, skip: int, newest_first: bool
    ) -> page_seek.Cut | None:
        nonlocal seeks
        cut = await real_cut(db, owner, skip, newest_first)
        seeks += cut is not None
        return cut

    monkeypatch.setattr(task_views, "task_hour_cut", counted_cut)
    for owner in (None, "alice", "bob"):
        in_order = [
            row["id"]
            for row in await pool.fetch(
                "SELECT id::text FROM tasks WHERE $1::text IS NULL OR user_id = $1 "
                "ORDER BY created_at DESC, id",
                owner,
            )
        ]
        assert len(in_order) > 3 * LIMIT, owner
        first = await list_tasks(pool, TaskFilter(owner=owner, limit=LIMIT))
        pages = [[task.id for task in first.items]]
        for offset in range(LIMIT, first.total, LIMIT):
            page = await list_tasks(pool, TaskFilter(owner=owner, limit=LIMIT, offset=offset))
            assert page.total == first.total
            pages.append([task.id for task in page.items])
        assert [task for page in pages for task in page] == in_order, owner
        assert all(len(page) == LIMIT for page in pages[:-1]), owner
        inner_pages += len(pages) - 2
    assert seeks == inner_pages
