"""The ticker against a real PostgreSQL, with time driven through the clock seam."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from prometheus_client import Counter

from events.execution import ExecutionCompleted
from services.domain.task import CreateTask, ExecuteNow, PauseTask, ResumeTask, UpdateTask
from services.domain.task_spec import TaskInput, TaskPatch
from services.engine.handler import TASKS, handle
from services.engine.projector import run_projector
from services.engine.read_your_writes import ProjectionWatcher
from services.engine.ticker import DECIDE_SLICE, IDLE_RECHECK, LOST_RETRY_LIMIT, Ticker
from services.infra.clock import ManualClock
from services.infra.db import create_pool
from services.infra.metrics import TICKER_DECIDED, TICKER_LOST_RACES
from services.infra.store import append

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Scheduler:
    """A projector running in the background, a ticker driven tick by tick, a manual clock."""

    def __init__(self, pool: asyncpg.Pool, clock: ManualClock, watcher: ProjectionWatcher) -> None:
        self.pool, self.clock, self.watcher = pool, clock, watcher

    def ticker(self, batch_size: int = 2000) -> Ticker:
        return Ticker(self.pool, self.clock, self.watcher, batch_size=batch_size)

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


async def test_tickers_paging_through_a_burst_fire_each_task_once(scheduler: Scheduler) -> None:
    # Pages of 64: each page's append overlaps the next page's read, and three tickers race
    # on every page.
    due = START + timedelta(minutes=5)
    run_at = {"run_at": due.isoformat()}
    task_ids = set(
        await asyncio.gather(
            *(
                scheduler.create(recurrence_type="once", recurrence_config=run_at)
                for _ in range(1000)
            )
        )
    )
    scheduler.clock.set(due)
    tickers = [scheduler.ticker(batch_size=64) for _ in range(3)]

    await asyncio.gather(*(scheduler.run_ticks(ticker) for ticker in tickers))
    await scheduler.run_ticks()

    rows = await scheduler.pool.fetch(
        "SELECT data ->> 'task_id' AS task_id, count(*) AS n FROM events "
        "WHERE type = 'TaskDue' GROUP BY 1"
    )
    assert {row["task_id"] for row in rows} == task_ids
    assert {row["n"] for row in rows} == {1}


class BusyClock(ManualClock):
    """A manual clock on a busy machine: every reading is `step` later than the one before,
    as the present moves on while the ticker works between two readings."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        super().__init__(start)
        self._step = step

    def now(self) -> datetime:
        instant = super().now()
        self.set(instant + self._step)
        return instant


