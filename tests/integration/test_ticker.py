"""The ticker against a real PostgreSQL, with time driven through the clock seam."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from services.domain.task import CreateTask, PauseTask, UpdateTask
from services.domain.task_spec import TaskInput, TaskPatch
from services.engine.handler import TASKS, handle
from services.engine.projector import run_projector
from services.engine.read_your_writes import ProjectionWatcher
from services.engine.ticker import Ticker
from services.infra.clock import ManualClock
from services.infra.db import create_pool

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Scheduler:
    """A projector running in the background, a ticker driven tick by tick, a manual clock."""

    def __init__(self, pool: asyncpg.Pool, clock: ManualClock, watcher: ProjectionWatcher) -> None:
        self.pool, self.clock, self.watcher = pool, clock, watcher

    def ticker(self) -> Ticker:
        return Ticker(self.pool, self.clock, self.watcher)

    async def create(self, **fields: Any) -> str:
        body = {
            "name": "job",
            "task_type": "command",
            "task_payload": {"command_payload": {"command": "true"}},
        } | fields
        command = CreateTask(
            user_id="ops", task=msgspec.convert(body, TaskInput), now=self.clock.now()
        )
        task_id = str(uuid.uuid4())
        outcome = await handle(self.pool, TASKS, task_id, command, metadata={}, new_stream=True)
        await self.watcher.wait_for(outcome.recorded, ["tasks"], timeout=10)
        return task_id

    async def command(self, task_id: str, command: Any, *, settle: bool = True) -> None:
        outcome = await handle(self.pool, TASKS, task_id, command, metadata={})
        if settle:
            await self.watcher.wait_for(outcome.recorded, ["tasks"], timeout=10)

    async def run_ticks(self, ticker: Ticker | None = None) -> None:
        """Ticks until nothing more is due at the clock's present time."""
        ticker = ticker or self.ticker()
        for _ in range(1000):
            if not (await ticker.tick()).appended:
                return
        raise AssertionError("the ticker never came to rest")

    async def history(self, task_id: str) -> list[tuple[str, dict[str, Any]]]:
        rows = await self.pool.fetch(
            "SELECT type, data::text FROM events WHERE stream_id = $1 ORDER BY version", task_id
        )
        return [(row["type"], msgspec.json.decode(row["data"])) for row in rows]

    async def fired(self, task_id: str) -> list[str]:
        return [
            data["scheduled_for"] for kind, data in await self.history(task_id) if kind == "TaskDue"
        ]


@pytest.fixture
async def scheduler(database_url: str) -> AsyncIterator[Scheduler]:
    pool = await create_pool(database_url, max_size=20)
    watcher = ProjectionWatcher(pool, poll_interval=0.05)
    await watcher.start()
    stop = asyncio.Event()
    projector = asyncio.create_task(run_projector(pool, stop))
    try:
        yield Scheduler(pool, ManualClock(START), watcher)
    finally:
        stop.set()
        await projector
        await watcher.stop()
        await pool.close()


async def test_three_tickers_fire_two_thousand_tasks_due_together_once_each(
    scheduler: Scheduler,
) -> None:
    due = START + timedelta(minutes=5)
    run_at = {"run_at": due.isoformat()}
    task_ids = set(
        await asyncio.gather(
            *(
                scheduler.create(recurrence_type="once", recurrence_config=run_at)
                for _ in range(2000)
            )
        )
    )
    scheduler.clock.set(due)
    tickers = [scheduler.ticker() for _ in range(3)]

    await asyncio.gather(*(scheduler.run_ticks(ticker) for ticker in tickers))
    await scheduler.run_ticks()  # whatever lost a race once is decided again

    rows = await scheduler.pool.fetch(
        "SELECT data ->> 'task_id' AS task_id, count(*) AS n FROM events "
        "WHERE type = 'TaskDue' GROUP BY 1"
    )
    assert {row["task_id"] for row in rows} == task_ids
    assert {row["n"] for row in rows} == {1}


async def test_a_task_paused_just_before_it_is_due_does_not_fire(scheduler: Scheduler) -> None:
    due = START + timedelta(seconds=10)
    task_id = await scheduler.create(
        recurrence_type="once", recurrence_config={"run_at": due.isoformat()}
    )
    scheduler.clock.set(due - timedelta(milliseconds=50))
    await scheduler.command(task_id, PauseTask(now=scheduler.clock.now()))

    scheduler.clock.set(due + timedelta(seconds=1))
    await scheduler.run_ticks()

    assert await scheduler.fired(task_id) == []


