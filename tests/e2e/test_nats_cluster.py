"""A three-node NATS cluster under a burst: kill -9 the node leading DEPLOYX_EVENTS, a ticker and
an executor; then a full NATS restart. Every task still fires once, every execution completes
once, and the log, the read tables and JetStream agree (DESIGN.md problems 3 and 5)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from services.domain.task import CreateTask
from services.domain.task_spec import TaskInput
from services.engine.handler import TASKS, handle
from services.engine.relay import STREAM
from services.infra.embedded import free_port
from services.infra.embedded_cluster import NatsCluster
from tests.e2e.leads import measured_lead, never_due, seconds_until
from tests.e2e.processes import ServiceProcess, Services, wait_until
from tests.e2e.test_crash_recovery import assert_stream_matches_log, relay_caught_up

pytestmark = pytest.mark.e2e

AGENTS = ("cluster-agent-1", "cluster-agent-2", "cluster-agent-3")
BURST = 500
BURST_LEAD = timedelta(seconds=5)
BURST_WINDOW = timedelta(seconds=8)
KILL_AFTER = 100
# A TaskDue whose executor died comes back to the other one after this many seconds.
ACK_WAIT_SECONDS = 5
RECOVERY_TIMEOUT = 90.0
RESTART_BURST = 200
RESTART_WINDOW = timedelta(seconds=10)
# Seconds all three nodes stay stopped: under the agents' three missed heartbeats (15 s).
RESTART_DOWNTIME = 3.0

_COUNT = "SELECT count(*) FROM events WHERE type = $1"
_PER_TASK = "SELECT data ->> 'task_id' AS id, count(*) AS n FROM events WHERE type = $1 GROUP BY 1"
_PER_STREAM = "SELECT stream_id AS id, count(*) AS n FROM events WHERE type = $1 GROUP BY 1"
# Whether an execution whose TaskDue came after `position` has completed: the whole pipeline
# (relay, stream, executor consumer, agents) works again after the kill.
_COMPLETED_AFTER = """
SELECT EXISTS (
    SELECT FROM events due JOIN events done ON done.stream_id = due.data ->> 'execution_id'
    WHERE due.type = 'TaskDue' AND due.position > $1 AND done.type = 'ExecutionCompleted'
)
"""


@dataclass
class Fleet:
    """Two replicas of every service, one API (which keeps the device registry), the agents."""

    services: Services
    projectors: list[ServiceProcess] = field(default_factory=list)
    tickers: list[ServiceProcess] = field(default_factory=list)
    relays: list[ServiceProcess] = field(default_factory=list)
    executors: list[ServiceProcess] = field(default_factory=list)
    apis: list[ServiceProcess] = field(default_factory=list)
    agents: list[ServiceProcess] = field(default_factory=list)

    @property
    def watched(self) -> list[ServiceProcess]:
        return [service for service in self.services.all if service.running]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    nodes = NatsCluster(tmp_path / "nats")
    try:
        await nodes.start()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def services(tmp_path: Path, database_url: str, cluster: NatsCluster) -> Iterator[Services]:
    (tmp_path / "logs").mkdir()
    running = Services(tmp_path / "logs", database_url, cluster.url)
    running.env["DEPLOYX_STREAM_REPLICAS"] = "3"
    running.env["DEPLOYX_EXECUTOR_ACK_WAIT"] = str(ACK_WAIT_SECONDS)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
async def fleet(services: Services, pool: asyncpg.Pool, tmp_path: Path) -> Fleet:
    """Every service started and ready, every agent heartbeating."""
    fleet = Fleet(services)
    for replica in ("a", "b"):
        fleet.projectors.append(services.start(f"projector-{replica}", "projector"))
        fleet.tickers.append(services.start(f"ticker-{replica}", "ticker"))
        fleet.relays.append(services.start(f"relay-{replica}", "relay"))
        fleet.executors.append(
            services.start(f"executor-{replica}", ["executor", "--type", "command"])
        )
    fleet.apis.append(services.start("api", ["api", "--port", str(free_port())]))
    for device in AGENTS:
        args = ["agent", "--device-id", device, "--state-dir", str(tmp_path / "agents" / device)]
        fleet.agents.append(services.start(f"agent-{device}", args))
    ready = {
        "projector_started": fleet.projectors,
        "ticker_started": fleet.tickers,
        "executor_started": fleet.executors,
        "api_listening": fleet.apis,
        "agent_ready": fleet.agents,
    }
    for event, started in ready.items():
        for service in started:
            await service.wait_for_log(event, timeout=60)
    for relay in fleet.relays:
        await relay.wait_for_log("relay_leading", "relay_standby", timeout=60)

    async def online() -> bool:
        rows = await pool.fetch("SELECT device_id FROM device_presence")
        return {row["device_id"] for row in rows} >= set(AGENTS)

    await wait_until(online, 30, "every agent to heartbeat", fleet.watched)
    return fleet


def command_task(run_at: datetime, device_ids: list[str]) -> TaskInput:
    return msgspec.convert(
        {
            "name": f"cluster-test {run_at.isoformat()}",
            "task_type": "command",
            "recurrence_type": "once",
            "recurrence_config": {"run_at": run_at.isoformat(), "timezone": "UTC"},
            "device_ids": device_ids,
            "task_payload": {"command_payload": {"command": "true"}},
        },
        TaskInput,
    )


async def create_tasks(pool: asyncpg.Pool, run_ats: list[datetime]) -> dict[str, list[str]]:
    """One once-task per run_at, each on two of the agents; {task id: its devices}."""
    targets = {
        str(uuid.uuid4()): [AGENTS[i % len(AGENTS)], AGENTS[(i + 1) % len(AGENTS)]]
        for i in range(len(run_ats))
    }
    gate = asyncio.Semaphore(10)

    async def create(task_id: str, run_at: datetime) -> None:
        task = command_task(run_at, targets[task_id])
        command = CreateTask(user_id="cluster-test", task=task, now=datetime.now(UTC))
        async with gate:
            await handle(
                pool, TASKS, task_id, command, metadata={"user": "cluster-test"}, new_stream=True
            )

    await asyncio.gather(
        *(create(task_id, at) for task_id, at in zip(targets, run_ats, strict=True))
    )
    return targets


async def count(pool: asyncpg.Pool, event_type: str) -> int:
    return int(await pool.fetchval(_COUNT, event_type))


async def _at_least(value: Awaitable[Any], wanted: int) -> bool:
    return int(await value) >= wanted


async def unfinished(pool: asyncpg.Pool) -> str:
    """What the log says of the executions that have not completed, for a failure message."""
    rows = await pool.fetch(
        """
        SELECT due.data ->> 'execution_id' AS id, due.recorded_at,
            array_agg(run.type || coalesce(':' || (run.data ->> 'device_id'), '')
                      ORDER BY run.version) FILTER (WHERE run.type IS NOT NULL) AS events
        FROM events due LEFT JOIN events run ON run.stream_id = due.data ->> 'execution_id'
        WHERE due.type = 'TaskDue' GROUP BY 1, 2
        HAVING NOT coalesce(bool_or(run.type = 'ExecutionCompleted'), false)
        ORDER BY 2
        """
    )
    counts = await pool.fetch("SELECT type, count(*) FROM events GROUP BY 1 ORDER BY 1")
    return "\n".join(
        [f"{row['type']}: {row['count']}" for row in counts]
        + [f"{row['id']} due {row['recorded_at']}: {row['events']}" for row in rows[:20]]
    )


async def read_tables_caught_up(pool: asyncpg.Pool, tasks: int) -> bool:
    """Every execution is out of `running` in the read tables and every task is done."""
    done = await pool.fetchval(
        "SELECT count(*) FROM tasks WHERE status = 'completed' AND execution_count = 1"
    )
    running = await pool.fetchval("SELECT count(*) FROM executions WHERE status = 'running'")
    return bool(done == tasks and running == 0)


async def assert_every_task_ran_once(pool: asyncpg.Pool, targets: dict[str, list[str]]) -> None:
    """One TaskDue per task; one ExecutionStarted, one result per targeted device, one
    ExecutionCompleted (success) per execution; the read tables say the same."""
    due = {row["id"]: row["n"] for row in await pool.fetch(_PER_TASK, "TaskDue")}
    assert set(due) == set(targets), f"{len(set(targets) - set(due))} tasks never fired"
    assert set(due.values()) == {1}, {k: n for k, n in due.items() if n != 1}

    rows = await pool.fetch(
        "SELECT data ->> 'task_id' AS task_id, data ->> 'execution_id' AS execution_id "
        "FROM events WHERE type = 'TaskDue'"
    )
    execution_of = {row["task_id"]: row["execution_id"] for row in rows}
    executions = set(execution_of.values())
    assert len(executions) == len(targets)
    for event_type in ("ExecutionStarted", "ExecutionCompleted"):
        per_run = {row["id"]: row["n"] for row in await pool.fetch(_PER_STREAM, event_type)}
        assert set(per_run) == executions, f"executions without exactly one {event_type}"
        assert set(per_run.values()) == {1}, {k: n for k, n in per_run.items() if n != 1}

    statuses = Counter(
        row["status"]
        for row in await pool.fetch(
            "SELECT data ->> 'status' AS status FROM events WHERE type = 'ExecutionCompleted'"
        )
    )
    assert statuses == {"success": len(targets)}, statuses
    results = await pool.fetch(
        "SELECT stream_id, data ->> 'device_id' AS device, data ->> 'status' AS status "
        "FROM events WHERE type = 'DeviceResultRecorded'"
    )
    per_device = Counter((row["stream_id"], row["device"]) for row in results)
    expected = {
        (execution_of[task], device) for task, devices in targets.items() for device in devices
    }
    assert set(per_device) == expected, "results for other devices than the targeted ones"
    assert set(per_device.values()) == {1}, "a device has more than one result for a run"
    assert {row["status"] for row in results} == {"success"}

    table = {
        str(row["id"]): row["status"]
        for row in await pool.fetch("SELECT id, status FROM executions")
    }
    assert set(table) == executions, "the executions table and the log disagree"
    assert set(table.values()) == {"success"}, Counter(table.values())
    tasks = await pool.fetch(
        "SELECT id::text, status, execution_count FROM tasks WHERE id = ANY($1::uuid[])",
        list(targets),
    )
    assert len(tasks) == len(targets)
    assert {(row["status"], row["execution_count"]) for row in tasks} == {("completed", 1)}


async def schedule_burst(
    pool: asyncpg.Pool, size: int, lead: timedelta, window: timedelta
) -> tuple[dict[str, list[str]], datetime]:
    """`size` one-time tasks due evenly over `window`, the first `lead` from now, or later if
    creating them takes longer here; and when the first is due."""
    lead = await measured_lead(lambda n: create_tasks(pool, [never_due()] * n), size, lead)
    begin = datetime.now(UTC) + lead
    started = time.monotonic()
    targets = await create_tasks(pool, [begin + i * (window / size) for i in range(size)])
    created_in = time.monotonic() - started
    assert datetime.now(UTC) < begin, f"creating {size} tasks took {created_in:.1f} s"
    return targets, begin


async def last_due(pool: asyncpg.Pool) -> int:
    return int(
        await pool.fetchval("SELECT coalesce(max(position), 0) FROM events WHERE type = 'TaskDue'")
    )


async def wait_all_done(pool: asyncpg.Pool, fleet: Fleet, size: int) -> None:
    """Until every execution has completed, the relay has published the whole log and the
    read tables show it all."""
    try:
        await wait_until(
            lambda: _at_least(count(pool, "ExecutionCompleted"), size),
            RECOVERY_TIMEOUT,
            f"all {size} executions to complete",
            fleet.watched,
            interval=0.2,
        )
    except AssertionError:
        print(await unfinished(pool))
        raise
    await wait_until(lambda: relay_caught_up(pool), 30.0, "the relay", fleet.watched)
    await wait_until(
        lambda: read_tables_caught_up(pool, size), 30.0, "the read tables", fleet.watched
    )


async def assert_all_agree(
    pool: asyncpg.Pool, cluster: NatsCluster, fleet: Fleet, targets: dict[str, list[str]]
) -> None:
    """Log, read tables and JetStream (read from a node that is up) agree; nothing logged an
    error: NATS going away is met with warnings and retries only."""
    await assert_every_task_ran_once(pool, targets)
    await assert_stream_matches_log(pool, cluster.running[0].url)
    assert fleet.services.errors() == [], "\n".join(fleet.services.errors())


async def test_losing_the_stream_leader_a_ticker_and_an_executor_mid_burst(
    cluster: NatsCluster, fleet: Fleet, pool: asyncpg.Pool
) -> None:
    targets, begin = await schedule_burst(pool, BURST, BURST_LEAD, BURST_WINDOW)
    await wait_until(
        lambda: _at_least(count(pool, "TaskDue"), KILL_AFTER),
        30.0 + seconds_until(begin),
        "the burst",
        fleet.watched,
    )
    leader = await cluster.stream_leader(STREAM)
    cluster.kill(leader)
    fleet.tickers[0].kill9()
    fleet.executors[0].kill9()
    killed_at = time.monotonic()
    fired_at_kill = await count(pool, "TaskDue")
    assert fired_at_kill < BURST, "the burst was over before the kill"
    due_at_kill = await last_due(pool)

    new_leader = await cluster.stream_leader(STREAM, timeout=30.0)
    elected = time.monotonic() - killed_at
    assert new_leader is not leader
    await wait_until(
        lambda: pool.fetchval(_COMPLETED_AFTER, due_at_kill),
        RECOVERY_TIMEOUT,
        "a task fired after the kill to complete",
        fleet.watched,
        interval=0.1,
    )
    recovered = time.monotonic() - killed_at
    await wait_all_done(pool, fleet, BURST)
    all_done = time.monotonic() - killed_at
    killed = {fleet.tickers[0], fleet.executors[0]}
    assert all(s.running for s in fleet.services.all if s not in killed), "a service exited"

    await assert_all_agree(pool, cluster, fleet, targets)
    lateness = await pool.fetchval(
        "SELECT max((data ->> 'lateness_seconds')::float) FROM events WHERE type = 'TaskDue'"
    )
    resent = sum(
        line.get("devices", 0)
        for e in fleet.executors
        for line in e.log_lines()
        if line.get("event") == "jobs_resent"
    )
    print(
        f"\nkilled {leader.server_name} (leader of {STREAM}), a ticker and an executor after "
        f"{fired_at_kill} of {BURST} TaskDue; {new_leader.server_name} led {elected:.1f} s "
        f"later; a task fired after the kill completed {recovered:.1f} s after it, all "
        f"{all_done:.1f} s after it; worst lateness {lateness:.2f} s; {resent} jobs resent"
    )


async def test_every_service_rides_out_a_full_nats_restart(
    cluster: NatsCluster, fleet: Fleet, pool: asyncpg.Pool
) -> None:
    targets, begin = await schedule_burst(pool, RESTART_BURST, BURST_LEAD, RESTART_WINDOW)
    await wait_until(
        lambda: _at_least(count(pool, "TaskDue"), RESTART_BURST // 4),
        30.0 + seconds_until(begin),
        "the burst",
        fleet.watched,
    )
    due_at_stop = await last_due(pool)
    await asyncio.to_thread(cluster.stop)
    stopped_at = time.monotonic()
    await asyncio.sleep(RESTART_DOWNTIME)
    await cluster.start()
    up = time.monotonic() - stopped_at
    await wait_until(
        lambda: pool.fetchval(_COMPLETED_AFTER, due_at_stop),
        RECOVERY_TIMEOUT,
        "a task fired during the outage to complete",
        fleet.watched,
        interval=0.1,
    )
    recovered = time.monotonic() - stopped_at
    await wait_all_done(pool, fleet, RESTART_BURST)
    assert all(service.running for service in fleet.services.all), "a service exited"
    await assert_all_agree(pool, cluster, fleet, targets)
    print(
        f"\nNATS down for {up:.1f} s ({RESTART_DOWNTIME} s stopped, then the restart); a task "
        f"fired while it was down completed {recovered:.1f} s after the stop"
    )
