"""Projections at scale: catch-up of 100k TaskCreated and of 100k DeviceResultRecorded, a replay.

    .venv/bin/python -m bench.scale_projections [--tasks 100000] [--results 100000]
        [--replay-events 1000000] [--skip-replay]

Starts embedded PostgreSQL (fsync on) in a temporary directory and applies the schema. Events
go into the log with COPY (the shapes the API and the executors append), then:

1. Catch-up of --tasks TaskCreated: the projector's catch_up (every projection, the batch size
   the service uses) from the checkpoint before them to the last one.
2. Catch-up of --results DeviceResultRecorded: 100 runs of --results/100 devices each, started
   and caught up first; then the results, timed the same way.
3. Replay: the log is filled up to --replay-events with whole runs of 50 devices (TaskDue,
   ExecutionStarted, DeviceJobDispatched, one result per device, ExecutionCompleted), --burst
   tasks due together (100; the executor's events of those runs interleaved), then
   `deployx replay` runs (its own process) while a reader here asks for a task list page and
   an executions count every 20 ms and a writer appends a TaskCreated every 20 ms: their
   times by percentile over the replay, and those that overlapped the swap (seen by polling
   pg_locks every 5 ms for an exclusive lock on a live read table; the goal: under 100 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from events.base import Event
from events.codec import encode_data
from events.execution import (
    DeviceJobDispatched,
    DeviceResultRecorded,
    ExecutionCompleted,
    ExecutionStarted,
)
from events.task import TaskCreated, TaskDue
from projections import PROJECTIONS
from services.engine.projector import catch_up
from services.infra.db import ensure_database, migrate
from services.infra.embedded_postgres import EmbeddedPostgres, child_pids
from services.infra.store import append

CATEGORY = "command"
RUNS = 100  # part 2: the results are spread over this many runs
REPLAY_DEVICES = 50  # part 3: devices per run in the filler
TICK = 0.02
Row = tuple[str, str, int, str, str, int, str, str]
_COLUMNS = ["id", "stream_id", "version", "type", "category", "schema_version", "data", "metadata"]


def row(stream_id: str, version: int, event: Event) -> Row:
    data = encode_data(event).decode()
    return (str(uuid.uuid4()), stream_id, version, event.type, CATEGORY, 1, data, "{}")


def task_created(now: datetime, index: int) -> TaskCreated:
    return TaskCreated(
        task_id=str(uuid.uuid4()),
        user_id="bench",
        name=f"task {index}",
        task_type=CATEGORY,
        recurrence_type="daily",
        recurrence_config={"time": "02:30", "timezone": "Europe/Berlin"},
        device_ids=[f"dev-{index % 1000}"],
        task_payload={"command_payload": {"command": "uname -a", "timeout_seconds": 300}},
        created_at=now,
        next_run_time=now + timedelta(days=1),
    )


def run_events(task_id: str, now: datetime, devices: int) -> tuple[str, list[Event]]:
    """A whole run: what the ticker and an executor append for it."""
    execution_id = str(uuid.uuid4())
    targets = [f"dev-{i}" for i in range(devices)]
    events: list[Event] = [
        ExecutionStarted(
            execution_id=execution_id,
            task_id=task_id,
            trigger="schedule",
            scheduled_for=now,
            started_at=now,
            device_ids=targets,
            deadline=now + timedelta(minutes=5),
        ),
        DeviceJobDispatched(
            execution_id=execution_id, task_id=task_id, device_ids=targets, dispatched_at=now
        ),
    ]
    events += results(execution_id, task_id, targets, now)
    events.append(
        ExecutionCompleted(
            execution_id=execution_id,
            task_id=task_id,
            status="success",
            completed_at=now,
            devices_targeted=devices,
            devices_succeeded=devices,
        )
    )
    return execution_id, events


def results(execution_id: str, task_id: str, devices: list[str], now: datetime) -> list[Event]:
    return [
        DeviceResultRecorded(
            execution_id=execution_id,
            task_id=task_id,
            device_id=device,
            status="success",
            exit_code=0,
            stdout="Linux bench 6.1.0 x86_64 GNU/Linux",
            recorded_at=now,
        )
        for device in devices
    ]


async def copy_in(conn: asyncpg.Connection, rows: list[Row]) -> None:
    for start in range(0, len(rows), 50_000):
        await conn.copy_records_to_table(
            "events", records=rows[start : start + 50_000], columns=_COLUMNS
        )


class Cpu:
    """CPU seconds spent by this process and by the PostgreSQL server (the postmaster and every
    process under it): on a shared machine the wall time says how busy it was, these how much
    work the catch-up took."""

    def __init__(self, data_dir: Path) -> None:
        self._postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
        self._ticks = os.sysconf("SC_CLK_TCK")

    def _seconds(self, pid: int, *, reaped: bool = False) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0  # gone since it was listed: its time is now the postmaster's (reaped)
        # utime, stime; with reaped, cutime and cstime too: the children that have exited.
        return sum(int(value) for value in fields[11 : 15 if reaped else 13]) / self._ticks

    def now(self) -> tuple[float, float]:
        children = child_pids(self._postmaster)
        server = self._seconds(self._postmaster, reaped=True)
        return time.process_time(), server + sum(self._seconds(pid) for pid in children)


async def timed_catch_up(conn: asyncpg.Connection, cpu: Cpu, what: str) -> int:
    before = cpu.now()
    started = time.perf_counter()
    applied = await catch_up(conn) // len(PROJECTIONS)
    elapsed = time.perf_counter() - started
    after = cpu.now()
    here, server = after[0] - before[0], after[1] - before[1]
    print(
        f"catch-up {applied:,} {what}: {elapsed:.2f} s, {applied / elapsed:,.0f} events/s; "
        f"CPU {here + server:.2f} s (bench {here:.2f}, PostgreSQL {server:.2f}): "
        f"{applied / max(here + server, 0.01):,.0f} events per CPU second "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    return applied


async def part_tasks(conn: asyncpg.Connection, cpu: Cpu, count: int) -> list[str]:
    now = datetime.now(UTC)
    created = [task_created(now, i) for i in range(count)]
    await copy_in(conn, [row(t.task_id, 1, t) for t in created])
    task_ids = [t.task_id for t in created]
    # Not kept while timed: a projector holds no such heap, which each full pass of Python's
    # collector would walk (a fifth of this process's CPU in the catch-up of 100,000).
    del created
    await timed_catch_up(conn, cpu, "TaskCreated")
    assert await conn.fetchval("SELECT count(*) FROM tasks") >= count
    return task_ids


async def part_results(conn: asyncpg.Connection, cpu: Cpu, task_ids: list[str], count: int) -> None:
    now = datetime.now(UTC)
    per_run = max(1, count // RUNS)
    started: list[Row] = []
    later: list[Row] = []
    for index in range(RUNS):
        task_id = task_ids[index % len(task_ids)]
        execution_id, events = run_events(task_id, now, per_run)
        due = TaskDue(
            task_id=task_id,
            execution_id=execution_id,
            scheduled_for=now,
            trigger="manual",
            due_at=now,
        )
        started.append(row(task_id, 2 + index // len(task_ids), due))
        started.append(row(execution_id, 1, events[0]))
        later += [row(execution_id, 2 + n, e) for n, e in enumerate(events[2:-1])]
    await copy_in(conn, started)
    await catch_up(conn)
    await copy_in(conn, later)
    expected = len(later)
    del later  # as part_tasks' events
    applied = await timed_catch_up(conn, cpu, "DeviceResultRecorded")
    assert applied == expected, (applied, expected)


def filler(task_ids: list[str], needed: int, burst: int) -> Iterator[Row]:
    """`needed` events of whole runs of REPLAY_DEVICES devices, `burst` tasks due together:
    their TaskDue, then the executor's events of those runs interleaved as it appends them."""
    now = datetime.now(UTC)
    made, index = 0, 0
    versions = dict.fromkeys(task_ids, 100)
    while made < needed:
        runs = []
        for _ in range(burst):
            task_id = task_ids[index % len(task_ids)]
            index += 1
            execution_id, events = run_events(task_id, now, REPLAY_DEVICES)
            versions[task_id] += 1
            due = TaskDue(
                task_id=task_id,
                execution_id=execution_id,
                scheduled_for=now,
                trigger="schedule",
                due_at=now,
                next_run_time=now + timedelta(days=1),
            )
            yield row(task_id, versions[task_id], due)
            runs.append((execution_id, events))
        for step in range(2 + REPLAY_DEVICES + 1):
            for execution_id, events in runs:
                yield row(execution_id, step + 1, events[step])
        made += burst * (2 + REPLAY_DEVICES + 2)


