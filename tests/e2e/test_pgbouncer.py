"""The services behind PgBouncer in transaction mode (issue 15): DEPLOYX_DATABASE_URL through
the pooler with DEPLOYX_DB_STATEMENT_CACHE_SIZE=0, DEPLOYX_DATABASE_SESSION_URL straight to
PostgreSQL for what needs a session (the relay's leader lock, LISTEN)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from services.infra.auth import create_token
from services.infra.embedded import free_port
from tests.e2e.api import TASKS, command_task
from tests.e2e.processes import Services, wait_until
from tests.e2e.test_crash_recovery import assert_stream_matches_log, relay_caught_up
from tests.pgbouncer import pgbouncer
from tests.stack import Client

pytestmark = pytest.mark.e2e


@pytest.fixture
def bouncer_url(database_url: str) -> Iterator[str]:
    with pgbouncer(database_url) as url:
        yield url


@pytest.fixture
def pooled(
    tmp_path: Path, bouncer_url: str, database_url: str, nats_url: str
) -> Iterator[Services]:
    running = Services(tmp_path, bouncer_url, nats_url)
    running.env["DEPLOYX_DB_STATEMENT_CACHE_SIZE"] = "0"
    running.env["DEPLOYX_DATABASE_SESSION_URL"] = database_url
    try:
        yield running
    finally:
        running.stop_all()


async def test_the_services_work_through_a_transaction_pooler(
    pooled: Services, pool: asyncpg.Pool, bouncer_url: str, nats_url: str
) -> None:
    port = free_port()
    started = [
        (pooled.start("api", ["api", "--port", str(port)]), ("api_listening",)),
        (pooled.start("projector", "projector"), ("projector_started",)),
        (pooled.start("ticker", "ticker"), ("ticker_started",)),
        (pooled.start("relay-a", "relay"), ("relay_leading", "relay_standby")),
        (pooled.start("relay-b", "relay"), ("relay_leading", "relay_standby")),
    ]
    for service, events in started:
        await service.wait_for_log(*events)
    relays = [service for service, _ in started if service.name.startswith("relay")]
    token = await create_token(pool, "ops", "admin")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        api = Client(session, f"http://127.0.0.1:{port}", token)
        slowest = 0.0
        ids = []
        for n in range(20):
            began = time.monotonic()
            status, task = await api.post(TASKS, command_task(name=f"pooled {n}"))
            assert status == 201, task
            slowest = max(slowest, time.monotonic() - began)
            status, read = await api.get(f"{TASKS}/{task['id']}")  # read-your-writes
            assert status == 200 and read["name"] == f"pooled {n}", read
            ids.append(task["id"])
        soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        once = command_task(name="soon", recurrence_type="once", recurrence_config={"run_at": soon})
        status, due = await api.post(TASKS, once)
        assert status == 201, due

        async def fired() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT count(*) FROM events "
                    "WHERE type = 'TaskDue' AND data ->> 'task_id' = $1",
                    due["id"],
                )
            )

        await wait_until(fired, 20, "the ticker to fire through the pooler", pooled.all)
        await wait_until(lambda: relay_caught_up(pool), 20, "the relay to publish", pooled.all)
    await asyncio.sleep(1.5)  # the standby's tries for the lock, more than once
    leading = [relay.name for relay in relays if relay.logged("relay_leading")]
    assert len(leading) == 1, f"relays leading at once: {leading}"
    # Each LISTEN holds a connection of its own, straight to PostgreSQL: its last statement
    # stays the LISTEN (through the pooler, the server connection would move on to others').
    listening = await pool.fetch(
        "SELECT query FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
    )
    channels = {row["query"].split('"')[1] for row in listening}
    assert len(listening) >= 5, listening  # the API's two, the projector's, ticker's, relay's
    assert {"deployx_events", "deployx_projected"} <= channels, channels
    await assert_stream_matches_log(pool, nats_url)
    # Every query went through the pooler: its few server connections served them all.
    assert not pooled.errors(), "\n".join(pooled.errors())
    print(f"\n20 creates through PgBouncer, each read back at once; slowest {slowest:.2f} s")