class SleepWatchingClock(ManualClock):
    """A manual clock that tells when something has gone to sleep on it."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.asleep = asyncio.Event()

    async def sleep_until(self, instant: datetime, wake: asyncio.Event) -> None:
        self.asleep.set()
        await super().sleep_until(instant, wake)


@contextlib.asynccontextmanager
async def running(ticker: Ticker) -> AsyncIterator[None]:
    """The ticker running as its service runs it (ticking, sleeping, woken) meanwhile."""
    stop = asyncio.Event()
    service = asyncio.create_task(ticker.run(stop))
    try:
        yield
    finally:
        stop.set()  # ends a wait for the projection too
        async with asyncio.timeout(10.0):
            await service


async def fires_within(scheduler: Scheduler, task_id: str, seconds: float = 10.0) -> bool:
    """Whether the task fires within `seconds` of real time."""
    deadline = time.monotonic() + seconds
    while not await scheduler.fired(task_id):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_a_task_falling_due_while_the_ticker_looks_for_the_next_one_fires(
    scheduler: Scheduler,
) -> None:
    # The ticker reads the due tasks at 12:59:59.5 and looks for the next occurrence a second
    # later, at 13:00:00.5 (a busy machine): the 13:00 task fell due in between. Looked for
    # after the present, it was neither due nor next (the next is 30 days away), and the ticker
    # slept past it: the last task of a burst never fired.
    due = START + timedelta(hours=1)
    task_id = await scheduler.create(
        recurrence_type="once", recurrence_config={"run_at": due.isoformat()}
    )
    await scheduler.create(
        recurrence_type="once",
        recurrence_config={"run_at": (START + timedelta(days=30)).isoformat()},
    )
    clock = BusyClock(due - timedelta(milliseconds=500), step=timedelta(seconds=1))

    async with running(Ticker(scheduler.pool, clock, scheduler.watcher)):
        assert await fires_within(scheduler, task_id), "it slept past a task due meanwhile"


async def test_a_lost_wake_up_costs_at_most_idle_recheck_with_tasks_scheduled_far_ahead(
    scheduler: Scheduler,
) -> None:
    # A ticker that hears nothing from the projections (every wake-up lost) and knows of no
    # task before one 30 days away still looks again IDLE_RECHECK later.
    await scheduler.create(
        recurrence_type="once",
        recurrence_config={"run_at": (START + timedelta(days=30)).isoformat()},
    )
    clock = SleepWatchingClock(START)
    deaf = ProjectionWatcher(scheduler.pool)  # never started: hears no projection move

    async with running(Ticker(scheduler.pool, clock, deaf)):
        async with asyncio.timeout(10.0):
            await clock.asleep.wait()
        due = START + timedelta(seconds=10)
        task_id = await scheduler.create(
            recurrence_type="once", recurrence_config={"run_at": due.isoformat()}
        )
        clock.set(START + IDLE_RECHECK)
        assert await fires_within(scheduler, task_id), "it slept on past IDLE_RECHECK"


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


# --- the end of a task: end_at, max_runs, pause_on_failure ------------------------------------


async def finish_runs(
    scheduler: Scheduler, task_id: str, status: str = "success", error: str | None = None
) -> None:
    """Ends every run of the task still in flight with `status`, as an executor would."""
    due = [data for kind, data in await scheduler.history(task_id) if kind == "TaskDue"]
    ended = await scheduler.pool.fetch(
        "SELECT execution_id::text FROM task_runs WHERE task_id = $1 AND status <> 'running'",
        task_id,
    )
    done = {row["execution_id"] for row in ended}
    for data in due:
        if data["execution_id"] in done:
            continue
        completed = ExecutionCompleted(
            execution_id=data["execution_id"],
            task_id=task_id,
            status=status,
            completed_at=scheduler.clock.now(),
            error_message=error,
            devices_targeted=1,
            devices_succeeded=int(status == "success"),
            devices_failed=int(status != "success"),
        )
        recorded = await append(
            scheduler.pool, data["execution_id"], "command", [completed], expected_version=None
        )
        await scheduler.watcher.wait_for(recorded, ["tasks"], timeout=10)


async def task_row(scheduler: Scheduler, task_id: str) -> dict[str, Any]:
    row = await scheduler.pool.fetchrow(
        "SELECT status, next_run_time, scheduled_runs, completed_by, failed_run::text "
        "FROM tasks WHERE id = $1",
        task_id,
    )
    assert row is not None
    return dict(row)


async def test_an_interval_task_fires_until_its_end_at_and_ends_completed(
    scheduler: Scheduler,
) -> None:
    # Every 60 s from 12:00, ending at 12:02:30: runs at 12:01 and 12:02, then no more.
    task_id = await scheduler.create(
        recurrence_type="interval",
        recurrence_config={"every_seconds": 60},
        end_at=(START + timedelta(seconds=150)).isoformat(),
    )
    for seconds in range(0, 600, 10):
        scheduler.clock.set(START + timedelta(seconds=seconds))
        await scheduler.run_ticks()
        await finish_runs(scheduler, task_id)

    assert await scheduler.fired(task_id) == ["2026-03-01T12:01:00Z", "2026-03-01T12:02:00Z"]
    history = await scheduler.history(task_id)
    assert (history[-1][1]["next_run_time"], history[-1][1]["completed_by"]) == (None, "end_at")
    row = await task_row(scheduler, task_id)
    assert (row["status"], row["next_run_time"], row["completed_by"]) == (
        "completed",
        None,
        "end_at",
    )


async def test_max_runs_counts_scheduled_runs_only_and_ends_the_task_completed(
    scheduler: Scheduler,
) -> None:
    task_id = await scheduler.create(
        recurrence_type="interval", recurrence_config={"every_seconds": 60}, max_runs=2
    )
    # A run by hand first: it does not count.
    scheduler.clock.set(START + timedelta(seconds=30))
    await scheduler.command(
        task_id, ExecuteNow(execution_id=str(uuid.uuid4()), now=scheduler.clock.now())
    )
    await finish_runs(scheduler, task_id)
    statuses = []
    for seconds in range(30, 600, 10):
        scheduler.clock.set(START + timedelta(seconds=seconds))
        await scheduler.run_ticks()
        statuses.append((await task_row(scheduler, task_id))["status"])
        await finish_runs(scheduler, task_id)

    # From 12:00:30 every 10 s: running at 12:01 and 12:02 (its last run), then completed.
    pending = ["pending"] * 5
    assert statuses == ["pending"] * 3 + ["running", *pending, "running"] + ["completed"] * 47
    scheduled = [
        data["scheduled_for"]
        for kind, data in await scheduler.history(task_id)
        if kind == "TaskDue" and data["trigger"] == "schedule"
    ]
    assert scheduled == ["2026-03-01T12:01:00Z", "2026-03-01T12:02:00Z"]
    row = await task_row(scheduler, task_id)
    assert row == {
        "status": "completed",
        "next_run_time": None,
        "scheduled_runs": 2,
        "completed_by": "max_runs",
        "failed_run": None,
    }


async def paused_events(scheduler: Scheduler, task_id: str) -> list[dict[str, Any]]:
    rows = await scheduler.pool.fetch(
        "SELECT metadata::text FROM events WHERE stream_id = $1 AND type = 'TaskPaused' "
        "ORDER BY version",
        task_id,
    )
    return [msgspec.json.decode(row["metadata"]) for row in rows]


async def test_a_failed_scheduled_run_pauses_a_task_with_pause_on_failure_once(
    scheduler: Scheduler,
) -> None:
    task_id = await scheduler.create(
        recurrence_type="interval", recurrence_config={"every_seconds": 60}, pause_on_failure=True
    )
    scheduler.clock.set(START + timedelta(seconds=60))
    await scheduler.run_ticks()
    [due] = [data for kind, data in await scheduler.history(task_id) if kind == "TaskDue"]

    await finish_runs(scheduler, task_id, "failed", "1 of 1 devices did not succeed")
    # Three tickers race to pause it.
    await asyncio.gather(*(scheduler.run_ticks(scheduler.ticker()) for _ in range(3)))
    await scheduler.run_ticks()

    reason = f"run {due['execution_id']} failed: 1 of 1 devices did not succeed"
    assert await paused_events(scheduler, task_id) == [
        {
            "user": "scheduler",
            "service": "ticker",
            "reason": reason,
            "execution_id": due["execution_id"],
        }
    ]
    row = await task_row(scheduler, task_id)
    assert (row["status"], row["next_run_time"], row["failed_run"]) == ("paused", None, None)


async def test_pause_on_failure_ignores_runs_by_hand_successes_and_tasks_without_it(
    scheduler: Scheduler,
) -> None:
    watching = await scheduler.create(
        recurrence_type="daily", recurrence_config={"time": "18:00"}, pause_on_failure=True
    )
    other = await scheduler.create(
        recurrence_type="interval", recurrence_config={"every_seconds": 60}
    )
    # A run by hand of the watching task fails; the other task's scheduled run fails too.
    await scheduler.command(
        watching, ExecuteNow(execution_id=str(uuid.uuid4()), now=scheduler.clock.now())
    )
    await finish_runs(scheduler, watching, "failed", "exit 1")
    scheduler.clock.set(START + timedelta(seconds=60))
    await scheduler.run_ticks()
    await finish_runs(scheduler, other, "failed", "exit 1")
    await scheduler.run_ticks()

    assert await paused_events(scheduler, watching) == []
    assert await paused_events(scheduler, other) == []
    assert (await task_row(scheduler, watching))["status"] == "pending"


async def test_a_pause_owed_lapses_when_the_failed_run_was_the_tasks_last(
    scheduler: Scheduler,
) -> None:
    task_id = await scheduler.create(
        recurrence_type="interval",
        recurrence_config={"every_seconds": 60},
        pause_on_failure=True,
        max_runs=1,
    )
    scheduler.clock.set(START + timedelta(seconds=60))
    await scheduler.run_ticks()
    await finish_runs(scheduler, task_id, "failed", "exit 1")
    await scheduler.run_ticks()

    assert await paused_events(scheduler, task_id) == []
    row = await task_row(scheduler, task_id)
    assert (row["status"], row["completed_by"], row["failed_run"]) == (
        "completed",
        "max_runs",
        None,
    )


async def test_a_task_resumed_after_its_pause_on_failure_runs_on(scheduler: Scheduler) -> None:
    task_id = await scheduler.create(
        recurrence_type="interval", recurrence_config={"every_seconds": 60}, pause_on_failure=True
    )
    scheduler.clock.set(START + timedelta(seconds=60))
    await scheduler.run_ticks()
    await finish_runs(scheduler, task_id, "failed", "exit 1")
    await scheduler.run_ticks()
    scheduler.clock.set(START + timedelta(seconds=90))
    await scheduler.command(task_id, ResumeTask(now=scheduler.clock.now()))

    scheduler.clock.set(START + timedelta(seconds=150))
    await scheduler.run_ticks()

    assert len(await paused_events(scheduler, task_id)) == 1
    assert await scheduler.fired(task_id) == ["2026-03-01T12:01:00Z", "2026-03-01T12:02:30Z"]
    assert (await task_row(scheduler, task_id))["status"] == "running"


async def test_turning_pause_on_failure_off_before_the_pause_cancels_it(
    scheduler: Scheduler,
) -> None:
    task_id = await scheduler.create(
        recurrence_type="interval", recurrence_config={"every_seconds": 60}, pause_on_failure=True
    )
    scheduler.clock.set(START + timedelta(seconds=60))
    await scheduler.run_ticks()
    await finish_runs(scheduler, task_id, "failed", "exit 1")
    assert (await task_row(scheduler, task_id))["failed_run"] is not None
    # Off and on again before any ticker got to it: the earlier failure no longer counts.
    for value in (False, True):
        patch = TaskPatch(pause_on_failure=value)
        await scheduler.command(task_id, UpdateTask(patch=patch, now=scheduler.clock.now()))

    await scheduler.run_ticks()

    assert await paused_events(scheduler, task_id) == []
    assert (await task_row(scheduler, task_id))["failed_run"] is None


class SleepRecordingClock(ManualClock):
    """A manual clock that hands each sleep the ticker asks of it to the test, which then
    moves time on."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.sleeps: asyncio.Queue[timedelta] = asyncio.Queue()

    async def sleep_until(self, instant: datetime, wake: asyncio.Event) -> None:
        self.sleeps.put_nowait(instant - self.now())
        await super().sleep_until(instant, wake)


