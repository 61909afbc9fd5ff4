"""Fan-out: command tasks carried to many simulated devices, TaskDue to ExecutionCompleted.

    .venv/bin/python -m bench.fanout [--devices 10000] [--tasks 1000 --per-task 10] [--rounds 3]
        [--cluster]

Starts embedded PostgreSQL (fsync on) and NATS in a temporary directory, applies the schema and
runs `deployx projector`, `relay`, `ticker`, `executor --type command` and `api` (whose registry
turns heartbeats into device_presence rows) as five processes. A sixth process plays --devices
agents on one NATS connection: heartbeats for every device, spread over the agents' 5 s interval,
and a wildcard subscription on deployx.agents.*.jobs that answers each job with an "accepted"
and then a "finished" success JobReport on deployx.agents.<id>.results. A job whose command is
`sleep N` finishes N seconds later, any other at once; a CancelJob of a job still running ends
it "canceled" at once, as the real agent does once its process group is gone
(bench/sim_agents.py).

1. Fan-out: one task naming every device, run with POST /api/schedule/tasks/{id}/execute,
   --rounds times; each round times TaskDue's recorded_at to ExecutionCompleted's (both from the
   events table) and checks that a DeviceResultRecorded of every device is in the log.
2. Burst: --tasks one-time tasks of --per-task devices each, all due at the same whole second
   (TaskCreated appended straight to the log before it); times due -> ExecutionCompleted per
   execution.

--cluster runs on a three-node NATS cluster on loopback instead (streams with 3 replicas,
DEPLOYX_NATS_URL naming every node), with two processes each of the projector, relay, ticker and
executor (one API, which the benchmark talks to): the cost of replication.

--profile DIR records every process with py-spy during both scenarios (collapsed stacks).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench import seal_lag
from bench.create_tasks import percentile
from bench.fire_burst import (
    CLUSTER_SERVICE_REPLICAS,
    Services,
    cluster_env,
    nats_servers,
    replica_names,
    setup_line,
    sleep_until,
    wait_projected,
    wait_settled,
    whole_second_after,
)
from bench.sim_agents import DEVICE_PREFIX, HEARTBEAT_SECONDS, device_ids
from events.task import TaskCreated
from services.domain import task
from services.domain.task_spec import TaskInput
from services.infra.auth import create_token
from services.infra.db import create_pool, ensure_database, migrate
from services.infra.embedded import free_port
from services.infra.embedded_postgres import EmbeddedPostgres
from services.infra.store import StreamAppend, append_many, new_event_id

TASKS = "/api/schedule/tasks"
METADATA = {"user": "bench", "service": "fanout"}
CREATE_CHUNK = 1000
COMMAND = {"command_payload": {"command": "true", "timeout_seconds": 60}}
FANOUT_GOAL = 3.0  # seconds, TaskDue -> ExecutionCompleted of the single fan-out task
BURST_GOAL = 10.0  # seconds, due -> ExecutionCompleted of every execution of the burst


# --- the processes -----------------------------------------------------------------------------


@dataclass
class Stack(Services):
    """The five DeployX services and the simulated agents, each its own process (`replicas`
    of each service but the API)."""

    api_port: int = 0
    devices: int = 0
    announced_interval: float = HEARTBEAT_SECONDS
    agents: dict[str, Any] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)

    def start(self) -> None:
        deployx = str(Path(sys.executable).with_name("deployx"))
        replicated = {
            "projector": [deployx, "projector"],
            "relay": [deployx, "relay"],
            "ticker": [deployx, "ticker"],
            "executor": [deployx, "executor", "--type", "command"],
        }
        self.commands = {
            name: command
            for service, command in replicated.items()
            for name in replica_names(service, self.replicas)
        } | {
            "api": [deployx, "api", "--port", str(self.api_port)],
            "agents": [
                *(sys.executable, "-m", "bench.sim_agents"),
                *("--devices", str(self.devices), "--summary", str(self.summary_path)),
                *("--announced-interval", str(self.announced_interval)),
            ],
        }
        for name, command in self.commands.items():
            self.spawn(name, command)

    def cpu(self) -> dict[str, float]:
        """Each process's CPU seconds, and those the rest of the machine used meanwhile."""
        seconds = super().cpu()
        seconds["other processes"] = machine_busy_seconds() - sum(seconds.values())
        return seconds

    @property
    def summary_path(self) -> Path:
        return self.log_dir / "agents.json"

    def stop(self) -> None:
        super().stop()
        try:
            self.agents = json.loads(self.summary_path.read_text())
        except (OSError, ValueError):
            self.agents = {}

    def agents_summary(self) -> dict[str, Any]:
        """What the simulated agents saw (bench/sim_agents.py), read when they stopped."""
        return self.agents


