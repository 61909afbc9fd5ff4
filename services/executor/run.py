"""One execution, from TaskDue to ExecutionCompleted; a redelivered TaskDue resumes it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta

import asyncpg
import msgspec
import nats.aio.client
import structlog

from events.base import Event
from events.execution import DeviceResultRecorded, ExecutionCompleted, ExecutionStarted
from events.task import TaskDue
from services.agent.protocol import JobReport, jobs_subject
from services.domain.errors import TooLarge
from services.domain.task import TaskState
from services.executor.results import ResultRouter
from services.executor.targets import (
    job_for,
    job_timeout,
    presence,
    resolve_targets,
    task_as_fired,
)
from services.infra.clock import Backoff, Clock, wait_first
from services.infra.db import Db
from services.infra.store import ConcurrencyError, append, read_stream, stream_version

log = structlog.get_logger("deployx.executor")
_encode = msgspec.json.Encoder().encode

# How long an online agent has to say "accepted" before its device counts as unreachable.
ACCEPT_TIMEOUT = timedelta(seconds=10)
# Time past a job's own timeout for its result to travel back.
DEADLINE_GRACE = timedelta(seconds=30)
# Results are written in batches: at most this long after one arrives, or this many at once.
FLUSH_INTERVAL = 0.05
FLUSH_SIZE = 1000
# Jobs and reports travel on core NATS, at most once: one lost with a NATS node (or an agent's
# reconnection) is sent again after 2 s, then ever less often, up to every 30 s, until the
# device reports. The agent runs a job id once and answers a repeat from its journal.
RESEND_FIRST, RESEND_LIMIT = 2.0, 30.0
# A TaskDue older than this that no executor started is recorded as failed, not run.
STALE_AFTER = timedelta(hours=1)
METADATA = {"user": "scheduler", "service": "executor"}


def job_id(execution_id: str, device_id: str) -> str:
    return f"{execution_id}:{device_id}"


class ExecutionRun:
    def __init__(
        self,
        db: Db,
        client: nats.aio.client.Client,
        router: ResultRouter,
        clock: Clock,
        due: TaskDue,
        due_version: int,
        category: str,
    ) -> None:
        self._db, self._nc, self._router, self._clock = db, client, router, clock
        self._due, self._due_version, self._category = due, due_version, category
        self._id = due.execution_id
        self._version = 0
        self._done: dict[str, DeviceResultRecorded] = {}
        self._unwritten: list[DeviceResultRecorded] = []
        self._accepted: set[str] = set()
        self._waiting: set[str] = set()
        self._arrived = asyncio.Event()
        self._abandoned: str | None = None
        self._jobs: dict[str, bytes] = {}  # each dispatched device's job, encoded
        self._task: TaskState | None = None  # the task as fired, once read

    async def run(self) -> None:
        async with self._one_connection():
            started = await self._load()
        if started is None:
            return  # completed already
        targets = started.device_ids
        pending = [device for device in targets if device not in self._done]
        if pending:
            await self._dispatch(started, pending)
        await self._complete(started)

    @contextlib.asynccontextmanager
    async def _one_connection(self) -> AsyncIterator[None]:
        """The block's queries on one connection of the pool: one checkout (and reset), not one
        per query, which counts when hundreds of runs start together on a small pool."""
        pool = self._db
        if not isinstance(pool, asyncpg.Pool):
            yield
            return
        async with pool.acquire() as conn:
            self._db = conn
            try:
                yield
            finally:
                self._db = pool

    async def _load(self) -> ExecutionStarted | None:
        """Reads what is recorded of this execution; starts it when nothing is."""
        history = await read_stream(self._db, self._id)
        self._version = len(history)
        started: ExecutionStarted | None = None
        for recorded in history:
            match recorded.event:
                case ExecutionCompleted():
                    return None
                case ExecutionStarted() as event:
                    started = event
                case DeviceResultRecorded() as event:
                    self._done[event.device_id] = event
        if started is not None:
            return started
        return await self._start()

    async def _start(self) -> ExecutionStarted | None:
        now = self._clock.now()
        task = self._task = await task_as_fired(self._db, self._due.task_id, self._due_version)
        spec = task.spec
        if now - self._due.due_at > STALE_AFTER:
            # An old TaskDue (no executor was running): running it now would surprise everyone.
            spec = None
            self._abandoned = f"not started: it was due {self._due.due_at.isoformat()}"
        targets = await resolve_targets(self._db, spec) if spec is not None else []
        timeout = timedelta(seconds=job_timeout(spec)) if spec is not None else timedelta(0)
        started = ExecutionStarted(
            execution_id=self._id,
            task_id=self._due.task_id,
            trigger=self._due.trigger,
            scheduled_for=self._due.scheduled_for,
            started_at=now,
            device_ids=targets,
            deadline=now + ACCEPT_TIMEOUT + timeout + DEADLINE_GRACE,
        )
        try:
            await self._append([started])
        except ConcurrencyError:
            return await self._load()  # another replica started it a moment ago: resume
        except TooLarge:
            # More targets than one event may name: the run fails, saying so, on no device.
            self._abandoned = f"not started: its {len(targets)} target devices are too many"
            started = msgspec.structs.replace(started, device_ids=[])
            try:
                await self._append([started])
            except ConcurrencyError:
                return await self._load()
        return started

    async def _dispatch(self, started: ExecutionStarted, pending: list[str]) -> None:
        now = self._clock.now()
        heard = await presence(self._db, pending, now)
        for device in pending:
            if device in heard.online:
                continue
            when = heard.last_seen.get(device)
            reason = (
                f"the device is offline: no heartbeat since {when.isoformat()}"
                if when
                else "the device has never connected"
            )
            self._result(device, "unreachable", error=reason)
        reachable = [device for device in pending if device in heard.online]
        if not reachable:
            return
        task = self._task or await task_as_fired(self._db, self._due.task_id, self._due_version)
        assert task.spec is not None
        spec = task.spec
        for device in reachable:
            self._router.expect(job_id(self._id, device), device, self._on_report)
        try:
            for device in reachable:
                job = job_for(spec, job_id(self._id, device), self._id)
                self._jobs[device] = _encode(job)
                await self._nc.publish(jobs_subject(device), self._jobs[device])
            await self._nc.flush()
            log.info("jobs_dispatched", execution_id=self._id, devices=len(reachable))
            await self._collect(reachable, started)
        finally:
            for device in reachable:
                self._router.forget(job_id(self._id, device))

    async def _collect(self, devices: list[str], started: ExecutionStarted) -> None:
        """Waits for the devices' results, writing them in batches, until each has one."""
        self._waiting = {device for device in devices if device not in self._done}
        accept_by = self._clock.now() + ACCEPT_TIMEOUT
        # A run resumed after its deadline still gives the agents time to answer from their
        # journals before anything is recorded as timed out.
        deadline = max(started.deadline or accept_by, accept_by)
        resend = Backoff(first=RESEND_FIRST, limit=RESEND_LIMIT)
        resend_at = self._clock.now() + timedelta(seconds=resend.next())
        while self._waiting:
            now = self._clock.now()
            if now >= resend_at:
                await self._resend()
                resend_at = now + timedelta(seconds=resend.next())
            if now >= accept_by:
                for device in self._waiting - self._accepted:
                    self._result(device, "unreachable", error="no answer from the agent in time")
            if now >= deadline:
                for device in list(self._waiting):
                    self._result(device, "timeout", error="no result before the deadline")
            if self._waiting:
                await self._flush()  # the last results are written with ExecutionCompleted
            if not self._waiting:
                break
            timers = [t for t in (accept_by, deadline, resend_at) if t > now]
            self._arrived.clear()
            await wait_first(self._arrived, timeout=self._sleep_for(timers, now))

    async def _resend(self) -> None:
        """The job again to every device that has not reported its result yet."""
        waiting = list(self._waiting)  # reports may come in while the jobs go out
        for device in waiting:
            await self._nc.publish(jobs_subject(device), self._jobs[device])
        log.info("jobs_resent", execution_id=self._id, devices=len(waiting))

    def _sleep_for(self, timers: list[datetime], now: datetime) -> float:
        until_timer = min((t - now).total_seconds() for t in timers) if timers else 1.0
        return min(until_timer, FLUSH_INTERVAL) if self._unwritten else until_timer

    def _on_report(self, device_id: str, report: JobReport) -> None:
        self._accepted.add(device_id)
        if report.state == "accepted":
            return
        self._result(
            device_id,
            report.status or "failed",
            exit_code=report.exit_code,
            stdout=report.stdout,
            stderr=report.stderr,
            error=report.error,
        )
        # Wake the collector only when there is something to do: a full batch, or the end.
        if not self._waiting or len(self._unwritten) >= FLUSH_SIZE:
            self._arrived.set()
        elif len(self._unwritten) == 1:
            self._arrived.set()  # start the flush interval

    def _result(self, device_id: str, status: str, **fields: object) -> None:
        if device_id in self._done:
            return
        event = DeviceResultRecorded(
            execution_id=self._id,
            task_id=self._due.task_id,
            device_id=device_id,
            status=status,
            recorded_at=self._clock.now(),
            **fields,  # type: ignore[arg-type]
        )
        self._done[device_id] = event
        self._waiting.discard(device_id)
        self._unwritten.append(event)

    async def _flush(self) -> None:
        """Writes the results gathered so far, in one append."""
        while self._unwritten:
            batch, self._unwritten = self._unwritten[:FLUSH_SIZE], self._unwritten[FLUSH_SIZE:]
            try:
                await self._append(batch)
            except ConcurrencyError:
                # Another replica resumed this execution too: keep only what it has not written.
                recorded = {
                    r.event.device_id: r.event
                    for r in await read_stream(self._db, self._id)
                    if isinstance(r.event, DeviceResultRecorded)
                }
                self._version = await stream_version(self._db, self._id)
                self._unwritten = [
                    e for e in batch + self._unwritten if e.device_id not in recorded
                ]
                self._done.update(recorded)

    async def _complete(self, started: ExecutionStarted) -> None:
        """Writes the last results and ExecutionCompleted, in one append when they fit."""
        if len(self._unwritten) >= FLUSH_SIZE:
            await self._flush()
        try:
            await self._append([*self._unwritten, self._completed(started)])
            self._unwritten = []
            return
        except ConcurrencyError:
            if not self._unwritten:
                log.info("completed_elsewhere", execution_id=self._id)
                return
        # Another replica resumed this execution too: write what it has not, then complete.
        await self._flush()
        try:
            await self._append([self._completed(started)])
        except ConcurrencyError:
            log.info("completed_elsewhere", execution_id=self._id)

    def _completed(self, started: ExecutionStarted) -> ExecutionCompleted:
        results = [self._done[device] for device in started.device_ids if device in self._done]
        succeeded = sum(1 for result in results if result.status == "success")
        failed = len(results) - succeeded
        if self._abandoned is not None:
            status, error = "failed", self._abandoned
        elif not started.device_ids:
            status, error = (
                "failed",
                "no target devices: the task names none and its groups are empty",
            )
        elif failed:
            status, error = "failed", f"{failed} of {len(results)} devices did not succeed"
        else:
            status, error = "success", None
        return ExecutionCompleted(
            execution_id=self._id,
            task_id=self._due.task_id,
            status=status,
            completed_at=self._clock.now(),
            error_message=error,
            devices_targeted=len(started.device_ids),
            devices_succeeded=succeeded,
            devices_failed=failed,
        )

    async def _append(self, events: Sequence[Event]) -> None:
        await append(
            self._db,
            self._id,
            self._category,
            events,
            expected_version=self._version,
            metadata=METADATA,
        )
        self._version += len(events)
