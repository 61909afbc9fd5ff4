"""PostgreSQL stopped for 10 s mid-run and started again: every service rides it out (issue 6).

No event is lost, no task fires twice, the API answers 503 `unavailable` at once while the
database is down and 200 after, and the work due meanwhile runs late, by itself.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest

from services.infra.auth import create_token
from services.infra.embedded import free_port
from services.infra.embedded_postgres import EmbeddedPostgres
from tests.e2e.leads import measured_lead, never_due, seconds_until
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

TASKS = "/api/schedule/tasks"
DEVICES = ("pg-outage-a", "pg-outage-b")
# One-time tasks due every STEP from LEAD on (or later, if creating them takes longer here):
# the outage falls in the middle of them.
ONCE_TASKS = 28
STEP = timedelta(seconds=0.5)
LEAD = timedelta(seconds=3)
# Executions finished before the database goes: it stops while the system is busy.
COMPLETED_BEFORE_OUTAGE = 3
OUTAGE = 10.0
# An answer that waited for the database to come back would take as long as the outage: one
# that takes half of it counts as such a hang. How fast the 503s come is bench/ matter.
CLIENT_TIMEOUT = OUTAGE / 2
MISFIRE_GRACE = 120
RECOVERY_TIMEOUT = 30.0

_CAUGHT_UP = """
SELECT coalesce(bool_and((c.tx_id, c.position) >= (e.tx_id, e.position)), false)
FROM checkpoints c,
     (SELECT tx_id, position FROM events ORDER BY tx_id DESC, position DESC LIMIT 1) e
WHERE c.name = ANY($1)
"""
_UNFINISHED = """
SELECT count(*) FROM events d WHERE d.type = 'TaskDue' AND NOT EXISTS (
    SELECT 1 FROM events c
    WHERE c.type = 'ExecutionCompleted' AND c.stream_id = d.data ->> 'execution_id'
)
"""
_DUE = """
SELECT data ->> 'task_id' AS task_id, data ->> 'execution_id' AS execution_id,
    (data ->> 'scheduled_for')::timestamptz AS scheduled_for,
    (data ->> 'lateness_seconds')::float AS lateness, recorded_at
FROM events WHERE type = 'TaskDue'
"""


class Call(msgspec.Struct, frozen=True):
    """One API call during the outage: its status (None when it failed or timed out)."""

    what: str
    status: int | None
    body: Any
    seconds: float


@pytest.fixture
def postgres() -> Iterator[EmbeddedPostgres]:
    """fsync on: what was committed before a kill must be there after."""
    with own_postgres("deployx-outage-pg-", fsync=True) as server:
        yield server


def once_task(name: str, run_at: datetime) -> dict[str, Any]:
    return {
        "name": name,
        "task_type": "command",
        "recurrence_type": "once",
        "recurrence_config": {"run_at": run_at.isoformat(), "timezone": "UTC"},
        "device_ids": list(DEVICES),
        "misfire_grace_seconds": MISFIRE_GRACE,
        "task_payload": {"command_payload": {"command": "true"}},
    }


def interval_task() -> dict[str, Any]:
    return once_task("every 2 s", datetime.now(UTC)) | {
        "recurrence_type": "interval",
        "recurrence_config": {"every_seconds": 2},
    }


async def timed(what: str, call: Awaitable[tuple[int, Any]]) -> Call:
    started = time.monotonic()
    try:
        status, body = await call
    except (TimeoutError, aiohttp.ClientError) as exc:
        return Call(what, None, repr(exc), time.monotonic() - started)
    return Call(what, status, body, time.monotonic() - started)


async def create(api: Client, body: dict[str, Any]) -> str:
    status, task = await api.post(TASKS, body)
    assert status == 201, task
    return str(task["id"])


async def count(pool: asyncpg.Pool, sql: str, *args: Any) -> int:
    return int(await pool.fetchval(sql, *args))


async def call_through_outage(api: Client, seconds: float) -> tuple[list[Call], list[str]]:
    """Lists and creates tasks for `seconds`, twice a second: every answer, and the names of
    the tasks it tried to create."""
    started = time.monotonic()
    calls: list[Call] = []
    names: list[str] = []
    run_at = datetime.now(UTC) + timedelta(hours=1)
    while time.monotonic() - started < seconds:
        calls.append(await timed("GET tasks", api.get(TASKS)))
        names.append(f"during the outage {uuid.uuid4().hex[:8]}")
        calls.append(await timed("POST task", api.post(TASKS, once_task(names[-1], run_at))))
        await asyncio.sleep(0.5)
    return calls, names


def assert_unavailable(calls: list[Call]) -> None:
    """Every call answered 503 `unavailable` in the contract's error shape, at once."""
    assert calls, "no call was made during the outage"
    wrong = [c for c in calls if c.status != 503 or c.body["error"]["code"] != "unavailable"]
    assert not wrong, f"calls during the outage that did not answer 503 unavailable: {wrong}"
    assert all("database" in c.body["error"]["message"] for c in calls)