def machine_busy_seconds() -> float:
    """CPU seconds all processes on this machine have used since boot (Linux /proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is in user already


# --- set-up ------------------------------------------------------------------------------------


async def wait_for(
    what: str,
    check: Callable[[], Awaitable[bool]],
    stack: Stack,
    timeout: float,
    every: float = 0.2,
) -> None:
    """Until `await check()` is true; fails after timeout seconds or when a service died."""
    deadline = time.monotonic() + timeout
    while not await check():
        stack.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout} s")
        await asyncio.sleep(every)


async def wait_api(session: aiohttp.ClientSession, base: str, stack: Stack) -> None:
    async def ready() -> bool:
        try:
            async with session.get(f"{base}/readyz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await wait_for("the API to answer /readyz", ready, stack, 60.0)


async def wait_online(pool: asyncpg.Pool, stack: Stack, devices: int) -> None:
    """Until every device is registered (DeviceRegistered in the log) and heartbeating."""

    async def online() -> bool:
        fresh = await pool.fetchval(
            "SELECT count(*) FROM device_presence "
            "WHERE starts_with(device_id, $1) AND last_seen > now() - make_interval(secs => $2)",
            DEVICE_PREFIX,
            2 * HEARTBEAT_SECONDS,
        )
        registered = await pool.fetchval(
            "SELECT count(*) FROM events WHERE type = 'DeviceRegistered'"
        )
        return bool(fresh == devices and registered >= devices)

    await wait_for(f"{devices:,} devices online and registered", online, stack, 600.0, 1.0)


async def wait_presence_steady(
    pool: asyncpg.Pool, stack: Stack, quiet: float = 5.0, timeout: float = 300.0
) -> float:
    """Until every simulated device is online in the devices table and heartbeating, and the
    registry appended no device event for `quiet` seconds; returns the seconds it waited.

    Under load the registry may fall behind (one append per device that goes offline or comes
    back), and a run started meanwhile finds devices offline: that measures the registry."""
    started = time.perf_counter()

    async def steady() -> bool:
        row = await pool.fetchrow(
            """
            SELECT
                (SELECT count(*) FROM devices WHERE starts_with(id, $1) AND online) AS online,
                (SELECT count(*) FROM device_presence WHERE starts_with(device_id, $1)
                    AND last_seen > now() - make_interval(secs => $2)) AS fresh,
                (SELECT coalesce(extract(epoch FROM now() - max(recorded_at)), 1e9)
                    FROM events WHERE stream_id LIKE 'device-%') AS quiet
            """,
            DEVICE_PREFIX,
            2 * HEARTBEAT_SECONDS,
        )
        assert row is not None
        return bool(
            row["online"] == stack.devices
            and row["fresh"] == stack.devices
            and row["quiet"] >= quiet
        )

    try:
        await wait_for("every device steadily online", steady, stack, timeout, 0.5)
    except TimeoutError:
        flaps = await pool.fetchval(
            "SELECT count(*) FROM events WHERE type = 'DeviceWentOffline' "
            "AND recorded_at > now() - interval '1 minute'"
        )
        raise TimeoutError(
            f"devices not steadily online after {timeout:.0f} s: {flaps:,} DeviceWentOffline "
            "in the last minute (the registry falls behind; try --announced-interval 60, "
            "bench/README.md)"
        ) from None
    return time.perf_counter() - started


async def log_end(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT coalesce(max(position), 0) FROM events"))


def created_event(task_id: str, run_at: datetime, devices: list[str], now: datetime) -> TaskCreated:
    """The TaskCreated that POST /api/schedule/tasks would append for a one-time command task."""
    spec = TaskInput(
        name=f"fan-out {task_id[:8]}",
        task_type="command",
        recurrence_type="once",
        recurrence_config={"run_at": run_at.isoformat(), "timezone": "UTC"},
        device_ids=devices,
        task_payload=COMMAND,
    )
    [event] = task.decide(
        task.TaskState(task_id=task_id), task.CreateTask(user_id="bench", task=spec, now=now)
    )
    assert isinstance(event, TaskCreated)
    return event


# --- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One execution as the log records it; instants are time.time() seconds."""

    execution_id: str
    task_id: str
    scheduled_for: float
    due: float  # TaskDue recorded_at
    started: float  # ExecutionStarted recorded_at
    first_result: float
    last_result: float
    completed: float  # ExecutionCompleted recorded_at
    status: str
    results: int
    succeeded: int
    distinct_devices: int

    @property
    def total(self) -> float:
        return self.completed - self.due


