"""`deployx replay` rebuilds beside the live tables: readers keep answering, a kill -9 in the
middle of the swap leaves the old tables whole, and --projection rebuilds only the one named."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from events.task import TaskCreated
from projections import PROJECTIONS
from projections.tasks import TasksProjection
from services.engine.projector import run_projector
from services.engine.replay import choose, rebuild
from services.infra.store import StreamAppend, append_many, new_event_id
from tests.e2e.processes import deployx_command, wait_until
from tests.integration.test_projections import read_tables, run_scenario
from tests.stack import Stack

pytestmark = pytest.mark.e2e

Tables = dict[str, list[dict[str, Any]]]
# Enough events that a replay takes a while: readers must overlap it many times.
TASKS = 3000


async def many_tasks(stack: Stack, count: int) -> None:
    now = datetime.now(UTC)
    items = []
    for index in range(count):
        task_id = str(uuid.uuid4())
        created = TaskCreated(
            task_id=task_id,
            user_id="olga",
            name=f"nightly {index}",
            task_type="command",
            recurrence_type="daily",
            recurrence_config={"time": "02:30", "timezone": "Europe/Berlin"},
            device_ids=["dev-1"],
            task_payload={"command_payload": {"command": "uname -a"}},
            created_at=now,
            next_run_time=now + timedelta(days=1),
        )
        items.append(StreamAppend(task_id, "command", 0, created, new_event_id()))
    for start in range(0, count, 1000):
        await append_many(stack.pool, items[start : start + 1000])

    async def projected() -> bool:
        return bool(await stack.pool.fetchval("SELECT count(*) FROM tasks") >= count)

    await wait_until(projected, 120, "the tasks to be projected", [])


async def history(stack: Stack, database_url: str) -> tuple[asyncpg.Connection, Tables]:
    """A scenario of every kind of event and TASKS more tasks, projected; the read tables."""
    await run_scenario(stack)
    await many_tasks(stack, TASKS)
    conn = await asyncpg.connect(database_url)
    return conn, await read_tables(conn)


async def test_readers_keep_answering_while_a_replay_rebuilds_the_tables(
    stack: Stack, database_url: str
) -> None:
    conn, before = await history(stack, database_url)
    admin = await stack.client("root", "admin")
    # A reader that would rather fail than queue behind a replay holding the tables.
    await conn.execute("SET lock_timeout = '2s'")
    counts: list[int] = []
    pages: list[int] = []
    try:
        replay = asyncio.create_task(rebuild(database_url))
        while not replay.done():
            counts.append(int(await conn.fetchval("SELECT count(*) FROM tasks")))
            status, page = await admin.get("/api/schedule/tasks?limit=5")
            assert status == 200, page
            pages.append(page["total"])
            await asyncio.sleep(0.02)
        applied = await replay
        # And after the swap, on connections that prepared their statements before it.
        counts.append(int(await conn.fetchval("SELECT count(*) FROM tasks")))
        status, page = await admin.get("/api/schedule/tasks?limit=5")
        assert status == 200, page
        pages.append(page["total"])
        after = await read_tables(conn)
        total = await conn.fetchval("SELECT count(*) FROM events")
    finally:
        await conn.close()
    assert applied == total
    assert len(counts) >= 5, "the readers did not overlap the replay"
    assert set(counts) == {len(before["tasks"])}
    assert set(pages) == {len(before["tasks"])}
    assert after == before


async def relations(conn: asyncpg.Connection) -> dict[str, int]:
    """Each read table's relation id: which table, the old or a rebuilt one, is live."""
    tables = [table for projection in PROJECTIONS for table in projection.tables]
    return {table: await conn.fetchval("SELECT $1::regclass::oid", table) for table in tables}


