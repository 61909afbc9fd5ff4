"""One execution, from TaskDue to ExecutionCompleted: an I/O shell around the domain's decisions.

It folds the execution's stream, asks `decide` what to do now (given the time, presence, and
which agents never answered), appends what it returns, and sends the jobs and cancels those
events name. A redelivered TaskDue resumes from the log, so does a second replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

import asyncpg
import msgspec
import nats.aio.client
import nats.errors
import structlog

from events.base import Event
from events.execution import (
    DeviceJobDispatched,
    DeviceResultRecorded,
    ExecutionCompleted,
    ExecutionStarted,
)
from services.agent.protocol import CancelJob, Job, JobReport, jobs_subject
from services.domain.errors import TooLarge
from services.domain.execution import (
    ACCEPT_TIMEOUT,
    DEVICES_PER_EVENT,
    FINAL,
    ExecutionState,
    Presence,
    decide,
    evolve,
    evolve_all,
    fold,
    record_reports,
    run_deadline,
    split_start,
)
from services.executor.outbox import Outbox
from services.executor.results import ResultRouter
from services.executor.spec import RunOrder, RunSpec, spec_of
from services.executor.targets import job_for, presence, resolve_targets
from services.infra.clock import Backoff, Clock, wait_first
from services.infra.db import Db
from services.infra.metrics import EXECUTOR_RESULTS
from services.infra.store import ConcurrencyError, append, read_stream

log = structlog.get_logger("deployx.executor")
_encode = msgspec.json.Encoder().encode

# Results are written in batches: at most this long after one arrives, or this many at once,
# or as soon as every device with a job out has answered (a wave's last result starts the next
# wave at once).
FLUSH_INTERVAL = 0.05
FLUSH_SIZE = 1000
# Presence is read at most this often (and at once when a decision needs it first). A reading
# older than that is renewed beside the run: its steps go on with the last one meanwhile (a
# query over thousands of devices is then not in the way of every wave), unless it is older
# than PRESENCE_STALE; the run looks again as soon as a renewed reading changes who is online.
PRESENCE_EVERY = 1.0
PRESENCE_STALE = 3.0
# Jobs and reports travel on core NATS, at most once: every job out without a result is sent
# again 2 s after it went out, then 4, 8, 16 s after the resend before, then every 30 s; one
# timer for the jobs a step sent together (a run taken up again sends its jobs out anew, on a
# new timer). The agent runs a job id once and answers a repeat from its journal.
RESEND_FIRST, RESEND_LIMIT = 2.0, 30.0
# A step waits this long for the server to confirm its jobs went out; the confirmation is
# awaited in the background for up to FLUSH_PATIENCE.
FLUSH_WAIT, FLUSH_PATIENCE = 2.0, 600
# Jobs (and resends) go out in slices of this many, the event loop free between them, and paced:
# once JOBS_IN_FLIGHT jobs are out whose agents have not said a word yet (each job brings two
# reports), the next slice waits for reports. So what 100,000 agents send back never piles up in
# nats-server faster than this executor reads it: the server cuts a slow consumer off and drops
# everything it had queued for it (at 64 MiB by default; 100,000 reports take about 20 MiB).
# A job unanswered for PACE_AGE no longer counts (devices that never answer hold nobody up),
# and a wait ends when no report came for PACE_STALL.
PUBLISH_SLICE = 500
JOBS_IN_FLIGHT = 50_000
PACE_AGE, PACE_STALL = 1.0, 0.2
# Up to this many jobs unanswered (or JOBS_IN_FLIGHT if fewer), slices go out back to back,
# without letting the loop read reports in between.
PACE_FREE = 10_000
# A TaskDue older than this that no executor started is recorded as failed, not run.
STALE_AFTER = timedelta(hours=1)
METADATA = {"user": "scheduler", "service": "executor"}


def job_id(execution_id: str, device_id: str) -> str:
    return f"{execution_id}:{device_id}"


# Flushes still waiting for the server's answer after FLUSH_WAIT (kept so they finish).
_flushes: set[asyncio.Future[None]] = set()


async def pushed_out(client: nats.aio.client.Client) -> None:
    """Until the server has everything published so far, or FLUSH_WAIT has passed: a slow
    answer (a busy server, or thousands of reports ahead of it) is no failure, the resends
    cover a job that got lost. The flush goes on meanwhile: nats-py fails its connection when
    the answer to a flush that timed out arrives."""
    if not client.is_connected:
        return  # reconnecting: what was taken goes out once connected, the rest is resent
    flushing = asyncio.ensure_future(client.flush(timeout=FLUSH_PATIENCE))
    done, _ = await asyncio.wait({flushing}, timeout=FLUSH_WAIT)
    if done:
        flushing.result()
        return
    log.warning("jobs_flush_slow", seconds=FLUSH_WAIT)
    _flushes.add(flushing)
    flushing.add_done_callback(_flush_ended)


def _flush_ended(flushing: asyncio.Future[None]) -> None:
    _flushes.discard(flushing)
    if not flushing.cancelled() and flushing.exception() is not None:
        log.warning("jobs_flush_failed", error=str(flushing.exception()))


class Pacing(NamedTuple):
    """How jobs go out (DEPLOYX_EXECUTOR_PUBLISH_SLICE, _JOBS_IN_FLIGHT, _PACE_SECONDS): in
    slices of `slice`, waiting once `in_flight` recent jobs are unanswered; a job counts as
    recent for `age` seconds, and a wait ends after a fifth of that without a report."""

    slice: int = PUBLISH_SLICE
    in_flight: int = JOBS_IN_FLIGHT
    age: float = PACE_AGE

    @property
    def stall(self) -> float:
        return self.age * PACE_STALL / PACE_AGE

    @property
    def free(self) -> int:
        return min(PACE_FREE, self.in_flight)


PACING = Pacing()


class Step(NamedTuple):
    """One step of a run: the state after its events, and what it took in to get there."""

    state: ExecutionState
    events: list[Event]  # to append: the results recorded, then what was decided
    decided: list[Event]
    version: int  # the stream's version before them
    reports: list[tuple[str, JobReport]]
    now: datetime


class Resend:
    """The jobs one step sent, and when those still out without a result go again."""

    def __init__(self, devices: list[str], now: datetime) -> None:
        self.devices = devices
        self.delay = Backoff(first=RESEND_FIRST, limit=RESEND_LIMIT)
        self.at = now + timedelta(seconds=self.delay.next())


class ExecutionRun:
    def __init__(
        self,
        db: Db,
        client: nats.aio.client.Client,
        router: ResultRouter,
        clock: Clock,
        order: RunOrder,
        category: str,
        per_event: int = DEVICES_PER_EVENT,
        *,
        fresh: bool = False,
        pacing: Pacing = PACING,
    ) -> None:
        self._db, self._nc, self._router, self._clock = db, client, router, clock
        self._pool = db  # _db is a borrowed connection for a while; readings beside use this
        self._order, self._category = order, category
        # A first delivery: the run is most likely not recorded yet, so it is started without
        # reading its stream first (the start's append at version 0 finds out if it was).
        self._fresh = fresh and order.request is None  # a request is its stream's first event
        self._per_event = per_event  # device ids one event lists at most
        self._pacing = pacing
        self._id = order.execution_id
        self._spec: RunSpec | None = None
        self._reports: list[tuple[str, JobReport]] = []
        self._arrived = asyncio.Event()
        # The batch in _reports is complete: FLUSH_SIZE reports, or a result from every device
        # the last step left running (_outstanding); _finished counts the results in it.
        self._gathered = asyncio.Event()
        self._finished = 0
        self._outstanding = 0
        self._first_sent: dict[str, datetime] = {}
        self._accepted: set[str] = set()
        # Devices whose result came in, recorded or not yet (a step being written holds it):
        # their jobs are not sent again.
        self._answered: set[str] = set()
        self._jobs: dict[str, bytes] = {}
        self._job: Job | None = None
        # Devices whose job went out lately and whose agent has said nothing since: when
        # (the loop's clock), oldest first. Paces the jobs (_pace).
        self._unheard: dict[str, float] = {}
        self._heard = asyncio.Event()
        self._presence = Presence(online=frozenset())
        self._presence_at: datetime | None = None
        self._presence_reading: asyncio.Task[tuple[Presence, datetime]] | None = None
        self._cancels_sent = False
        self._reload = False
        self._canceled = False  # a cancel was heard: jobs not out yet stay unsent
        # Jobs, resends and cancels go out in a task of their own, in order; the run records
        # the results that come back meanwhile (100,000 paced jobs take a while to send).
        self._outbox = Outbox(self._arrived.set)
        self._latest = ExecutionState(execution_id=self._id)
        self._resends: list[Resend] = []
        self._resend_of: dict[str, Resend] = {}  # each job's latest timer
        # The step _start wrote with ExecutionStarted (its jobs not sent yet), if it did.
        self._opening: Step | None = None

    async def run(self) -> None:
        self._router.watch(self._id, self._wake)
        try:
            async with self._one_connection():
                state = await self._load()
                if state.completed is None and self._opening is None:
                    await self._adopt(state)  # not a run this executor has just started
            if self._opening is not None:
                await self._hand_over(self._opening)
                self._opening = None
            while state.completed is None:
                self._outbox.check()
                self._latest = state  # what resends go by when their turn comes
                self._canceled = self._canceled or state.cancel is not None
                step = await self._prepare(state)
                if not await self._write(step):
                    # A cancel, or another replica: take the log's word and decide again.
                    self._put_back(step.reports)
                    state = await self._load()
                    continue
                self._count_results(step.events)
                state = step.state
                self._outstanding = len(state.with_status("running"))
                await self._hand_over(step)
                if not step.events:
                    await self._wait(state)
                elif state.completed is None:
                    # Straight on with what arrived meanwhile, if anything, while these go out.
                    self._resend_if_due(state)
            await self._outbox.drain()
        finally:
            await self._outbox.close()
            self._drop_presence_reading()
            self._router.unwatch(self._id)
            for device in self._jobs:
                self._router.forget(job_id(self._id, device))

    def _wake(self) -> None:
        """Something was recorded on this run by someone else (a cancel): read it again. No
        job goes out after that: the agents of devices whose job was not sent yet are sent the
        cancel anyway, and record the job canceled without starting it."""
        self._reload = True
        self._canceled = True
        self._arrived.set()
        self._heard.set()  # a send waiting for reports stops waiting

    @contextlib.asynccontextmanager
    async def _one_connection(self) -> AsyncIterator[None]:
        """The block's queries on one connection of the pool: one checkout, not one per query,
        which counts when hundreds of runs start together on a small pool."""
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

    async def _load(self) -> ExecutionState:
        """The execution as the log has it; started now if nothing is recorded yet."""
        if self._fresh:
            self._fresh = False
            with contextlib.suppress(ConcurrencyError):  # it was: read it
                return await self._start(fold(self._id, (), self._order.task_id or ""))
        history = await read_stream(self._db, self._id)
        state = fold(self._id, (r.event for r in history), self._order.task_id or "")
        if state.started is None and state.completed is None:
            try:
                state = await self._start(state)
            except ConcurrencyError:
                return await self._load()  # another replica started it a moment ago
        return state

    async def _start(self, state: ExecutionState) -> ExecutionState:
        now = self._clock.now()
        spec = await self._run_spec()
        if now - self._order.due_at > STALE_AFTER:
            # An old TaskDue (no executor was running): running it now would surprise everyone.
            due_at = self._order.due_at.isoformat()
            return await self._end_unstarted(state, now, f"not started: it was due {due_at}")
        targets = await resolve_targets(self._db, spec.device_ids, spec.group_ids)
        timeout = timedelta(seconds=spec.timeout_seconds)
        begun = ExecutionStarted(
            execution_id=self._id,
            task_id=self._order.task_id or "",
            trigger=self._order.trigger,
            scheduled_for=self._order.scheduled_for,
            started_at=now,
            device_ids=targets,
            delivery=spec.delivery,
            job_timeout_seconds=spec.timeout_seconds,
            deadline=run_deadline(now, spec.delivery, len(targets), timeout),
        )
        # The first step is decided now and written with the start: one commit, on this
        # connection, before any job goes out (run() sends them once it is written).
        events = split_start(begun, self._per_event)
        started = evolve_all(state, events)
        presence_now = await self._first_presence(started, now)
        decided = decide(started, now, presence_now, per_event=self._per_event)
        written = [*events, *decided]
        try:
            await self._append(written, state.version)
        except TooLarge as exc:
            return await self._end_unstarted(state, now, f"not started: {exc}")
        self._count_results(decided)
        after = evolve_all(started, decided)
        self._opening = Step(after, written, decided, state.version, [], now)
        return after

    async def _first_presence(self, state: ExecutionState, now: datetime) -> Presence:
        """Who of the targets is online, read on the run's connection for its first step."""
        self._presence = await presence(self._db, state.targets, now)
        self._presence_at = now
        return self._presence

    async def _end_unstarted(
        self, state: ExecutionState, now: datetime, reason: str
    ) -> ExecutionState:
        """Records the run as started on no device and failed, with the reason."""
        events: list[Event] = [
            ExecutionStarted(
                execution_id=self._id,
                task_id=self._order.task_id or "",
                trigger=self._order.trigger,
                scheduled_for=self._order.scheduled_for,
                started_at=now,
                device_ids=[],
            ),
            ExecutionCompleted(
                execution_id=self._id,
                task_id=self._order.task_id or "",
                status="failed",
                completed_at=now,
                error_message=reason,
            ),
        ]
        await self._append(events, state.version)
        log.warning("execution_not_started", reason=reason)
        for event in events:
            state = evolve(state, event)
        return state

    async def _adopt(self, state: ExecutionState) -> None:
        """Jobs another executor sent (it died, or lost the TaskDue to us) go out again: each
        agent answers from its journal, and the accept window starts over from now."""
        out = [d for d in state.with_status("running", "waiting") if state.devices[d].dispatched_at]
        if out:
            await self._job_of_run()
            self._outbox.put(functools.partial(self._send_jobs, out, self._clock.now()))

    async def _send_jobs(self, devices: list[str], now: datetime) -> None:
        await self._publish_jobs(devices, now)
        await pushed_out(self._nc)

    async def _run_spec(self) -> RunSpec:
        if self._spec is None:
            self._spec = await spec_of(self._db, self._order)
        return self._spec

    async def _prepare(self, state: ExecutionState) -> Step:
        """Records what came in and decides what to do now: the events to write."""
        # What arrives from here on wakes the next wait: it is not in this step.
        self._arrived.clear()
        if self._reload:
            self._reload = False
            state = await self._load()
        now = self._clock.now()
        reports, self._reports = self._reports, []
        self._finished = 0
        self._gathered.clear()
        version = state.version
        for device, _ in reports:
            self._accepted.add(device)
            self._first_sent.pop(device, None)
        events = record_reports(
            state,
            now,
            (
                (
                    device,
                    report.status or "failed",
                    {
                        "exit_code": report.exit_code,
                        "stdout": report.stdout,
                        "stderr": report.stderr,
                        "error": report.error,
                    },
                )
                for device, report in reports
                if report.state == "finished"
            ),
        )
        state = evolve_all(state, events)
        decided = decide(
            state,
            now,
            await self._presence_now(state, now),
            self._unanswered(now),
            self._per_event,
        )
        return Step(evolve_all(state, decided), [*events, *decided], decided, version, reports, now)

    async def _write(self, step: Step) -> bool:
        """Appends the step's events at its version; False if the stream moved meanwhile:
        nothing of this step is written then."""
        if not step.events:
            return True
        try:
            await self._append(step.events, step.version)
        except ConcurrencyError:
            return False
        return True

    async def _hand_over(self, step: Step) -> None:
        """The jobs and cancels of a written step, to the outbox (each job goes out only once
        its DeviceJobDispatched is written, and in the order written)."""
        dispatched = any(isinstance(e, DeviceJobDispatched) for e in step.decided)
        if dispatched:
            await self._job_of_run()
        elif step.state.cancel is None or self._cancels_sent:
            return  # nothing to send
        self._outbox.put(functools.partial(self._send, step))

    def _put_back(self, reports: list[tuple[str, JobReport]]) -> None:
        """Reports taken into a step that was not written: they go into the next one."""
        self._reports = reports + self._reports
        self._finished += sum(1 for _, report in reports if report.state == "finished")

    def _count_results(self, events: Sequence[Event]) -> None:
        counts = Counter(e.status for e in events if isinstance(e, DeviceResultRecorded))
        for status, count in counts.items():
            EXECUTOR_RESULTS.labels(self._category, status).inc(count)

    async def _presence_now(self, state: ExecutionState, now: datetime) -> Presence:
        reading = self._presence_reading
        if reading is not None and reading.done():
            self._presence_reading = None
            self._presence, self._presence_at = reading.result()  # or what the query raised
        age = None if self._presence_at is None else now - self._presence_at
        if age is not None and age < timedelta(seconds=PRESENCE_EVERY):
            return self._presence
        if self._presence_reading is None:
            asked = [d for d in state.targets if state.devices[d].status not in FINAL]
            self._presence_reading = asyncio.create_task(
                self._read_presence(self._pool, asked, now)
            )
        if age is None or age >= timedelta(seconds=PRESENCE_STALE):
            reading, self._presence_reading = self._presence_reading, None
            self._presence, self._presence_at = await reading
        return self._presence

    async def _read_presence(
        self, db: Db, asked: list[str], now: datetime
    ) -> tuple[Presence, datetime]:
        heard = await presence(db, asked, now)
        if heard.online != self._presence.online:
            self._arrived.set()  # someone came or went: decide again with it
        return heard, now

    def _drop_presence_reading(self) -> None:
        reading, self._presence_reading = self._presence_reading, None
        if reading is None:
            return
        if reading.done():
            if not reading.cancelled():
                reading.exception()  # retrieved: the run is over, whatever it says
        else:
            reading.cancel()

    def _unanswered(self, now: datetime) -> set[str]:
        """Devices sent a job ACCEPT_TIMEOUT ago or more that never answered. _first_sent
        holds only those not heard from, oldest first: the look stops at the first younger."""
        found: set[str] = set()
        for device, sent in self._first_sent.items():
            if now - sent < ACCEPT_TIMEOUT:
                break
            if device not in self._accepted:
                found.add(device)
        return found

    async def _send(self, step: Step) -> None:
        """The jobs of a written step, and the cancels once a cancel is recorded."""
        state, sent = step.state, False
        devices = [
            d for e in step.decided if isinstance(e, DeviceJobDispatched) for d in e.device_ids
        ]
        if devices:
            await self._publish_jobs(devices, step.now)
            sent = True
        if state.cancel is not None and not self._cancels_sent:
            self._cancels_sent = True
            for device in state.with_status("running", "waiting"):
                cancel = CancelJob(job_id=job_id(self._id, device))
                if not await self._publish(device, _encode(cancel)):
                    self._cancels_sent = False  # all of them again on the next step
                    break
                sent = True
        if sent:
            await pushed_out(self._nc)

    async def _job_of_run(self) -> None:
        """Every device's job is this one with its own id: the payload is checked and encoded
        once per run, not once per device (a run may have 100,000). Read in the run's task,
        before its jobs are handed over: the outbox only sends."""
        if self._job is None:
            self._job = job_for(await self._run_spec(), "", self._id)

    async def _publish_jobs(self, devices: Sequence[str], now: datetime) -> None:
        assert self._job is not None
        resend = Resend(list(devices), self._clock.now())  # from now: the append took a while
        for device in devices:
            self._router.expect(job_id(self._id, device), device, self._on_report)
            job = msgspec.structs.replace(self._job, job_id=job_id(self._id, device))
            self._jobs[device] = _encode(job)
            self._resend_of[device] = resend
        sent = await self._publish_paced(devices, first=True)
        if sent < len(devices) and not self._canceled:
            log.warning("jobs_held_back", devices=len(devices) - sent)
        # The resends count from when the last of these went out: paced, 100,000 jobs take a
        # while, and those sent last are not to go again before their agents could answer.
        resend.at = max(resend.at, self._clock.now() + timedelta(seconds=RESEND_FIRST))
        self._resends.append(resend)
        log.info("jobs_dispatched", execution_id=self._id, devices=len(devices))

    async def _publish_paced(self, devices: Sequence[str], first: bool = False) -> int:
        """Publishes the jobs of devices in order, paced; how many went (all unless the client
        took no more: reconnecting, its buffer full). first: their first sending, from which
        the agents' time to say "accepted" counts (for those held back too)."""
        loop = asyncio.get_running_loop()
        at = self._clock.now()
        for sent, device in enumerate(devices):
            if sent % self._pacing.slice == 0 and sent:
                await self._pace()
                if self._canceled:
                    return sent
                at = self._clock.now()
            if first:
                self._first_sent.setdefault(device, at)
            if not await self._publish(device, self._jobs[device]):
                for held in devices[sent + 1 :] if first else ():
                    self._first_sent.setdefault(held, at)
                return sent
            self._unheard.pop(device, None)  # to the end: sent now
            self._unheard[device] = loop.time()
        return len(devices)

    async def _pace(self) -> None:
        """Until fewer than JOBS_IN_FLIGHT recent jobs are unanswered, or reports stop coming."""
        loop, unheard, pacing = asyncio.get_running_loop(), self._unheard, self._pacing
        if len(unheard) <= pacing.free:
            return  # their reports cannot flood anyone: on at full speed
        await asyncio.sleep(0)  # the connection reads the reports that came meanwhile
        while True:
            old = loop.time() - pacing.age
            while unheard and next(iter(unheard.values())) < old:
                unheard.pop(next(iter(unheard)))
            if len(unheard) <= pacing.in_flight:
                return
            self._heard.clear()
            await wait_first(self._heard, timeout=pacing.stall)
            if not self._heard.is_set() or self._canceled:
                return

    async def _publish(self, device: str, data: bytes) -> bool:
        """False when the client takes nothing now (reconnecting, its buffer full): a job not
        sent goes with the next resend, a cancel with the next step."""
        try:
            await self._nc.publish(jobs_subject(device), data)
        except nats.errors.OutboundBufferLimitError:
            return False
        return True

    async def _wait(self, state: ExecutionState) -> None:
        """Until a report arrives (then a moment more, to gather a batch), a resend is due, or
        a second has passed: timers and presence are looked at again then."""
        timeout = PRESENCE_EVERY
        if self._resends:
            first = min(resend.at for resend in self._resends)
            timeout = min(timeout, (first - self._clock.now()).total_seconds())
        await wait_first(self._arrived, timeout=max(0.0, timeout))
        if self._reports and not self._gathered.is_set():
            await wait_first(self._gathered, timeout=FLUSH_INTERVAL)
        self._resend_if_due(state)

    def _resend_if_due(self, state: ExecutionState) -> None:
        self._latest = state
        now = self._clock.now()
        for resend in [r for r in self._resends if now >= r.at]:
            self._outbox.put(functools.partial(self._resend, resend))
            resend.at = now + timedelta(seconds=resend.delay.next())

    def _on_report(self, device_id: str, report: JobReport) -> None:
        self._reports.append((device_id, report))
        if self._unheard.pop(device_id, None) is not None:
            self._heard.set()
        if report.state == "finished":
            self._answered.add(device_id)
            # A result to record (an "accepted" alone changes nothing in the log): the wait
            # ends, and gathers whatever else arrives in the next FLUSH_INTERVAL.
            self._finished += 1
            self._arrived.set()
        if len(self._reports) >= FLUSH_SIZE or self._finished >= self._outstanding:
            self._gathered.set()

    async def _resend(self, resend: Resend) -> None:
        """The job again to each of resend's devices still running without a result, received
        or recorded (and not sent again since, on a timer of its own); a timer with none left
        is dropped."""
        state, answered = self._latest, self._answered
        out = [
            d
            for d in resend.devices
            if self._resend_of.get(d) is resend
            and d not in answered
            and d in self._jobs
            and (current := state.devices.get(d)) is not None
            and current.status == "running"
        ]
        if not out:
            # A device silent meanwhile gets a new timer when back. (The timer may have been
            # dropped already: it came due again while its resend waited for the outbox.)
            with contextlib.suppress(ValueError):
                self._resends.remove(resend)
            return
        await self._publish_paced(out)
        if out:
            log.info("jobs_resent", execution_id=self._id, devices=len(out))

    async def _append(self, events: Sequence[Event], expected_version: int) -> None:
        await append(
            self._db,
            self._id,
            self._category,
            events,
            expected_version=expected_version,
            metadata=METADATA,
        )