_RUNS = """
SELECT data ->> 'execution_id' AS execution_id, min(data ->> 'task_id') AS task_id,
    extract(epoch FROM min((data ->> 'scheduled_for')::timestamptz)
        FILTER (WHERE type = 'TaskDue'))::float8 AS scheduled_for,
    extract(epoch FROM min(recorded_at) FILTER (WHERE type = 'TaskDue'))::float8 AS due,
    extract(epoch FROM min(recorded_at) FILTER (WHERE type = 'ExecutionStarted'))::float8
        AS started,
    extract(epoch FROM min(recorded_at) FILTER (WHERE type = 'DeviceResultRecorded'))::float8
        AS first_result,
    extract(epoch FROM max(recorded_at) FILTER (WHERE type = 'DeviceResultRecorded'))::float8
        AS last_result,
    extract(epoch FROM min(recorded_at) FILTER (WHERE type = 'ExecutionCompleted'))::float8
        AS completed,
    min(data ->> 'status') FILTER (WHERE type = 'ExecutionCompleted') AS status,
    count(*) FILTER (WHERE type = 'DeviceResultRecorded') AS results,
    count(*) FILTER (WHERE type = 'DeviceResultRecorded' AND data ->> 'status' = 'success')
        AS succeeded,
    count(DISTINCT data ->> 'device_id') FILTER (WHERE type = 'DeviceResultRecorded')
        AS distinct_devices
FROM events
WHERE position > $1 AND data ? 'task_id' AND data ->> 'task_id' = ANY ($2::text[])
    AND type IN ('TaskDue', 'ExecutionStarted', 'DeviceResultRecorded', 'ExecutionCompleted')
GROUP BY 1
"""


async def runs_of(pool: asyncpg.Pool, after: int, task_ids: Sequence[str]) -> list[Run]:
    rows = await pool.fetch(_RUNS, after, list(task_ids))
    return [Run(**dict(row)) for row in rows]


async def wait_completed(
    pool: asyncpg.Pool, stack: Stack, after: int, task_ids: Sequence[str], timeout: float
) -> None:
    """Until an ExecutionCompleted of every task is in the log (past position `after`)."""
    wanted = list(task_ids)
    # Positions are taken at insert, not at commit: every poll looks at everything past `after`.
    every = 0.02 if len(wanted) == 1 else 0.25

    async def done() -> bool:
        count = await pool.fetchval(
            "SELECT count(DISTINCT data ->> 'task_id') FROM events "
            "WHERE position > $1 AND type = 'ExecutionCompleted' "
            "AND data ? 'task_id' AND data ->> 'task_id' = ANY ($2::text[])",
            after,
            wanted,
        )
        return bool(count == len(wanted))

    await wait_for(f"{len(wanted):,} executions to complete", done, stack, timeout, every)


@dataclass
class FanoutRound:
    run: Run
    cpu: dict[str, float]


@dataclass
class BurstResult:
    tasks: int
    per_task: int
    due: datetime
    runs: list[Run]
    cpu: dict[str, float]


