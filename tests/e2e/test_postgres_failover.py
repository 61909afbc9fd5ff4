"""A failover as the services see it (issue 15): PostgreSQL comes back read-only (a standby, or
a demoted primary), then writable. Writes answer 503 `unavailable` meanwhile, never 500; reads
go on; the services wait it out; afterwards every write is accepted and nothing was lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.infra.auth import create_token
from services.infra.embedded import free_port
from services.infra.embedded_postgres import EmbeddedPostgres
from tests.e2e.api import TASKS, command_task
from tests.e2e.own_postgres import (  # noqa: F401 (the fixtures database_url and pool)
    assert_came_through,
    own_database_url,
    own_pool,
    own_postgres,
    start_services,
)
from tests.e2e.processes import Services, wait_until
from tests.e2e.test_crash_recovery import relay_caught_up
from tests.stack import Client

pytestmark = pytest.mark.e2e

READ_ONLY_FOR = 6.0
RECOVERY_TIMEOUT = 30.0


@pytest.fixture
def postgres() -> Iterator[EmbeddedPostgres]:
    with own_postgres("deployx-failover-pg-", fsync=False) as server:
        yield server


async def restart(postgres: EmbeddedPostgres, *, read_only: bool) -> None:
    """Restarts the server taking writes or not, as a failover's servers change roles."""
    conn = await asyncpg.connect(postgres.dsn)
    try:
        await conn.execute("SET default_transaction_read_only = off")
        value = "on" if read_only else "off"
        await conn.execute(f"ALTER SYSTEM SET default_transaction_read_only = {value}")
    finally:
        await conn.close()
    await asyncio.to_thread(postgres.stop)
    await asyncio.to_thread(postgres.start)


async def test_a_read_only_database_answers_503_then_everything_resumes(
    postgres: EmbeddedPostgres,
    services: Services,
    pool: asyncpg.Pool,
    nats_url: str,
) -> None:
    port = free_port()
    await start_services(services, port)
    token = await create_token(pool, "ops", "admin")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        api = Client(session, f"http://127.0.0.1:{port}", token)
        before = [(await api.post(TASKS, command_task(name=f"before {n}")))[1] for n in range(3)]
        every = command_task(
            name="every second",
            recurrence_type="interval",
            recurrence_config={"every_seconds": 1},
        )
        status, interval = await api.post(TASKS, every)
        assert status == 201, interval

        await restart(postgres, read_only=True)
        read_only_at = datetime.now(UTC)
        writes: list[tuple[int, Any, float]] = []
        reads: list[int] = []
        deadline = time.monotonic() + READ_ONLY_FOR
        while time.monotonic() < deadline:
            began = time.monotonic()
            status, body = await api.post(TASKS, command_task(name="while read-only"))
            writes.append((status, body, time.monotonic() - began))
            reads.append((await api.get(TASKS))[0])
            await asyncio.sleep(0.3)
        async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
            ready_status, ready = response.status, await response.json()

        await restart(postgres, read_only=False)
        writable_at = datetime.now(UTC)

        async def accepted() -> bool:
            return (await api.post(TASKS, command_task(name="after")))[0] == 201

        back = await wait_until(accepted, RECOVERY_TIMEOUT, "a write to be accepted", services.all)

        async def fired_again() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT count(*) FROM events WHERE type = 'TaskDue' "
                    "AND data ->> 'task_id' = $1 AND recorded_at > $2",
                    interval["id"],
                    writable_at,
                )
            )

        await wait_until(fired_again, RECOVERY_TIMEOUT, "the ticker to fire again", services.all)
        assert (await api.post(f"{TASKS}/{interval['id']}/pause"))[0] == 200
        await wait_until(lambda: relay_caught_up(pool), RECOVERY_TIMEOUT, "the relay", services.all)
        status, listed = await api.get(f"{TASKS}?limit=100")
        assert status == 200

    wrong = [(status, body) for status, body, _ in writes if status != 503]
    assert writes and not wrong, f"writes to a read-only database that did not answer 503: {wrong}"
    assert all(body["error"]["code"] == "unavailable" for _, body, _ in writes)
    assert all("read-only" in body["error"]["message"] for _, body, _ in writes)
    assert max(seconds for _, _, seconds in writes) < 2.0
    assert set(reads) == {200}, f"reads while read-only: {reads}"
    assert ready_status == 503 and ready["checks"]["database"].startswith("read-only"), ready
    names = {task["name"] for task in listed["items"]}
    assert {task["name"] for task in before} <= names and "after" in names
    assert "while read-only" not in names, "a write that answered 503 was stored"
    fired_while_read_only = await pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'TaskDue' AND recorded_at BETWEEN $1 AND $2",
        read_only_at + timedelta(seconds=1),
        writable_at - timedelta(seconds=1),
    )
    assert fired_while_read_only == 0
    await assert_came_through(pool, nats_url, services)
    print(f"\nwrites accepted again {back:.2f} s after PostgreSQL came back writable")