def counted(counter: Counter) -> float:
    [metric] = counter.collect()
    return sum(s.value for s in metric.samples if s.name.endswith("_total"))


async def test_rows_that_stay_stale_are_decided_less_and_less_often_and_fire_once_caught_up(
    scheduler: Scheduler,
) -> None:
    # Every due row is older than its stream (renamed in the log, not yet in the tasks table):
    # every append conflicts. Retried every 50 ms, 50,000 such rows were decided again 20 times
    # a second for as long as the table stayed behind.
    due = START + timedelta(seconds=10)
    run_at = {"run_at": due.isoformat()}
    task_ids = [
        await scheduler.create(recurrence_type="once", recurrence_config=run_at) for _ in range(5)
    ]
    clock = SleepRecordingClock(due)
    lost_before = counted(TICKER_LOST_RACES)
    async with scheduler.pool.acquire() as conn:
        behind = conn.transaction()
        await behind.start()
        await conn.execute("LOCK TABLE tasks IN SHARE MODE")  # the projector waits on this
        for task_id in task_ids:
            rename = UpdateTask(patch=TaskPatch(name="renamed"), now=due)
            await scheduler.command(task_id, rename, settle=False)

        async with running(Ticker(scheduler.pool, clock, scheduler.watcher)):
            delays: list[timedelta] = []
            while clock.now() < due + timedelta(minutes=1):
                async with asyncio.timeout(10.0):
                    delays.append(await clock.sleeps.get())
                assert len(delays) <= 20, f"decided the stale rows again after {delays[-5:]}"
                clock.set(clock.now() + delays[-1])
            assert delays[:3] == [timedelta(milliseconds=ms) for ms in (50, 100, 200)]
            assert max(delays) == LOST_RETRY_LIMIT
            assert counted(TICKER_LOST_RACES) - lost_before == 5 * len(delays)

            # The table catches up: the projection's move wakes the ticker out of its longest
            # wait (the clock stays where it is), and each task fires now.
            await behind.rollback()
            for task_id in task_ids:
                assert await fires_within(scheduler, task_id), "it slept through the catch-up"

    await scheduler.run_ticks()
    for task_id in task_ids:
        assert await scheduler.fired(task_id) == ["2026-03-01T12:00:10Z"]