async def fanout_round(
    pool: asyncpg.Pool, session: aiohttp.ClientSession, base: str, stack: Stack, task_id: str
) -> FanoutRound:
    await wait_settled(pool, stack)
    after = await log_end(pool)
    cpu_before = stack.cpu()
    async with session.post(f"{base}{TASKS}/{task_id}/execute") as response:
        body = await response.json()
        if response.status != 202:
            raise RuntimeError(f"execute: {response.status} {body}")
    await wait_completed(pool, stack, after, [task_id], timeout=120.0)
    cpu_after = stack.cpu()
    [run] = [
        r for r in await runs_of(pool, after, [task_id]) if r.execution_id == body["execution_id"]
    ]
    return FanoutRound(run, {name: cpu_after[name] - cpu_before[name] for name in cpu_before})


async def burst(
    pool: asyncpg.Pool, stack: Stack, devices: list[str], tasks: int, per_task: int
) -> BurstResult:
    await wait_settled(pool, stack)
    lead = 4.0 + tasks / 1000
    due = whole_second_after(datetime.now(UTC) + timedelta(seconds=lead))
    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(tasks)]
    items = [
        StreamAppend(
            task_id,
            "command",
            0,
            created_event(
                task_id,
                due,
                [devices[(index * per_task + j) % len(devices)] for j in range(per_task)],
                now,
            ),
            new_event_id(),
        )
        for index, task_id in enumerate(ids)
    ]
    after = await log_end(pool)
    for start in range(0, len(items), CREATE_CHUNK):
        await append_many(pool, items[start : start + CREATE_CHUNK], METADATA)
    await wait_projected(pool, ids, due, stack)
    await wait_settled(pool, stack)
    await sleep_until(due - timedelta(seconds=0.5))
    cpu_before = stack.cpu()
    await sleep_until(due)
    await wait_completed(pool, stack, after, ids, timeout=120.0 + tasks / 10)
    cpu_after = stack.cpu()
    runs = await runs_of(pool, after, ids)
    cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_before}
    return BurstResult(tasks, per_task, due, runs, cpu)


@dataclass(frozen=True)
class Bench:
    """What a scenario talks to: the log (a small pool), the API (an admin session), the stack."""

    pool: asyncpg.Pool
    session: aiohttp.ClientSession
    base: str
    stack: Stack


@contextlib.asynccontextmanager
async def bench_ready(database_url: str, stack: Stack) -> AsyncIterator[Bench]:
    """Once the API answers, every simulated device is online and registered, and one small
    execution went through every service (a warm-up)."""
    pool = await create_pool(database_url, max_size=4)
    base = f"http://127.0.0.1:{stack.api_port}"
    try:
        token = await create_token(pool, "bench", "admin")
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            await wait_api(session, base, stack)
            setup = time.perf_counter()
            await wait_online(pool, stack, stack.devices)
            await wait_settled(pool, stack)
            print(
                f"{stack.devices:,} simulated devices online and registered in "
                f"{time.perf_counter() - setup:.1f} s",
                file=sys.stderr,
            )
            warm = await create_task(session, base, device_ids(stack.devices)[:10])
            await fanout_round(pool, session, base, stack, warm)
            yield Bench(pool, session, base, stack)
    finally:
        await pool.close()


async def run_benchmark(
    database_url: str, stack: Stack, args: argparse.Namespace
) -> tuple[list[FanoutRound], BurstResult | None]:
    async with bench_ready(database_url, stack) as bench:
        pool, session, base = bench.pool, bench.session, bench.base
        devices = device_ids(args.devices)
        rounds: list[FanoutRound] = []
        fired: BurstResult | None = None
        with stack.profiled(args.profile):
            if args.rounds:
                everyone = await create_task(session, base, devices)
                for _ in range(args.rounds):
                    rounds.append(await fanout_round(pool, session, base, stack, everyone))
                    print(f"fan-out round: {rounds[-1].run.total:.3f} s", file=sys.stderr)
            if args.tasks:
                fired = await burst(pool, stack, devices, args.tasks, args.per_task)
    return rounds, fired