async def test_a_stale_read_of_a_paused_task_conflicts_instead_of_firing(
    scheduler: Scheduler,
) -> None:
    due = START + timedelta(seconds=10)
    task_id = await scheduler.create(
        recurrence_type="once", recurrence_config={"run_at": due.isoformat()}
    )
    scheduler.clock.set(due)
    # The pause is in the log but not yet in the tasks table the ticker reads.
    async with scheduler.pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE tasks IN SHARE MODE")  # the projector waits on this
        await scheduler.command(task_id, PauseTask(now=due), settle=False)
        result = await scheduler.ticker().tick()
        assert (result.appended, result.lost) == ([], 1)

    assert await scheduler.fired(task_id) == []
    assert [kind for kind, _ in await scheduler.history(task_id)] == ["TaskCreated", "TaskPaused"]


async def test_an_edited_schedule_fires_at_the_new_time_only(scheduler: Scheduler) -> None:
    task_id = await scheduler.create(recurrence_type="daily", recurrence_config={"time": "14:00"})
    scheduler.clock.set(START + timedelta(minutes=30))
    patch = TaskPatch(recurrence_config={"time": "15:00"})
    await scheduler.command(task_id, UpdateTask(patch=patch, now=scheduler.clock.now()))

    for hour in (14, 15):
        scheduler.clock.set(START.replace(hour=hour, minute=0, second=1))
        await scheduler.run_ticks()

    assert await scheduler.fired(task_id) == ["2026-03-01T15:00:00Z"]


async def test_after_downtime_across_three_occurrences_it_fires_once_and_records_two_missed(
    scheduler: Scheduler,
) -> None:
    task_id = await scheduler.create(
        recurrence_type="interval",
        recurrence_config={"every_seconds": 600, "start_at": "2026-03-01T12:10:00+00:00"},
    )
    # Down from before 12:10 until 12:31: 12:10, 12:20 and 12:30 came and went.
    scheduler.clock.set(START + timedelta(minutes=31))
    await scheduler.run_ticks()

    history = await scheduler.history(task_id)
    assert [(kind, data["scheduled_for"]) for kind, data in history[1:]] == [
        ("RunMissed", "2026-03-01T12:10:00Z"),
        ("RunMissed", "2026-03-01T12:20:00Z"),
        ("TaskDue", "2026-03-01T12:30:00Z"),
    ]
    assert history[-1][1]["lateness_seconds"] == 60.0
    assert history[-1][1]["next_run_time"] == "2026-03-01T12:40:00Z"


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (
            # Spring forward on 2026-03-08: 02:30 does not exist; it runs at 03:00 EDT.
            [datetime(2026, 3, d, tzinfo=UTC) for d in (7, 8, 9)],
            ["2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
        ),
        (
            # Fall back on 2026-11-01: 01:30 happens twice, 02:30 once (EST); each day once.
            [
                datetime(2026, 10, 31, tzinfo=UTC),
                *(datetime(2026, 11, d, tzinfo=UTC) for d in (1, 2)),
            ],
            ["2026-10-31T06:30:00Z", "2026-11-01T07:30:00Z", "2026-11-02T07:30:00Z"],
        ),
    ],
)
async def test_daily_0230_new_york_fires_once_a_day_across_dst(
    database_url: str, days: list[datetime], expected: list[str]
) -> None:
    pool = await create_pool(database_url, max_size=10)
    watcher = ProjectionWatcher(pool, poll_interval=0.05)
    await watcher.start()
    stop = asyncio.Event()
    projector = asyncio.create_task(run_projector(pool, stop))
    try:
        scheduler = Scheduler(pool, ManualClock(days[0] - timedelta(days=1)), watcher)
        task_id = await scheduler.create(
            recurrence_type="daily",
            recurrence_config={"time": "02:30", "timezone": "America/New_York"},
            overlap_policy="allow",
        )
        # Walk the clock minute by minute through each night, ticking as a ticker would.
        for day in days:
            minute = day.replace(hour=4)
            while minute < day.replace(hour=9):
                scheduler.clock.set(minute)
                await scheduler.run_ticks()
                minute += timedelta(minutes=1)
        assert await scheduler.fired(task_id) == expected
    finally:
        stop.set()
        await projector
        await watcher.stop()
        await pool.close()
