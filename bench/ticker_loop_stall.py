"""How long a burst of due tasks holds the event loop the ticker runs on (the API's, under
`deployx up`).

    .venv/bin/python -m bench.ticker_loop_stall [--tasks 20000] [--runs 1]

Starts embedded PostgreSQL (fsync on) in a temporary directory and `deployx projector` as a
process, and runs the ticker in this process as `deployx up` runs it beside the API: on the same
event loop as a probe that asks the loop for a 1 ms sleep, again and again, and records how
late each wake-up is (what any request served on that loop waits on top of its own work) and
how much CPU the loop's thread spent meanwhile (the same less the OS's preemption). Each
run appends --tasks one-time tasks due at the same whole second (append_many, as
bench.fire_burst does), waits until the tasks table shows them, and probes from the due second
until the last TaskDue is committed; it prints the probe's lateness and when the last TaskDue
was committed.

Run it as a script with PYTHONPATH naming another checkout to measure that checkout's ticker
(the bench modules it imports must exist there).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench.create_tasks import percentile
from bench.fire_burst import create_tasks, sleep_until, whole_second_after
from services.engine.read_your_writes import ProjectionWatcher
from services.engine.ticker import Ticker
from services.infra.clock import SystemClock
from services.infra.db import create_pool, ensure_database, migrate
from services.infra.embedded_postgres import EmbeddedPostgres

PROBE_INTERVAL = 0.001
_ARMED = "SELECT count(*) FROM tasks WHERE next_run_time IS NOT NULL"
_FIRED = "SELECT count(*) FROM events WHERE type = 'TaskDue'"


async def probe(stop: asyncio.Event, late: list[float], held: list[float]) -> None:
    """Sleeps PROBE_INTERVAL again and again, noting how much later than asked each wake is
    (wall time: includes the moments the OS ran other processes, many on a loaded machine) and
    how much CPU this thread spent meanwhile (the work of other callbacks that held the loop)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        asked, cpu = loop.time(), time.thread_time()
        await asyncio.sleep(PROBE_INTERVAL)
        late.append(loop.time() - asked - PROBE_INTERVAL)
        held.append(time.thread_time() - cpu)


def spread(seconds: list[float]) -> str:
    ms = [value * 1000 for value in seconds]
    return (
        f"p50 {percentile(ms, 0.5):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms,"
        f" max {max(ms):.1f} ms, {sum(m > 10 for m in ms)} over 10 ms"
    )


async def wait_count(pool: asyncpg.Pool, query: str, done: Callable[[int], bool]) -> None:
    """Polls query's count until done(count)."""
    while True:
        if done(await pool.fetchval(query)):
            return
        await asyncio.sleep(0.01)


async def burst(pool: asyncpg.Pool, tasks: int) -> tuple[list[float], list[float], float]:
    """One burst, from due to the last TaskDue committed: the probe's lateness and CPU held per
    wake-up, and that time."""
    before = await pool.fetchval(_FIRED)
    due = whole_second_after(datetime.now(UTC) + timedelta(seconds=5 + tasks / 2000))
    await create_tasks(pool, [due] * tasks)
    await wait_count(pool, _ARMED, lambda armed: armed >= tasks)
    await sleep_until(due)
    late: list[float] = []
    held: list[float] = []
    stop = asyncio.Event()
    prober = asyncio.create_task(probe(stop, late, held))
    started = time.monotonic()
    await wait_count(pool, _FIRED, lambda fired: fired >= before + tasks)
    elapsed = time.monotonic() - started
    stop.set()
    await prober
    return late, held, elapsed


async def measure(database_url: str, tasks: int, runs: int) -> None:
    pool = await create_pool(database_url, max_size=8)
    watcher = ProjectionWatcher(pool)
    await watcher.start()
    stop = asyncio.Event()
    ticker = asyncio.create_task(Ticker(pool, SystemClock(), watcher).run(stop))
    try:
        for run in range(runs):
            late, held, elapsed = await burst(pool, tasks)
            print(
                f"run {run + 1}: {tasks:,} tasks, last TaskDue committed {elapsed:.2f} s after due,"
                f" {len(late):,} probes; loop CPU held {spread(held)}; wall lateness"
                f" {spread(late)}; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            await wait_count(pool, _ARMED, lambda armed: armed == 0)  # the tasks table caught up
    finally:
        stop.set()
        await ticker
        await watcher.stop()
        await pool.close()


async def prepare(database_url: str) -> None:
    await ensure_database(database_url)
    await migrate(database_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks due in each burst")
    parser.add_argument("--runs", type=int, default=1, help="bursts, one after another")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="deployx-ticker-stall-"))
    try:
        run(tmp, args.tasks, args.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, tasks: int, runs: int) -> None:
    with EmbeddedPostgres(tmp / "postgres", fsync=True) as postgres:
        database_url = f"{postgres.dsn.rsplit('/', 1)[0]}/deployx"
        asyncio.run(prepare(database_url))
        env = os.environ | {"DEPLOYX_DATABASE_URL": database_url, "DEPLOYX_LOG_LEVEL": "warning"}
        deployx = Path(sys.executable).with_name("deployx")
        with (tmp / "projector.log").open("wb") as log:
            projector = subprocess.Popen(
                [str(deployx), "projector"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            asyncio.run(measure(database_url, tasks, runs))
        finally:
            projector.terminate()
            projector.wait(30)


if __name__ == "__main__":
    main()