async def create_task(
    session: aiohttp.ClientSession, base: str, devices: list[str], groups: Sequence[int] = ()
) -> str:
    """A one-time command task due tomorrow on devices and groups, through the API; its id."""
    body = {
        "name": f"fan-out to {len(devices):,} devices and {len(groups)} groups",
        "task_type": "command",
        "recurrence_type": "once",
        "recurrence_config": {
            "run_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "timezone": "UTC",
        },
        "device_ids": devices,
        "group_ids": list(groups),
        "task_payload": COMMAND,
    }
    async with session.post(f"{base}{TASKS}", json=body) as response:
        created = await response.json()
        if response.status != 201:
            raise RuntimeError(f"create task: {response.status} {created}")
    return str(created["id"])


# --- the report --------------------------------------------------------------------------------


def s(seconds: float) -> str:
    return f"{seconds:,.3f} s"


def cpu_line(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.2f}" for name, seconds in cpu.items())


def check_run(run: Run, targets: int) -> list[str]:
    problems = []
    if run.results != targets or run.distinct_devices != targets:
        problems.append(f"{run.results:,} results for {run.distinct_devices:,} of {targets:,}")
    if run.succeeded != targets or run.status != "success":
        problems.append(f"{run.succeeded:,} succeeded, status {run.status}")
    return problems


def report(
    rounds: list[FanoutRound],
    fired: BurstResult | None,
    devices: int,
    agents: dict[str, Any],
    load: float,
    setup: str = "",
) -> tuple[str, bool]:
    lines = [
        f"Fan-out: {devices:,} simulated devices on one NATS connection "
        f"(PostgreSQL fsync on, {os.cpu_count()} cores, load average {load:.2f} before the run)",
        *([f"  {setup}"] if setup else []),
    ]
    met = True
    if rounds:
        lines.append(
            f"\n1. One task to all {devices:,} devices, POST .../execute, {len(rounds)} round(s)"
        )
        for number, round_ in enumerate(rounds, 1):
            run = round_.run
            problems = check_run(run, devices)
            met = met and not problems and run.total < FANOUT_GOAL
            lines.append(
                f"  round {number}: TaskDue -> ExecutionCompleted {s(run.total)} "
                f"(-> ExecutionStarted {s(run.started - run.due)}, -> first result written "
                f"{s(run.first_result - run.due)}, -> last {s(run.last_result - run.due)}); "
                f"{run.results:,} results, {run.succeeded:,} success"
                + (f"; PROBLEM: {'; '.join(problems)}" if problems else "")
            )
            lines.append(f"    CPU seconds: {cpu_line(round_.cpu)}")
        best = min(round_.run.total for round_ in rounds)
        lines.append(
            f"  goal: under {FANOUT_GOAL:.0f} s: "
            + ("met" if max(r.run.total for r in rounds) < FANOUT_GOAL else "MISSED")
            + f" (best {s(best)})"
        )
    if fired is not None:
        runs = fired.runs
        due = fired.due.timestamp()
        done = [run.completed - due for run in runs]
        fire = [run.due - due for run in runs]
        start = [run.started - due for run in runs]
        problems = [p for run in runs for p in check_run(run, fired.per_task)]
        met = met and not problems and len(runs) == fired.tasks and max(done) < BURST_GOAL
        lines += [
            f"\n2. {fired.tasks:,} one-time tasks x {fired.per_task} devices due at "
            f"{fired.due:%H:%M:%S} UTC",
            f"  due -> TaskDue committed:        p50 {s(percentile(fire, 0.5))}, "
            f"max {s(max(fire))}",
            f"  due -> ExecutionStarted:         p50 {s(percentile(start, 0.5))}, "
            f"max {s(max(start))}",
            f"  due -> ExecutionCompleted:       p50 {s(percentile(done, 0.5))}, "
            f"p99 {s(percentile(done, 0.99))}, max {s(max(done))}",
            f"  executions {len(runs):,}, results {sum(r.results for r in runs):,}, "
            f"success {sum(r.succeeded for r in runs):,}"
            + (f"; PROBLEMS: {len(problems)}, first: {problems[0]}" if problems else ""),
            f"  CPU seconds, due -> last completed: {cpu_line(fired.cpu)}",
            f"  goal: all within {BURST_GOAL:.0f} s of due: "
            + ("met" if max(done) < BURST_GOAL and len(runs) == fired.tasks else "MISSED"),
        ]
    if agents:
        lines.append(
            f"\nsimulated agents: {agents.get('jobs', 0):,} jobs received "
            f"({agents.get('repeated', 0):,} repeated), {agents.get('reports', 0):,} reports and "
            f"{agents.get('heartbeats', 0):,} heartbeats sent"
        )
    return "\n".join(lines), met


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=10_000, help="simulated devices")
    parser.add_argument("--rounds", type=int, default=3, help="fan-out executions (0: none)")
    parser.add_argument("--tasks", type=int, default=1000, help="burst tasks (0: no burst)")
    parser.add_argument("--per-task", type=int, default=10, help="devices of each burst task")
    parser.add_argument("--profile", type=Path, help="py-spy profiles of both scenarios into DIR")
    add_stack_arguments(parser)
    args = parser.parse_args()
    if not 1 <= args.per_task <= args.devices:
        parser.error("--per-task must be between 1 and --devices")
    load = os.getloadavg()[0]
    sealing = None
    with stack_running("fanout", args) as (database_url, stack):
        rounds, fired = asyncio.run(run_benchmark(database_url, stack, args))
        if args.sealer:
            sealing = asyncio.run(seal_lag.measure(database_url))
    text, met = report(
        rounds, fired, args.devices, stack.agents_summary(), load, setup_line(args.cluster)
    )
    print(text)
    if sealing is not None:
        print(sealing.line())
    print("\nall goals met" if met else "\ngoals NOT met")


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    """--keep, --announced-interval, --sealer and --cluster, which stack_running reads."""
    parser.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    parser.add_argument(
        "--announced-interval",
        type=float,
        default=HEARTBEAT_SECONDS,
        help="heartbeat interval the simulated devices announce; they beat every 5 s whatever "
        "it is (a device is offline after 3 announced intervals without one)",
    )
    parser.add_argument("--sealer", action="store_true", help="run `deployx sealer` too")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="3-node NATS cluster, 2 processes of each service but the API",
    )


