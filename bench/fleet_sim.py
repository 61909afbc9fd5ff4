"""A fleet of 100,000 simulated devices: registration, presence, and a fan-out to all of them.

    .venv/bin/python -m bench.fleet_sim [--devices 100000] [--processes 4] [--interval 30]
        [--presence-window 60] [--tasks 1] [--keep] [--profile DIR]

Embedded PostgreSQL (fsync on) and NATS in a temporary directory, and `deployx projector`,
`relay`, `ticker`, `executor --type command` and `api` (whose device registry turns heartbeats
into presence and the log's device events) as processes, as bench.fanout runs them. Then
--processes processes of bench/sim_agents.py play --devices agents between them (each its own
range of device ids on one NATS connection, subscribed to those devices' jobs subjects).
Every agent heartbeats as it starts, then every --interval seconds.

1. Registration: the agents' processes start and connect, then announce their devices
   together (SIGUSR1); from then until a DeviceRegistered of every device is in the log (and,
   separately, until the devices table shows them all online).
2. Presence: over --presence-window seconds once the log has settled, the CPU the API process
   (the registry) used, per second; no device may go offline meanwhile.
3. Fan-out: one command to every device: one task (--tasks 1) naming groups of at most
   10,000 devices each (a group or a task lists at most 10,000 ids), run with POST .../execute;
   with --tasks N, N such tasks of --devices / N devices each, run together. Timed from the
   first TaskDue to the last ExecutionCompleted (recorded_at in the log), and checked: a
   successful DeviceResultRecorded of every device. A run lists its targets in events of at
   most 2,000 ids (ExecutionStarted, then ExecutionTargetsAdded: docs/executions.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from bench.create_tasks import percentile
from bench.fanout import (
    TASKS,
    Stack,
    check_run,
    cpu_line,
    create_task,
    log_end,
    runs_of,
    stack_running,
    wait_api,
    wait_completed,
    wait_for,
)
from bench.fire_burst import wait_settled
from bench.sim_agents import DEVICE_PREFIX, device_ids
from services.infra.auth import create_token
from services.infra.db import create_pool

REGISTER_GOAL = 10.0  # seconds: every device registered in the log
REGISTRY_CPU_GOAL = 0.5  # cores, the registry keeping presence
FANOUT_GOAL = 10.0  # seconds: every result recorded
GROUP_SIZE = 10_000  # device ids a group lists at most


@dataclass
class Registration:
    ready: float  # seconds the simulator's processes took to start and connect
    logged: float  # seconds from the agents announcing to the last DeviceRegistered in the log
    online: float  # ... to the devices table showing every device online
    cpu: dict[str, float]


@dataclass
class Presence:
    window: float
    cpu: dict[str, float]
    offline: int  # DeviceWentOffline appended in the window
    fresh: int  # devices heard within one interval at the end


@dataclass
class Fanout:
    tasks: int
    seconds: float  # first TaskDue -> last ExecutionCompleted
    from_request: float  # first POST .../execute -> last ExecutionCompleted
    results: int
    problems: list[str]
    task_seconds: list[float]
    cpu: dict[str, float]


def agents_command(args: argparse.Namespace, first: int, count: int, summary: Path) -> list[str]:
    return [
        *(sys.executable, "-m", "bench.sim_agents"),
        *("--devices", str(count), "--first", str(first), "--own-subjects"),
        *("--interval", str(args.interval), "--summary", str(summary)),
    ]


async def count_events(pool: asyncpg.Pool, event_type: str, after: int = 0) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM events WHERE position > $1 AND type = $2 "
            "AND starts_with(stream_id, $3)",
            after,
            event_type,
            f"device-{DEVICE_PREFIX}",
        )
    )


class LogCounter:
    """Counts a type of the simulated devices' events as the log grows, reading only the rows
    added since the last count (in log order, never skipping one that commits late): a
    count(*) over the whole log ten times a second would cost PostgreSQL more than the
    appends it watches."""

    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        self.count = 0
        self._tx_id, self._position = 0, 0

    async def update(self, pool: asyncpg.Pool) -> int:
        row = await pool.fetchrow(
            """
            WITH new AS MATERIALIZED (
                SELECT tx_id, position, type, stream_id FROM events
                WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)
                  AND tx_id < pg_snapshot_xmin(pg_current_snapshot()))
            SELECT (SELECT count(*) FROM new
                    WHERE type = $3 AND starts_with(stream_id, $4)) AS count,
                   last.tx_id::text::bigint AS tx_id, last.position
            FROM (SELECT 1) AS one LEFT JOIN LATERAL (
                SELECT tx_id, position FROM new ORDER BY tx_id DESC, position DESC LIMIT 1
            ) AS last ON true
            """,
            str(self._tx_id),
            self._position,
            self.event_type,
            f"device-{DEVICE_PREFIX}",
        )
        assert row is not None
        self.count += int(row["count"])
        if row["tx_id"] is not None:
            self._tx_id, self._position = int(row["tx_id"]), int(row["position"])
        return self.count


async def register(pool: asyncpg.Pool, stack: Stack, args: argparse.Namespace) -> Registration:
    shares = -(-args.devices // args.processes)
    registered = LogCounter("DeviceRegistered")

    async def logged() -> bool:
        return bool(await registered.update(pool) >= args.devices)

    spawned = time.perf_counter()
    agents: dict[str, Path] = {}
    for index, first in enumerate(range(0, args.devices, shares)):
        count = min(shares, args.devices - first)
        name = f"agents-{index}"
        agents[name] = stack.log_dir / f"{name}.ready"
        summary = stack.log_dir / f"{name}.json"
        stack.spawn(
            name, [*agents_command(args, first, count, summary), "--ready", str(agents[name])]
        )

    async def connected() -> bool:
        return all(path.exists() for path in agents.values())

    # The simulator's processes start and connect first: their start is not the devices'.
    await wait_for("the simulated agents to connect", connected, stack, 300.0, 0.05)
    ready_after = time.perf_counter() - spawned
    with stack.profiled(args.profile / "register" if args.profile else None):
        cpu_before = stack.cpu()
        started = time.perf_counter()
        for name in agents:
            stack.procs[name].send_signal(signal.SIGUSR1)
        await wait_for("every device registered", logged, stack, 600.0, 0.1)
        logged_after = time.perf_counter() - started
        cpu_after = stack.cpu()

    async def online() -> bool:
        count = await pool.fetchval(
            "SELECT count(*) FROM devices WHERE starts_with(id, $1) AND online", DEVICE_PREFIX
        )
        return bool(count >= args.devices)

    await wait_for("every device online in the devices table", online, stack, 900.0, 0.5)
    return Registration(
        ready_after,
        logged_after,
        time.perf_counter() - started,
        {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after},
    )


async def keep_presence(pool: asyncpg.Pool, stack: Stack, args: argparse.Namespace) -> Presence:
    await wait_settled(pool, stack)
    after = await log_end(pool)
    cpu_before = stack.cpu()
    started = time.perf_counter()
    await asyncio.sleep(args.presence_window)
    window = time.perf_counter() - started
    cpu_after = stack.cpu()
    fresh = await pool.fetchval(
        "SELECT count(*) FROM device_presence WHERE starts_with(device_id, $1) "
        "AND last_seen > now() - make_interval(secs => $2)",
        DEVICE_PREFIX,
        args.interval * 1.5,
    )
    return Presence(
        window,
        {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after},
        await count_events(pool, "DeviceWentOffline", after),
        int(fresh),
    )


async def create_groups(session: aiohttp.ClientSession, base: str, devices: list[str]) -> list[int]:
    """Groups of at most GROUP_SIZE of devices, through the API; their ids."""
    ids = []
    for start in range(0, len(devices), GROUP_SIZE):
        body = {
            "name": f"fleet {uuid.uuid4().hex[:8]}",
            "device_ids": devices[start : start + GROUP_SIZE],
        }
        async with session.post(f"{base}/api/groups", json=body) as response:
            created = await response.json()
            if response.status != 201:
                raise RuntimeError(f"create group: {response.status} {created}")
        ids.append(int(created["id"]))
    return ids


async def fan_out(
    pool: asyncpg.Pool,
    session: aiohttp.ClientSession,
    base: str,
    stack: Stack,
    args: argparse.Namespace,
) -> Fanout:
    devices = device_ids(args.devices)
    per_task = args.devices // args.tasks
    task_ids = [
        await create_task(
            session, base, [], await create_groups(session, base, devices[start : start + per_task])
        )
        for start in range(0, len(devices), per_task)
    ]
    await wait_settled(pool, stack)
    after = await log_end(pool)
    cpu_before = stack.cpu()
    requested = time.time()

    async def execute(task_id: str) -> None:
        async with session.post(f"{base}{TASKS}/{task_id}/execute") as response:
            if response.status != 202:
                raise RuntimeError(f"execute: {response.status} {await response.text()}")

    with stack.profiled(args.profile):
        await asyncio.gather(*(execute(task_id) for task_id in task_ids))
        await wait_completed(pool, stack, after, task_ids, timeout=600.0)
    cpu_after = stack.cpu()
    runs = await runs_of(pool, after, task_ids)
    problems = [p for run in runs for p in check_run(run, per_task)]
    if len(runs) != len(task_ids):
        problems.append(f"{len(runs)} executions of {len(task_ids)} tasks")
    first_due = min(run.due for run in runs)
    last = max(run.completed for run in runs)
    return Fanout(
        len(task_ids),
        last - first_due,
        last - requested,
        sum(run.succeeded for run in runs),
        problems,
        sorted(run.total for run in runs),
        {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after},
    )


async def run_benchmark(
    database_url: str, stack: Stack, args: argparse.Namespace
) -> tuple[Registration, Presence, Fanout | None]:
    pool = await create_pool(database_url, max_size=4)
    base = f"http://127.0.0.1:{stack.api_port}"
    try:
        token = await create_token(pool, "bench", "admin")
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
            await wait_api(session, base, stack)
            registration = await register(pool, stack, args)
            print(
                f"registered in {registration.logged:.1f} s, online in the devices table in "
                f"{registration.online:.1f} s",
                file=sys.stderr,
            )
            presence = await keep_presence(pool, stack, args)
            print(f"presence: {cpu_line(presence.cpu)}", file=sys.stderr)
            fanout = await fan_out(pool, session, base, stack, args) if args.tasks else None
    finally:
        await pool.close()
    return registration, presence, fanout


def report(
    args: argparse.Namespace,
    registration: Registration,
    presence: Presence,
    fanout: Fanout | None,
    load: float,
) -> tuple[str, bool]:
    api_cores = presence.cpu.get("api", 0.0) / presence.window
    lines = [
        f"Fleet: {args.devices:,} simulated devices in {args.processes} processes, heartbeats "
        f"every {args.interval:g} s (PostgreSQL fsync on, {os.cpu_count()} cores, load average "
        f"{load:.2f} before the run)",
        f"\n1. registration: every DeviceRegistered in the log {registration.logged:.2f} s after "
        f"the agents announced themselves (goal {REGISTER_GOAL:g} s: "
        + ("met" if registration.logged <= REGISTER_GOAL else "MISSED")
        + f"); every device online in the devices table after {registration.online:.2f} s "
        f"(the simulator's processes took {registration.ready:.2f} s to start and connect)",
        f"  CPU seconds until registered: {cpu_line(registration.cpu)}",
        f"\n2. presence over {presence.window:.0f} s: the API process (its registry) used "
        f"{api_cores:.3f} cores (goal under {REGISTRY_CPU_GOAL:g}: "
        + ("met" if api_cores <= REGISTRY_CPU_GOAL else "MISSED")
        + f"); {presence.offline:,} DeviceWentOffline, {presence.fresh:,} devices heard within "
        f"1.5 intervals at the end",
        f"  CPU seconds: {cpu_line(presence.cpu)}",
    ]
    met = (
        registration.logged <= REGISTER_GOAL
        and api_cores <= REGISTRY_CPU_GOAL
        and presence.offline == 0
        and presence.fresh == args.devices
    )
    if fanout is not None:
        fanout_met = not fanout.problems and fanout.seconds <= FANOUT_GOAL
        met = met and fanout_met
        lines += [
            f"\n3. fan-out: {fanout.tasks} task(s) x {args.devices // fanout.tasks:,} devices: "
            f"first TaskDue -> last ExecutionCompleted {fanout.seconds:.2f} s (goal "
            f"{FANOUT_GOAL:g} s: " + ("met" if fanout_met else "MISSED") + "), from the first "
            f"request {fanout.from_request:.2f} s; {fanout.results:,} successful results; "
            f"per execution TaskDue -> completed p50 {percentile(fanout.task_seconds, 0.5):.2f} "
            f"s, max {max(fanout.task_seconds):.2f} s"
            + (f"; PROBLEMS: {'; '.join(fanout.problems[:3])}" if fanout.problems else ""),
            f"  CPU seconds: {cpu_line(fanout.cpu)}",
        ]
    return "\n".join(lines), met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=100_000, help="simulated devices")
    parser.add_argument("--processes", type=int, default=4, help="processes playing them")
    parser.add_argument("--interval", type=float, default=30.0, help="heartbeat interval, s")
    parser.add_argument(
        "--presence-window", type=float, default=60.0, help="seconds the registry CPU is measured"
    )
    parser.add_argument(
        "--tasks", type=int, default=1, help="fan-out tasks sharing the devices (0: no fan-out)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy profiles of registration into DIR/register, of the fan-out into DIR",
    )
    args = parser.parse_args()
    if args.tasks and args.devices % args.tasks:
        parser.error("--devices must be a multiple of --tasks")
    load = os.getloadavg()[0]
    # The stack's own agents process plays no device: this benchmark starts its own.
    stack_args = argparse.Namespace(
        keep=args.keep,
        announced_interval=args.interval,
        sealer=False,
        cluster=False,
        devices=0,
    )
    with stack_running("fleet", stack_args) as (database_url, stack):
        registration, presence, fanout = asyncio.run(run_benchmark(database_url, stack, args))
    text, met = report(args, registration, presence, fanout, load)
    print(text)
    print("\nall goals met" if met else "\ngoals NOT met")


if __name__ == "__main__":
    main()