async def assert_fired_once(
    pool: asyncpg.Pool, once_ids: list[str], interval_id: str
) -> list[asyncpg.Record]:
    """Every one-time task fired exactly once and none was recorded as missed; no interval
    occurrence fired twice. Returns every TaskDue."""
    due: list[asyncpg.Record] = await pool.fetch(_DUE)
    fires = Counter(row["task_id"] for row in due if row["task_id"] in set(once_ids))
    assert set(fires) == set(once_ids), f"{len(set(once_ids) - set(fires))} tasks never fired"
    assert set(fires.values()) == {1}, f"tasks fired more than once: {fires.most_common(3)}"
    interval_fires = Counter(row["scheduled_for"] for row in due if row["task_id"] == interval_id)
    assert set(interval_fires.values()) == {1}, "an interval occurrence fired twice"
    missed = await count(
        pool,
        "SELECT count(*) FROM events WHERE type = 'RunMissed' AND data ->> 'task_id' = ANY($1)",
        once_ids,
    )
    assert missed == 0, "one-time tasks were recorded as missed"
    return due


@pytest.mark.parametrize("outage", ["stop", "kill"])
async def test_postgres_restart_mid_run_loses_nothing_and_fires_nothing_twice(
    outage: str,
    postgres: EmbeddedPostgres,
    services: Services,
    pool: asyncpg.Pool,
    nats_url: str,
    tmp_path: Path,
) -> None:
    api_port = free_port()
    await start_services(
        services, api_port, executor=True, agents=DEVICES, state_dir=tmp_path / "agents"
    )
    token = await create_token(pool, "ops", "admin")
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        api = Client(session, f"http://127.0.0.1:{api_port}", token)

        async def online() -> bool:
            _, devices = await api.get("/api/devices")
            return set(DEVICES) <= {d["id"] for d in devices["items"] if d["online"]}

        await wait_until(online, 30, "the agents to be online", services.all)
        far = never_due()
        lead = await measured_lead(
            lambda n: asyncio.gather(*(create(api, once_task("sample", far)) for _ in range(n))),
            ONCE_TASKS,
            floor=LEAD,
            sample=5,
        )
        begin = datetime.now(UTC) + lead
        run_ats = [begin + i * STEP for i in range(ONCE_TASKS)]
        once_ids = list(
            await asyncio.gather(
                *(create(api, once_task(f"once {i}", at)) for i, at in enumerate(run_ats))
            )
        )
        assert datetime.now(UTC) < begin, "creating the tasks took longer than their lead"
        interval_id = await create(api, interval_task())
        await wait_until(
            lambda: _at_least(
                count(pool, "SELECT count(*) FROM events WHERE type = 'ExecutionCompleted'"),
                COMPLETED_BEFORE_OUTAGE,
            ),
            15 + seconds_until(begin),
            f"{COMPLETED_BEFORE_OUTAGE} executions to complete",
            services.all,
        )

        await asyncio.to_thread(postgres.stop if outage == "stop" else postgres.kill)
        down_wall = datetime.now(UTC)
        calls, refused_names = await call_through_outage(api, OUTAGE)
        up_wall = datetime.now(UTC)
        await asyncio.to_thread(postgres.start)
        up_at, restarted = time.monotonic(), datetime.now(UTC)

        async def answers() -> bool:
            return (await timed("GET tasks", api.get(TASKS))).status == 200

        api_back = await wait_until(
            answers, RECOVERY_TIMEOUT, "the API to answer 200", services.all
        )
        status, body = await api.post(
            TASKS, once_task("after the outage", up_wall + timedelta(hours=1))
        )
        assert status == 201, body

        async def all_fired() -> bool:
            fired = {row["task_id"] for row in await pool.fetch(_DUE)}
            interval_fired_since = await count(
                pool,
                "SELECT count(*) FROM events WHERE type = 'TaskDue' "
                "AND data ->> 'task_id' = $1 AND recorded_at > $2",
                interval_id,
                up_wall,
            )
            return set(once_ids) <= fired and interval_fired_since > 0

        await wait_until(all_fired, RECOVERY_TIMEOUT, "every task due to fire", services.all)
        # Recurring work came back by itself; stopped now, so that the log can settle.
        status, body = await api.post(f"{TASKS}/{interval_id}/pause")
        assert status == 200, body

        async def settled() -> bool:
            return (
                await count(pool, _UNFINISHED) == 0
                and await relay_caught_up(pool)
                and bool(await pool.fetchval(_CAUGHT_UP, ["tasks", "executions", "devices"]))
            )

        await wait_until(settled, RECOVERY_TIMEOUT, "every execution to finish", services.all)
        settled_in = time.monotonic() - up_at

    assert_unavailable(calls)
    stored = await count(pool, "SELECT count(*) FROM tasks WHERE name = ANY($1)", refused_names)
    assert stored == 0, "a create that answered 503 was stored"

    # Tasks due during the outage fired once it was over, late but within their grace.
    due = await assert_fired_once(pool, once_ids, interval_id)
    during = [
        row
        for row in due
        if row["task_id"] in set(once_ids) and down_wall < row["scheduled_for"] < up_wall
    ]
    assert len(during) >= OUTAGE / STEP.total_seconds() - 2, f"only {len(during)} due in the outage"
    assert all(row["recorded_at"] >= up_wall for row in during), "a task fired while down"
    worst = max(row["lateness"] for row in during)
    assert 0 < worst <= MISFIRE_GRACE

    # Every execution completed exactly once, and none is left running.
    completions = await pool.fetch(
        "SELECT stream_id, recorded_at FROM events WHERE type = 'ExecutionCompleted'"
    )
    completed = Counter(row["stream_id"] for row in completions)
    assert set(completed) == {row["execution_id"] for row in due}
    assert set(completed.values()) == {1}, "an execution completed more than once"
    running = await count(pool, "SELECT count(*) FROM executions WHERE status = 'running'")
    assert running == 0, f"{running} executions stuck in running"
    statuses = Counter(row["status"] for row in await pool.fetch("SELECT status FROM executions"))
    # Ran on the devices, too: no agent looked offline for the heartbeats not recorded meanwhile.
    assert set(statuses) == {"success"}, f"executions: {dict(statuses)}"

    await assert_came_through(pool, nats_url, services)

    finished = {row["stream_id"]: row["recorded_at"] for row in completions}
    overdue_fired = max(row["recorded_at"] for row in during) - restarted
    overdue_done = max(finished[row["execution_id"]] for row in during) - restarted
    print(
        f"\n{outage}: {len(calls)} calls during the {OUTAGE:.0f} s outage answered 503 within "
        f"{max(c.seconds for c in calls) * 1000:.0f} ms; once PostgreSQL was back the API "
        f"answered 200 after {api_back:.2f} s, the {len(during)} tasks due meanwhile had all "
        f"fired after {overdue_fired.total_seconds():.2f} s (up to {worst:.1f} s late) and "
        f"their executions completed after {overdue_done.total_seconds():.2f} s; everything "
        f"settled {settled_in:.2f} s after the restart; executions {dict(statuses)}"
    )


async def _at_least(value: Awaitable[int], wanted: int) -> bool:
    return await value >= wanted