async def test_deciding_a_page_of_due_tasks_lets_other_work_on_the_loop_run_between_slices(
    scheduler: Scheduler,
) -> None:
    # Under `deployx up` the ticker shares the API's event loop: a 2,000-task page decided at
    # once held it 30-70 ms.
    due = START + timedelta(seconds=10)
    run_at = {"run_at": due.isoformat()}
    count = 3 * DECIDE_SLICE
    await asyncio.gather(
        *(scheduler.create(recurrence_type="once", recurrence_config=run_at) for _ in range(count))
    )
    scheduler.clock.set(due)
    decided_between_turns: list[float] = []

    async def other_work() -> None:
        while True:
            decided_between_turns.append(counted(TICKER_DECIDED))
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    try:
        result = await scheduler.ticker(batch_size=2000).tick()
    finally:
        other.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await other

    assert len(result.appended) == count
    seen = decided_between_turns
    assert seen[-1] - seen[0] == count
    assert max(b - a for a, b in itertools.pairwise(seen)) <= DECIDE_SLICE


async def test_a_stop_ends_the_wait_for_the_projection_at_once_losing_and_repeating_nothing(
    scheduler: Scheduler,
) -> None:
    due = START + timedelta(seconds=10)
    run_at = {"run_at": due.isoformat()}
    task_ids = [
        await scheduler.create(recurrence_type="once", recurrence_config=run_at) for _ in range(3)
    ]
    scheduler.clock.set(due)
    # Never started: the tasks projection never seems to show what the ticker appended, so
    # after appending, the tick waits for it for as long as the ticker lets it.
    deaf = ProjectionWatcher(scheduler.pool)
    ticker = Ticker(scheduler.pool, scheduler.clock, deaf, projection_wait=3600.0)
    stop = asyncio.Event()
    service = asyncio.create_task(ticker.run(stop))
    try:
        for task_id in task_ids:
            assert await fires_within(scheduler, task_id)
        stop.set()
        async with asyncio.timeout(10.0):
            await service  # waited out projection_wait (10 s by default) before
    finally:
        service.cancel()

    await scheduler.run_ticks()  # a ticker started afterwards
    for task_id in task_ids:
        assert await scheduler.fired(task_id) == ["2026-03-01T12:00:10Z"]