async def test_a_replay_killed_in_the_middle_of_its_swap_leaves_the_old_tables_and_reruns(
    stack: Stack, database_url: str
) -> None:
    conn, before = await history(stack, database_url)
    old = await relations(conn)
    blocker = await asyncpg.connect(database_url)
    env = dict(os.environ) | {"DEPLOYX_DATABASE_URL": database_url}
    try:
        # A reader holding the last table the swap takes: the swap gets the others and waits
        # for it, again and again, and is killed while waiting.
        last = PROJECTIONS[-1].tables[-1]
        blocking = blocker.transaction()
        await blocking.start()
        await blocker.fetch(f"SELECT * FROM {last} LIMIT 1")
        proc = await asyncio.create_subprocess_exec(
            *deployx_command(), "replay", env=env, stdout=asyncio.subprocess.DEVNULL
        )

        async def waiting(granted: bool = False) -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = $1::regclass "
                    "AND granted = $2 AND mode = 'AccessExclusiveLock')",
                    last,
                    granted,
                )
            )

        await wait_until(waiting, 120, f"the replay's swap to wait for {last}", [], 0.002)
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        await blocking.rollback()

        async def let_go() -> bool:
            return not await waiting() and not await waiting(granted=True)

        await wait_until(let_go, 30, "the killed replay's session to end", [])
        assert await relations(conn) == old
        assert await read_tables(conn) == before
        assert await rebuild(database_url) == await conn.fetchval("SELECT count(*) FROM events")
        new = await relations(conn)
        assert await read_tables(conn) == before
        assert not await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'deployx_%'"
        )
    finally:
        await blocker.close()
        await conn.close()
    assert all(new[table] != old[table] for table in old), (old, new)


async def test_replay_of_one_projection_rebuilds_only_its_tables(
    stack: Stack, database_url: str
) -> None:
    await run_scenario(stack)
    conn = await asyncpg.connect(database_url)
    try:
        before = await read_tables(conn)
        await conn.execute("UPDATE tasks SET name = 'scribbled'")
        await conn.execute("UPDATE executions SET status = 'scribbled'")
        await rebuild(database_url, projections=choose(["tasks"]))
        after = await read_tables(conn)
    finally:
        await conn.close()
    assert after["tasks"] == before["tasks"]
    assert {row["status"] for row in after["executions"]} == {"scribbled"}

    env = dict(os.environ) | {"DEPLOYX_DATABASE_URL": database_url}
    proc = await asyncio.create_subprocess_exec(
        *deployx_command(),
        "replay",
        "--projection",
        "task",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode != 0
    assert "projection: no projection is called task" in out.decode(), out.decode()


async def test_a_projection_built_by_another_version_rebuilds_itself_and_switches_over(
    stack: Stack, database_url: str
) -> None:
    await run_scenario(stack)
    conn = await asyncpg.connect(database_url)
    stop = asyncio.Event()
    try:
        before = await read_tables(conn)
        # What an older release of the tasks projection left behind: other rows, version 0.
        await conn.execute("UPDATE checkpoints SET projection_version = 0 WHERE name = 'tasks'")
        await conn.execute("UPDATE tasks SET name = 'built by version 0'")
        old = await relations(conn)
        # A projector of this release starts beside the running one.
        projector = asyncio.create_task(run_projector(stack.pool, stop))

        async def switched() -> bool:
            version = await conn.fetchval(
                "SELECT projection_version FROM checkpoints WHERE name = 'tasks'"
            )
            _, metrics = await stack.anonymous().get("/metrics")
            shown = f'deployx_projection_version{{projection="tasks"}} {version:.1f}'
            return version == TasksProjection.version and shown in metrics

        await wait_until(switched, 60, "the tasks projection to be rebuilt", [])
        after = await read_tables(conn)
        new = await relations(conn)
        total = await conn.fetchval("SELECT count(*) FROM events")
    finally:
        stop.set()
        await conn.close()
    await projector
    assert after == before
    assert new["tasks"] != old["tasks"]
    assert new["executions"] == old["executions"]  # only the stale projection was rebuilt
    _, metrics = await stack.anonymous().get("/metrics")
    assert f'deployx_projection_rebuild_events{{projection="tasks"}} {total:.1f}' in metrics
    assert 'deployx_projection_rebuild_behind_events{projection="tasks"} 0.0' in metrics
    assert f'deployx_projection_version{{projection="tasks"}} {TasksProjection.version:.1f}' in (
        metrics
    )