@contextlib.contextmanager
def stack_running(name: str, args: argparse.Namespace) -> Iterator[tuple[str, Stack]]:
    """Embedded PostgreSQL (fsync on) and NATS in a temporary directory, the schema, the
    services and args.devices simulated agents; yields the database's URL and the stack, and
    stops it all at the end (the directory goes too, unless args.keep)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"deployx-{name}-"))
    try:
        with (
            EmbeddedPostgres(tmp / "postgres", fsync=True) as postgres,
            nats_servers(tmp, args.cluster) as (nats_url, nats_pids),
        ):
            assert postgres.pid is not None
            database_url = postgres.dsn.rsplit("/", 1)[0] + "/deployx"
            asyncio.run(prepare(database_url))
            env = os.environ | {
                "DEPLOYX_DATABASE_URL": database_url,
                "DEPLOYX_NATS_URL": nats_url,
                "DEPLOYX_LOG_FORMAT": "json",
                "DEPLOYX_LOG_LEVEL": "info",
                # A 10,000-device task is a ~200 KB request.
                "DEPLOYX_MAX_BODY_BYTES": str(4 * 1024 * 1024),
                **cluster_env(args.cluster),
            }
            stack = Stack(
                tmp,
                env,
                postgres.pid,
                nats_pids,
                replicas=CLUSTER_SERVICE_REPLICAS if args.cluster else 1,
                api_port=free_port(),
                devices=args.devices,
                announced_interval=args.announced_interval,
            )
            try:
                stack.start()
                if getattr(args, "sealer", False):
                    stack.spawn("sealer", seal_lag.COMMAND)
                yield database_url, stack
                stack.check_alive()
            finally:
                stack.stop()
    finally:
        if args.keep:
            print(f"\ndata directory and logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


async def prepare(database_url: str) -> None:
    await ensure_database(database_url)
    await migrate(database_url)


if __name__ == "__main__":
    main()