async def test_a_tick_told_to_stop_reads_no_further_page_and_the_next_ticker_fires_the_rest(
    scheduler: Scheduler,
) -> None:
    due = START + timedelta(seconds=10)
    run_at = {"run_at": due.isoformat()}
    task_ids = [
        await scheduler.create(recurrence_type="once", recurrence_config=run_at) for _ in range(5)
    ]
    scheduler.clock.set(due)
    stopping = asyncio.Event()
    stopping.set()

    result = await scheduler.ticker(batch_size=2).tick(stopping)

    assert len(result.appended) == 2
    await scheduler.run_ticks()
    for task_id in task_ids:
        assert await scheduler.fired(task_id) == ["2026-03-01T12:00:10Z"]


async def test_a_task_due_behind_pass_limit_rows_that_keep_losing_their_races_fires(
    scheduler: Scheduler,
) -> None:
    # pass_limit (50,000 by default) stale rows ahead of a due task: each pass ended at
    # pass_limit having lost every race and the next began again at the first row, so the task
    # behind them never fired while the rows stayed stale.
    stale_at = {"run_at": (START + timedelta(seconds=10)).isoformat()}
    stale = [
        await scheduler.create(recurrence_type="once", recurrence_config=stale_at) for _ in range(4)
    ]
    due = START + timedelta(seconds=20)
    task_id = await scheduler.create(
        recurrence_type="once", recurrence_config={"run_at": due.isoformat()}
    )
    scheduler.clock.set(due)
    ticker = Ticker(scheduler.pool, scheduler.clock, scheduler.watcher, batch_size=2, pass_limit=4)
    async with scheduler.pool.acquire() as conn:
        behind = conn.transaction()
        await behind.start()
        await conn.execute("LOCK TABLE tasks IN SHARE MODE")  # the projector waits on this
        for stale_id in stale:
            rename = UpdateTask(patch=TaskPatch(name="renamed"), now=due)
            await scheduler.command(stale_id, rename, settle=False)

        async with running(ticker):
            assert await fires_within(scheduler, task_id), "starved behind the stale rows"
            await behind.rollback()
            for stale_id in stale:
                assert await fires_within(scheduler, stale_id)

    await scheduler.run_ticks()
    assert await scheduler.fired(task_id) == ["2026-03-01T12:00:20Z"]
    for stale_id in stale:
        assert await scheduler.fired(stale_id) == ["2026-03-01T12:00:10Z"]
