"""The sealer follows the gap-free reader: an event that commits late is sealed in its place in
log order, never skipped or sealed out of order, and the chain of many writers verifies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from events.task import TaskPaused
from services.cli.audit import verify_database
from services.engine.follower import follow_log
from services.engine.sealer import seal_all_visible
from services.infra.db import create_pool
from services.infra.store import Connection, append


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(database_url, max_size=20)
    try:
        yield created
    finally:
        await created.close()


def paused(stream: str) -> list[TaskPaused]:
    return [TaskPaused(task_id=stream, paused_at=datetime.now(UTC))]


async def test_an_event_that_commits_late_is_sealed_before_those_after_it(
    pool: asyncpg.Pool, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    slow = await asyncpg.connect(database_url)
    try:
        writing = slow.transaction()
        await writing.start()
        await append(slow, "slow", "command", paused("slow"), expected_version=0)
        # Appended and committed after the slow one took its transaction id.
        await append(pool, "fast", "command", paused("fast"), expected_version=0)
        async with pool.acquire() as conn:
            assert await seal_all_visible(conn) == 0  # held back behind the open transaction
        await writing.commit()
    finally:
        await slow.close()
    async with pool.acquire() as conn:
        assert await seal_all_visible(conn) == 2
    sealed = await pool.fetch("SELECT c.seq, e.stream_id FROM audit_chain c JOIN events e "
                              "ON e.id = c.event_id ORDER BY c.seq")  # fmt: skip
    assert [row["stream_id"] for row in sealed] == ["slow", "fast"]
    assert await verify_database(database_url, {}) == 0
    assert "ok: 2 sealed events intact" in capsys.readouterr().out


async def test_the_chain_of_many_concurrent_writers_verifies(
    pool: asyncpg.Pool, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def writer(number: int) -> None:
        for version in range(25):
            await append(pool, f"w{number}", "command", paused("w"), expected_version=version)

    async def sealer(done: asyncio.Event) -> None:
        async with pool.acquire() as conn:
            while not done.is_set():
                await seal_all_visible(conn)
                await asyncio.sleep(0.001)
            await seal_all_visible(conn)

    done = asyncio.Event()
    sealing = asyncio.create_task(sealer(done))
    await asyncio.gather(*(writer(number) for number in range(12)))
    done.set()
    await sealing
    assert await pool.fetchval("SELECT count(*) FROM audit_chain") == 12 * 25
    assert await verify_database(database_url, {}) == 0
    assert "ok: 300 sealed events intact" in capsys.readouterr().out


async def test_a_reader_of_the_log_outlives_a_failing_step_and_an_outage(
    pool: asyncpg.Pool,
) -> None:
    """A step that raises (a bug, or the database going away) is tried again; the reader does
    not die with it (follower.py, under the sealer and the webhooks enqueuer)."""
    failures: list[BaseException] = [RuntimeError("a bad batch"), ConnectionResetError()]
    stop, steps = asyncio.Event(), 0

    async def step(_conn: Connection) -> int:
        nonlocal steps
        steps += 1
        if failures:
            raise failures.pop(0)
        stop.set()
        return 0

    await asyncio.wait_for(follow_log(pool, stop, "test-reader", step), timeout=10)
    assert steps == 3 and not failures
