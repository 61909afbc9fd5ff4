"""The ticker: appends TaskDue (or RunMissed / RunSkipped) when a task's occurrence comes."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import structlog

from events.codec import RecordedEvent
from services.clock import Clock
from services.domain.firing import DueTask, decide_fire, event_id, fire_at, schedule_of
from services.read_your_writes import ProjectionWatcher
from services.store import StreamAppend, append_many

log = structlog.get_logger("deployx.ticker")

_DUE = """
SELECT id::text AS task_id, version, task_type, recurrence_type, recurrence_config::text,
    next_run_time, misfire_grace_seconds, overlap_policy, jitter_seconds, running_executions
FROM tasks WHERE next_run_time <= $1 ORDER BY next_run_time LIMIT $2
"""
_NEXT = "SELECT min(next_run_time) FROM tasks WHERE next_run_time > $1"
_config = msgspec.json.Decoder(dict[str, Any])
# With nothing scheduled, look again this often anyway (a lost wake-up costs at most this).
IDLE_RECHECK = timedelta(seconds=30)
METADATA = {"user": "scheduler", "service": "ticker"}


class TickResult(msgspec.Struct, frozen=True):
    appended: list[RecordedEvent]
    # Decisions that lost to a newer version of their task (another ticker, a user's command).
    lost: int
    # The earliest instant a task held back by its jitter becomes due.
    held_until: datetime | None


class Ticker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        watcher: ProjectionWatcher,
        batch_size: int = 5000,
    ) -> None:
        self._pool, self._clock, self._watcher = pool, clock, watcher
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        watcher.on_advance(lambda name: self._wake.set() if name == "tasks" else None)

    async def run(self, stop: asyncio.Event) -> None:
        stop_waiter = asyncio.ensure_future(stop.wait())
        stop_waiter.add_done_callback(lambda _: self._wake.set())
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    result = await self.tick()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    log.warning("tick_failed", error=str(exc))
                    await self._clock.sleep_until(
                        self._clock.now() + timedelta(seconds=1), self._wake
                    )
                    continue
                if result.appended:
                    continue
                if result.lost:
                    # Every due task moved on meanwhile (another ticker, a user): wait for the
                    # projection to show it rather than deciding on the same stale rows again.
                    await self._clock.sleep_until(
                        self._clock.now() + timedelta(milliseconds=50), self._wake
                    )
                    continue
                await self._clock.sleep_until(await self._next_wake(result.held_until), self._wake)
        finally:
            stop_waiter.cancel()

    async def tick(self) -> TickResult:
        """Decides every task due at the clock's present time, once, in one batch."""
        now = self._clock.now()
        rows = await self._pool.fetch(_DUE, now, self._batch_size)
        items: list[StreamAppend] = []
        held_until: datetime | None = None
        for row in rows:
            config = _config.decode(row["recurrence_config"])
            task = DueTask(**(dict(row) | {"recurrence_config": config}))
            event = decide_fire(task, now)
            if event is None:
                planned = fire_at(task, schedule_of(task).next_after(task.next_run_time))
                held_until = planned if held_until is None else min(held_until, planned)
                continue
            items.append(
                StreamAppend(task.task_id, task.task_type, task.version, event, event_id(task))
            )
        recorded = await append_many(self._pool, items, METADATA) if items else []
        if recorded:
            log.info("fired", events=len(recorded), lost_races=len(items) - len(recorded))
            try:
                # Read the tasks again only once the projection shows what was just appended.
                await self._watcher.wait_for(recorded, ["tasks"], timeout=10.0)
            except TimeoutError:
                log.warning("tasks_projection_lagging")
        return TickResult(recorded, len(items) - len(recorded), held_until)

    async def _next_wake(self, held_until: datetime | None) -> datetime:
        now = self._clock.now()
        upcoming = await self._pool.fetchval(_NEXT, now)
        candidates = [t for t in (upcoming, held_until) if t is not None]
        return min(candidates, default=now + IDLE_RECHECK)
