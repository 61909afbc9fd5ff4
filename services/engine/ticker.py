"""The ticker: appends TaskDue (or RunMissed / RunSkipped) when a task's occurrence comes, and
TaskPaused when a failed scheduled run of a task with pause_on_failure owes one."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import structlog

from events.codec import RecordedEvent
from services.domain.firing import (
    DueTask,
    FailedRun,
    decide_fire,
    decide_pause,
    event_id,
    fire_at,
    following_of,
    schedule_of,
)
from services.engine.read_your_writes import ProjectionWatcher
from services.infra.clock import Backoff, Clock
from services.infra.db import DATABASE_ERRORS
from services.infra.metrics import TICKER_DECIDED, TICKER_FIRED, TICKER_LOST_RACES
from services.infra.store import (
    ConcurrencyError,
    DuplicateEvent,
    StreamAppend,
    append,
    append_many,
)

log = structlog.get_logger("deployx.ticker")

_DUE = """
SELECT id::text AS task_id, version, task_type, recurrence_type, recurrence_config::text,
    next_run_time, misfire_grace_seconds, overlap_policy, jitter_seconds, running_executions,
    end_at, max_runs, scheduled_runs
FROM tasks WHERE next_run_time <= $1 AND (next_run_time, id) > ($2, $3::uuid)
ORDER BY next_run_time, id LIMIT $4
"""
# Where a pass over the due tasks starts: before every (next_run_time, id) there is.
_FIRST_PAGE = (datetime(1, 1, 1, tzinfo=UTC), "00000000-0000-0000-0000-000000000000")
# The first occurrence after the instant a tick decided at: one that fell due while the tick
# ran is in it too (the ticker then ticks again at once).
_NEXT = "SELECT min(next_run_time) FROM tasks WHERE next_run_time > $1"
# The tasks projection sets failed_run only while the pause applies (pause_on_failure, not
# paused, not ended) and clears it on any pause, so each row here owes exactly one TaskPaused;
# the conditions are restated so that nothing else could ever pause a task.
_PAUSES_OWED = """
SELECT id::text AS task_id, version, task_type, failed_run::text AS execution_id,
    failed_run_error AS error_message