async def part_replay(
    conn: asyncpg.Connection, database_url: str, task_ids: list[str], total: int, burst: int
) -> None:
    have = int(await conn.fetchval("SELECT count(*) FROM events"))
    rows = list(filler(task_ids, total - have, burst))
    await copy_in(conn, rows)
    await catch_up(conn)
    events = int(await conn.fetchval("SELECT count(*) FROM events"))
    stop = asyncio.Event()
    # (started, seconds) of each read and each append; when the swap was seen holding a table.
    reads: list[tuple[float, float]] = []
    writes: list[tuple[float, float]] = []
    swap: list[float] = []
    errors: list[str] = []

    async def reader() -> None:
        other = await asyncpg.connect(database_url)
        try:
            while not stop.is_set():
                began = time.perf_counter()
                try:
                    await other.fetch(
                        "SELECT id, name, status FROM tasks ORDER BY created_at DESC LIMIT 50"
                    )
                    await other.fetchval("SELECT count(*) FROM executions")
                except asyncpg.PostgresError as exc:
                    errors.append(f"read: {exc}")
                reads.append((began, time.perf_counter() - began))
                await asyncio.sleep(TICK)
        finally:
            await other.close()

    async def writer() -> None:
        other = await asyncpg.connect(database_url)
        now, index = datetime.now(UTC), 0
        try:
            while not stop.is_set():
                created = task_created(now, index)
                index += 1
                began = time.perf_counter()
                try:
                    await append(other, created.task_id, CATEGORY, [created], expected_version=0)
                except asyncpg.PostgresError as exc:
                    errors.append(f"write: {exc}")
                writes.append((began, time.perf_counter() - began))
                await asyncio.sleep(TICK)
        finally:
            await other.close()

    async def watcher() -> None:
        """Notes when an exclusive lock is held on a live read table: the swap."""
        other = await asyncpg.connect(database_url)
        try:
            while not stop.is_set():
                if await other.fetchval(_SWAP_SEEN):
                    swap.append(time.perf_counter())
                await asyncio.sleep(SWAP_POLL)
        finally:
            await other.close()

    load = [asyncio.create_task(task()) for task in (reader, writer, watcher)]
    await asyncio.sleep(0.5)
    started = time.perf_counter()
    # As an operator runs it: its own process, so that its work does not hold up this loop's
    # reader and writer (what they measure is PostgreSQL's answer, not this process's turn).
    replay = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "deployx"),
        "replay",
        env=os.environ | {"DEPLOYX_DATABASE_URL": database_url, "DEPLOYX_LOG_FORMAT": "json"},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await replay.communicate()
    elapsed = time.perf_counter() - started
    assert replay.returncode == 0, out.decode()
    applied = int(out.decode().split("replayed ", 1)[1].split(" ", 1)[0])
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*load)
    print(
        f"replay {applied:,} events (log of {events:,}): {elapsed:.2f} s, "
        f"{applied / elapsed:,.0f} events/s; {len(errors)} errors"
        f"{': ' + errors[0] if errors else ''}"
    )
    for line in out.decode().splitlines():
        if '"projections_rebuilt"' in line:  # where the replay's time went, step by step
            print(f"  replay's steps, seconds: {json.loads(line).get('seconds')}")
    window = (min(swap) - SWAP_POLL, max(swap) + SWAP_POLL) if swap else None
    for what, timings in (("read", reads), ("append", writes)):
        during = [seconds for began, seconds in timings if began < started + elapsed]
        overlapping = [
            seconds
            for began, seconds in timings
            if window and began <= window[1] and began + seconds >= window[0]
        ]
        print(
            f"  {what}s during the replay: {len(during)}, p50 {ms(during, 0.5)}, "
            f"p99 {ms(during, 0.99)}, max {ms(during, 1.0)}; overlapping the swap "
            f"({len(swap)} sightings): {len(overlapping)}, max {ms(overlapping, 1.0)}"
        )


_SWAP_SEEN = """
SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
WHERE l.mode = 'AccessExclusiveLock' AND c.relnamespace = 'public'::regnamespace
  AND c.relname IN ('tasks', 'executions', 'execution_results', 'devices'))
"""
SWAP_POLL = 0.005


def ms(values: list[float], fraction: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000:.0f} ms"


async def run(args: argparse.Namespace, database_url: str, cpu: Cpu) -> None:
    await ensure_database(database_url)
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        task_ids = await part_tasks(conn, cpu, args.tasks)
        await part_results(conn, cpu, task_ids, args.results)
        if not args.skip_replay:
            await part_replay(conn, database_url, task_ids[:10_000], args.replay_events, args.burst)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_projections")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--results", type=int, default=100_000)
    parser.add_argument("--replay-events", type=int, default=1_000_000)
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument("--burst", type=int, default=100, help="tasks due together (replay)")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="deployx-scale-") as tmp,
        EmbeddedPostgres(Path(tmp) / "postgres", fsync=True) as postgres,
    ):
        database_url = postgres.dsn.rsplit("/", 1)[0] + "/deployx"
        asyncio.run(run(args, database_url, Cpu(postgres.data_dir)))


if __name__ == "__main__":
    main()
