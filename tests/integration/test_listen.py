"""The reconnecting LISTEN: its connection killed by the server, it says so and comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.infra.db import create_pool
from services.infra.listen import Listener

CHANNEL = "test_listen"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await create_pool(database_url, max_size=4)
    try:
        yield created
    finally:
        await created.close()


async def test_a_killed_listen_connection_is_taken_up_again(pool: asyncpg.Pool) -> None:
    payloads: asyncio.Queue[str] = asyncio.Queue()
    gaps: asyncio.Queue[None] = asyncio.Queue()
    listener = Listener(pool, CHANNEL, payloads.put_nowait, lambda: gaps.put_nowait(None))
    await listener.start()
    try:
        await pool.execute("SELECT pg_notify($1, 'before')", CHANNEL)
        assert await asyncio.wait_for(payloads.get(), 5) == "before"

        killed = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%' AND datname = current_database()"
        )
        assert killed == 1
        await asyncio.wait_for(gaps.get(), 5)  # the loss is noticed at once
        await asyncio.wait_for(gaps.get(), 5)  # and once the LISTEN is back

        await pool.execute("SELECT pg_notify($1, 'after')", CHANNEL)
        assert await asyncio.wait_for(payloads.get(), 5) == "after"
    finally:
        await listener.stop()
    assert pool.get_size() - pool.get_idle_size() == 0, "the listener kept a connection"