FROM tasks WHERE failed_run IS NOT NULL AND pause_on_failure AND next_run_time IS NOT NULL
ORDER BY id LIMIT $1
"""
_config = msgspec.json.Decoder(dict[str, Any])
# Never sleep longer than this, whatever is scheduled: a lost wake-up costs at most this.
IDLE_RECHECK = timedelta(seconds=30)
# A wait at least this long is logged (with the next occurrence it waits for), once per target.
LOGGED_WAIT = timedelta(seconds=1)
METADATA = {"user": "scheduler", "service": "ticker"}
# After a pass in which every decision lost its race (read rows older than their streams), the
# ticker looks again after these delays, doubling (reset once a pass appends anything): rows
# that stay stale cost a pass per LOST_RETRY_LIMIT, not one per 50 ms. A projection that moves
# wakes it at once, so a task whose row catches up still fires then.
LOST_RETRY_FIRST = timedelta(milliseconds=50)
LOST_RETRY_LIMIT = timedelta(seconds=5)
# Tasks decided between two turns of the event loop: the ticker shares it with the API under
# `deployx up`, and a 2,000-task page decided at once held it for 30-70 ms.
DECIDE_SLICE = 200
# How long a tick waits for the tasks projection to show what it appended.
PROJECTION_WAIT = 10.0


class TickResult(msgspec.Struct, frozen=True):
    # The instant the tick decided at: every task due then was seen.
    at: datetime
    appended: list[RecordedEvent]
    # Decisions that lost to a newer version of their task (another ticker, a user's command),
    # in this pass and in the passes before it of the same sweep (see complete).
    lost: int
    # The earliest instant a task held back by its jitter becomes due.
    held_until: datetime | None
    # Whether the pass reached the last task due (else pass_limit or a stop ended it, and the
    # next pass goes on after where this one ended).
    complete: bool = True


class Ticker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clock: Clock,
        watcher: ProjectionWatcher,
        batch_size: int = 2000,
        pass_limit: int = 50_000,
        appends_in_flight: int = 2,
        projection_wait: float = PROJECTION_WAIT,
    ) -> None:
        self._pool, self._clock, self._watcher = pool, clock, watcher
        # Tasks read and appended together; tasks decided before waiting for the projection
        # (which bounds how far the read tables may fall behind the log after an outage).
        # Tasks held back by their jitter do not count toward pass_limit: every page is read,
        # so that due tasks behind a page full of held ones still fire now.
        self._batch_size, self._pass_limit = batch_size, pass_limit
        # Pages appended at once, each in its own transaction on its own connection (the pool
        # needs one more for reading the next page): the inserts of a burst use more than one
        # of PostgreSQL's cores.
        self._appends_in_flight = appends_in_flight
        self._projection_wait = projection_wait
        self._wake = asyncio.Event()
        # The next occurrence the last "waiting" line named ("" before the first).
        self._logged_wait: str | None = ""
        # Where the next pass starts: after the last task of a pass that pass_limit ended, so
        # that tasks behind pass_limit rows that keep losing their races are decided too.
        self._resume_after = _FIRST_PAGE
        # What the passes before it in the same sweep left to the pass that completes it: their
        # lost races and the earliest instant one of their tasks held back by jitter is due.
        self._carried: tuple[int, datetime | None] = (0, None)
        watcher.on_advance(lambda name: self._wake.set() if name == "tasks" else None)

    async def run(self, stop: asyncio.Event) -> None:
        stop_waiter = asyncio.ensure_future(stop.wait())
        stop_waiter.add_done_callback(lambda _: self._wake.set())
        lost_retry = Backoff(LOST_RETRY_FIRST.total_seconds(), LOST_RETRY_LIMIT.total_seconds())
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    result = await self.tick(stop)
                except DATABASE_ERRORS as exc:
                    log.warning("tick_failed", error=str(exc))
                    await self._clock.sleep_until(
                        self._clock.now() + timedelta(seconds=1), self._wake
                    )
                    continue
                if result.appended:
                    lost_retry.reset()
                    continue
                if not result.complete:
                    continue  # the rest of the due tasks, before any wait
                if result.lost:
                    # Every due task moved on meanwhile (another ticker, a user), or its row
                    # has no events behind it: the projection that shows the move wakes this
                    # sleep; until then, deciding the same rows again would lose again.
                    delay = lost_retry.next()
                    log.info("every_race_lost", lost=result.lost, retry_in=delay)
                    await self._clock.sleep_until(
                        self._clock.now() + timedelta(seconds=delay), self._wake
                    )
                    continue
                lost_retry.reset()
                await self._clock.sleep_until(await self._next_wake(result), self._wake)
        finally:
            stop_waiter.cancel()

    async def tick(self, stop: asyncio.Event | None = None) -> TickResult:
        """Decides every task due at the clock's present time, once, a page at a time.

        A page's appends change only the page's own tasks, so the next page is read at once
        (and pages are appended side by side); the tasks projection is waited for once, after
        the last page (or after pass_limit tasks, the rest being left to the next tick). Once
        stop is set, no further page is read and the wait ends: what was appended is in the
        log, and what was not is decided again by the next ticker.
        """
        stop = stop or asyncio.Event()
        now = self._clock.now()
        recorded, lost = await self._pause_failed(now)
        TICKER_LOST_RACES.inc(lost)
        decided = len(recorded) + lost
        paused = {event.stream_id for event in recorded}
        carried_lost, held_until = self._carried
        after, self._resume_after, self._carried = self._resume_after, _FIRST_PAGE, (0, None)
        complete = False
        # Pages' appends run while the next page is read and decided, up to appends_in_flight
        # at once, each page its own transaction: log readers (the relay) get a page's TaskDue
        # once it and every transaction begun before it have committed.
        appending: collections.deque[asyncio.Task[list[RecordedEvent]]] = collections.deque()
        try:
            while True:
                rows = await self._pool.fetch(_DUE, now, *after, self._batch_size)
                items: list[StreamAppend] = []
                for start in range(0, len(rows), DECIDE_SLICE):
                    if start:
                        await asyncio.sleep(0)  # let the loop's other work run
                    page_held = _decide(rows[start : start + DECIDE_SLICE], now, paused, items)
                    if page_held is not None:
                        held_until = page_held if held_until is None else min(held_until, page_held)
                while len(appending) >= self._appends_in_flight:
                    recorded += await appending.popleft()
                if items:
                    appending.append(asyncio.create_task(self._append_page(items)))
                decided += len(items)
                complete = len(rows) < self._batch_size
                if rows:
                    after = (rows[-1]["next_run_time"], rows[-1]["task_id"])
                if complete or decided >= self._pass_limit or stop.is_set():
                    break
                await asyncio.sleep(0)  # between pages too, when the read did not wait
            while appending:
                recorded += await appending.popleft()
        finally:
            # Reading a page or appending one failed: the pages still appending count too.
            for page in appending:
                with contextlib.suppress(*DATABASE_ERRORS):
                    await page
        if recorded and not stop.is_set():
            try:
                # Read the tasks again only once the projection shows what was just appended.
                await _unless_stopped(
                    self._watcher.wait_for(recorded, ["tasks"], self._projection_wait), stop
                )
            except TimeoutError:
                log.warning("tasks_projection_lagging")
        lost = carried_lost + decided - len(recorded)
        if not complete:
            self._resume_after, self._carried = after, (lost, held_until)
        return TickResult(now, recorded, lost, held_until, complete)

    async def _append_page(self, items: list[StreamAppend]) -> list[RecordedEvent]:
        page = await append_many(self._pool, items, METADATA)
        log.info("fired", events=len(page), lost_races=len(items) - len(page))
        TICKER_FIRED.inc(len(page))
        TICKER_LOST_RACES.inc(len(items) - len(page))
        return page

    async def _pause_failed(self, now: datetime) -> tuple[list[RecordedEvent], int]:
        """Pauses each task a failed scheduled run owes a pause: the events, and how many lost
        to a newer version of their task (decided again on the next tick)."""
        recorded: list[RecordedEvent] = []
        lost = 0
        for row in await self._pool.fetch(_PAUSES_OWED, self._batch_size):
            task = FailedRun(**dict(row))
            event, reason = decide_pause(task, now)
            metadata = METADATA | {"reason": reason, "execution_id": task.execution_id}
            try:
                recorded += await append(
                    self._pool,
                    task.task_id,
                    task.task_type,
                    [event],
                    expected_version=task.version,
                    metadata=metadata,
                    event_ids=[event_id(task)],
                )
            except (ConcurrencyError, DuplicateEvent):
                lost += 1
        if recorded:
            log.info("paused_after_failure", tasks=len(recorded), lost_races=lost)
        return recorded, lost

    async def _next_wake(self, result: TickResult) -> datetime:
        """When to tick again: at the first occurrence after the instant the tick decided at
        (not after the present, which has moved on meanwhile: an occurrence in between would be
        neither fired nor waited for), or when a task held back by jitter comes, and never
        later than IDLE_RECHECK from now."""
        now = self._clock.now()
        try:
            upcoming = await self._pool.fetchval(_NEXT, result.at)
        except DATABASE_ERRORS as exc:
            # The database went away since the tick: look again as after a failed tick.
            log.warning("tick_failed", error=str(exc))
            return now + timedelta(seconds=1)
        due = min((t for t in (upcoming, result.held_until) if t is not None), default=None)
        wake = now + IDLE_RECHECK if due is None else min(due, now + IDLE_RECHECK)
        next_due = None if due is None else due.isoformat()
        if wake - now >= LOGGED_WAIT and next_due != self._logged_wait:
            # What an idle ticker waits for, once per occurrence: a ticker that fires nothing
            # says why in its log.
            log.info("waiting", next_due=next_due)
            self._logged_wait = next_due
        return wake


def _decide(
    rows: list[asyncpg.Record], now: datetime, paused: set[str], items: list[StreamAppend]
) -> datetime | None:
    """Adds the decision for each row (the TaskDue, RunMissed or RunSkipped to append) to items;
    returns the earliest instant a task held back by its jitter becomes due."""
    held_until: datetime | None = None
    for row in rows:
        if row["task_id"] in paused:
            continue
        config = _config.decode(row["recurrence_config"])
        task = DueTask(**(dict(row) | {"recurrence_config": config}))
        due_id = event_id(task)
        event = decide_fire(task, now, due_id)
        if event is None:
            following = following_of(task, schedule_of(task), task.next_run_time)
            planned = fire_at(task, following)
            held_until = planned if held_until is None else min(held_until, planned)
            continue
        items.append(StreamAppend(task.task_id, task.task_type, task.version, event, due_id))
    TICKER_DECIDED.inc(len(rows))
    return held_until


async def _unless_stopped(wait: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    """Awaits wait, cancelling it if stop is set first."""
    waiting = asyncio.ensure_future(wait)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([waiting, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not waiting.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
    if waiting.done() and not waiting.cancelled():
        waiting.result()  # its TimeoutError, if any
