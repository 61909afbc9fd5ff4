"""One execution: its state folded from its events, and the pure decisions of a run.

The executor is a shell around this: it folds the stream, asks `decide` what to do now (given
the time, who is online and which agents never answered), appends what it returns, and sends
the jobs those events name. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from events.base import Event
from events.execution import (
    Delivery,
    DeviceJobDispatched,
    DeviceResultRecorded,
    DevicesWaiting,
    ExecutionCancelRequested,
    ExecutionCompleted,
    ExecutionStarted,
    ExecutionTargetsAdded,
)
from services.domain.delivery import concurrency, error_budget, wave_sizes
from services.domain.errors import Conflict

# How long an online agent has to say "accepted" before its device counts as unreachable.
ACCEPT_TIMEOUT = timedelta(seconds=10)
# Time past a job's own timeout for its result to travel back.
RESULT_GRACE = timedelta(seconds=30)
FAILED = frozenset({"failed", "timeout", "unreachable", "expired"})
FINAL = FAILED | {"success", "skipped", "canceled"}
NEVER_CONNECTED = "the device has never connected"
# Device ids one event lists at most (ExecutionStarted, ExecutionTargetsAdded, and the jobs
# and waits of one step): 2,000 ids of the longest kind (128 characters) take about 260 KiB,
# well inside an event's 512 KiB (services/infra/store.py MAX_EVENT_BYTES); 3,500 would take
# 460 KiB, the most DEPLOYX_DEVICES_PER_EVENT allows (services/infra/settings.py).
DEVICES_PER_EVENT = 2000
TIMED_OUT = "no result before the deadline"


class Device(msgspec.Struct, frozen=True):
    """pending -> (waiting) -> running -> a final status; waiting may also follow running,
    when the device falls silent mid-job."""

    status: str = "pending"
    dispatched_at: datetime | None = None
    finished_at: datetime | None = None


class Presence(msgspec.Struct, frozen=True):
    online: frozenset[str]
    last_seen: dict[str, datetime] = {}


class ExecutionState(msgspec.Struct, frozen=True, kw_only=True):
    execution_id: str
    task_id: str = ""  # "" for an ad-hoc run
    version: int = 0
    started: ExecutionStarted | None = None
    # Every target in order: ExecutionStarted's device ids, then its ExecutionTargetsAdded'.
    targets: list[str] = []
    devices: dict[str, Device] = {}
    cancel: ExecutionCancelRequested | None = None
    completed: ExecutionCompleted | None = None

    @property
    def delivery(self) -> Delivery:
        return self.started.delivery if self.started is not None else Delivery()

    def with_status(self, *statuses: str) -> list[str]:
        return [d for d in self.targets if self.devices[d].status in statuses]


def evolve(state: ExecutionState, event: Event) -> ExecutionState:
    return evolve_all(state, (event,))


def evolve_all(state: ExecutionState, events: Iterable[Event]) -> ExecutionState:
    """The state after events, as evolve gives it one at a time, with the devices copied once
    (not once per event: a run of 10,000 devices records 10,000 results)."""
    version, started, cancel, completed = (
        state.version,
        state.started,
        state.cancel,
        state.completed,
    )
    devices, targets = state.devices, state.targets
    copied = False
    for event in events:
        version += 1
        match event:
            case ExecutionStarted():
                started = event
                devices, copied = {device: Device() for device in event.device_ids}, True
                targets = list(devices)
            case ExecutionTargetsAdded():
                if not copied:
                    devices, copied = dict(devices), True
                if targets is state.targets:
                    targets = list(targets)
                for device in event.device_ids:
                    if device not in devices:
                        devices[device] = Device()
                        targets.append(device)
            case DeviceJobDispatched():
                if not copied:
                    devices, copied = dict(devices), True
                running = Device("running", dispatched_at=event.dispatched_at)
                for d in event.device_ids:
                    if d in devices and devices[d].status not in FINAL:
                        devices[d] = running
            case DevicesWaiting():
                if not copied:
                    devices, copied = dict(devices), True
                for d in event.device_ids:
                    if d in devices and devices[d].status not in FINAL:
                        devices[d] = msgspec.structs.replace(devices[d], status="waiting")
            case DeviceResultRecorded() if event.device_id in devices:
                if not copied:
                    devices, copied = dict(devices), True
                devices[event.device_id] = msgspec.structs.replace(
                    devices[event.device_id], status=event.status, finished_at=event.recorded_at
                )
            case ExecutionCancelRequested():
                cancel = event
            case ExecutionCompleted():
                completed = event
    return msgspec.structs.replace(
        state,
        version=version,
        started=started,
        targets=targets,
        devices=devices,
        cancel=cancel,
        completed=completed,
    )


def fold(execution_id: str, events: Iterable[Event], task_id: str = "") -> ExecutionState:
    """The state after events; task_id names the task until ExecutionStarted does."""
    return evolve_all(ExecutionState(execution_id=execution_id, task_id=task_id), events)


def chunked(items: Sequence[str], size: int) -> list[list[str]]:
    """items in order, in lists of at most size (none for no items)."""
    if size < 1:
        raise ValueError(f"size must be at least 1, not {size}")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def split_start(started: ExecutionStarted, per_event: int = DEVICES_PER_EVENT) -> list[Event]:
    """The run's start as events within bounds: ExecutionStarted with the first per_event
    targets and the count of all, then ExecutionTargetsAdded with the rest, per_event each.
    They go into one append, so no reader of the stream sees some of the targets only."""
    parts = chunked(started.device_ids, per_event) or [[]]
    first = msgspec.structs.replace(
        started, device_ids=parts[0], devices_targeted=len(started.device_ids)
    )
    return [
        first,
        *(
            ExecutionTargetsAdded(
                execution_id=started.execution_id, task_id=started.task_id, device_ids=part
            )
            for part in parts[1:]
        ),
    ]


def run_deadline(
    started_at: datetime, delivery: Delivery, targets: int, job_timeout: timedelta
) -> datetime:
    """When a run with nobody left working on it may be closed by the reconciler: every wave,
    in rounds of the concurrency limit, each round a job's whole time, plus the waits."""
    per_round = ACCEPT_TIMEOUT + job_timeout + RESULT_GRACE
    limit = concurrency(delivery, targets)
    sizes = wave_sizes(delivery, targets) or [0]
    rounds = sum(max(1, -(-size // limit)) for size in sizes)
    pauses = timedelta(seconds=delivery.wave_pause_seconds) * (len(sizes) - 1)
    waiting = timedelta(seconds=delivery.offline_wait_seconds)
    return started_at + waiting + per_round * rounds + pauses


def request_cancel(
    state: ExecutionState, now: datetime, reason: str = ""
) -> ExecutionCancelRequested:
    if state.completed is not None:
        raise Conflict(f"execution {state.execution_id} has finished already")
    if state.cancel is not None:
        raise Conflict(f"execution {state.execution_id} is being canceled already")
    return ExecutionCancelRequested(
        execution_id=state.execution_id,
        task_id=_task_id(state),
        requested_at=now,
        reason=reason,
    )


def record_report(
    state: ExecutionState,
    device: str,
    now: datetime,
    status: str,
    **fields: object,
) -> list[Event]:
    """A device's finished report: its result, if its job is still out (else nothing: a
    repeat, or a report after the device was settled otherwise)."""
    current = state.devices.get(device)
    if (
        state.completed is not None
        or current is None
        or current.status
        not in (
            "running",
            "waiting",
        )
    ):
        return []
    if current.dispatched_at is None:
        return []  # never sent: whatever it says, it is not about this run's job
    return [_result(state, device, status, now, **fields)]


def record_reports(
    state: ExecutionState, now: datetime, reports: Iterable[tuple[str, str, dict[str, Any]]]
) -> list[Event]:
    """record_report of each (device, status, fields) in turn, as if each result were applied
    before the next report is looked at: a device's second report in the batch gives nothing."""
    events: list[Event] = []
    recorded: set[str] = set()
    for device, status, fields in reports:
        if device in recorded:
            continue
        found = record_report(state, device, now, status, **fields)
        if found:
            recorded.add(device)
            events += found
    return events


def decide(
    state: ExecutionState,
    now: datetime,
    presence: Presence,
    unanswered: Iterable[str] = (),
    per_event: int = DEVICES_PER_EVENT,
) -> list[Event]:
    """What the run does now. `unanswered`: devices the executor sent the job to more than
    ACCEPT_TIMEOUT ago that have not said a word (the shell's memory, not the log's).
    per_event: device ids one DeviceJobDispatched or DevicesWaiting lists at most."""
    if state.started is None or state.completed is not None:
        return []
    events = _timers(state, now, presence, set(unanswered), per_event)
    state = evolve_all(state, events)
    settled = (
        _settle_cancel(state, now)
        if state.cancel is not None
        else _dispatch(state, now, presence, per_event)
    )
    events += settled
    state = evolve_all(state, settled)
    if all(state.devices[d].status in FINAL for d in state.targets):
        events.append(completion(state, now))
    return events


def _timers(
    state: ExecutionState, now: datetime, presence: Presence, unanswered: set[str], per_event: int
) -> list[Event]:
    started = state.started
    assert started is not None
    events: list[Event] = []
    wait_until = started.started_at + timedelta(seconds=state.delivery.offline_wait_seconds)
    silent: list[str] = []
    for device in state.with_status("running", "waiting"):
        current = state.devices[device]
        if current.status == "waiting" and now >= wait_until:
            reason = (
                "the device went silent while running its job and did not come back in time"
                if current.dispatched_at is not None
                else f"offline for the whole offline wait ({state.delivery.offline_wait_seconds} s)"
            )
            events.append(_result(state, device, "expired", now, error=reason))
        elif current.dispatched_at is None:
            continue  # waiting for its first job: _dispatch sends it once it is back
        elif (due := _result_due(started, current.dispatched_at)) is not None and now >= due:
            events.append(_result(state, device, "timeout", now, error=TIMED_OUT))
        elif device in unanswered and device in presence.online:
            error = "no answer from the agent in time"
            events.append(_result(state, device, "unreachable", now, error=error))
        elif current.status == "running" and device not in presence.online:
            silent.append(device)
    events += _waiting(state, silent, now, per_event)
    return events


def _result_due(started: ExecutionStarted, dispatched_at: datetime) -> datetime | None:
    """When a dispatched job's result is overdue: its own time after dispatch, or, in runs
    started before jobs had their own time, the run's one deadline."""
    if started.job_timeout_seconds:
        job = timedelta(seconds=started.job_timeout_seconds)
        return dispatched_at + ACCEPT_TIMEOUT + job + RESULT_GRACE
    return started.deadline


def _dispatch(
    state: ExecutionState, now: datetime, presence: Presence, per_event: int
) -> list[Event]:
    delivery = state.delivery
    targets, devices = state.targets, state.devices
    # One pass over the targets (a run may have tens of thousands, and decides every step).
    failed = running = 0
    first_open: int | None = None  # the first target without a final status
    pending: list[int] = []  # indexes, in target order
    waiting: list[tuple[int, str]] = []
    unstarted: list[str] = []  # pending, or waiting for a first job
    for index, device in enumerate(targets):
        current = devices[device]
        status = current.status
        if status in FINAL:
            failed += status in FAILED
            continue
        if first_open is None:
            first_open = index
        if status == "running":
            running += 1
        elif status == "pending":
            pending.append(index)
            unstarted.append(device)
        elif status == "waiting":
            waiting.append((index, device))
            if current.dispatched_at is None:
                unstarted.append(device)
    budget = error_budget(delivery, len(targets))
    if budget is not None and failed > budget:
        reason = f"not started: more than {budget} devices failed"
        return [_result(state, d, "skipped", now, error=reason) for d in unstarted]
    wave = _current_wave(state, now, first_open)
    events: list[Event] = []
    back = [
        device
        for index, device in waiting
        if device in presence.online
        and (index in wave or devices[device].dispatched_at is not None)
    ]
    room = concurrency(delivery, len(targets)) - running
    start = [*back[: max(room, 0)]]
    room -= len(start)
    newly_waiting: list[str] = []
    for index in pending:
        if index not in wave:
            continue
        device = targets[index]
        if device in presence.online:
            if room > 0:
                start.append(device)
                room -= 1
        elif delivery.offline_wait_seconds > 0:
            newly_waiting.append(device)
        else:
            events.append(_unreachable(state, device, now, presence))
    events += _waiting(state, newly_waiting, now, per_event)
    events += (
        DeviceJobDispatched(
            execution_id=state.execution_id,
            task_id=_task_id(state),
            device_ids=part,
            dispatched_at=now,
        )
        for part in chunked(start, per_event)
    )
    return events


def _current_wave(state: ExecutionState, now: datetime, first_open: int | None) -> range:
    """The indexes of the first wave not finished (the one holding first_open, the first
    target without a final status), once the pause after the last one is over; empty while
    that pause lasts."""
    if first_open is None:
        return range(0)
    offset = 0
    finished_at: datetime | None = None
    for size in wave_sizes(state.delivery, len(state.targets)):
        if first_open < offset + size:
            pause = timedelta(seconds=state.delivery.wave_pause_seconds)
            if finished_at is not None and now < finished_at + pause:
                return range(0)
            return range(offset, offset + size)
        wave = state.targets[offset : offset + size]
        ends = [end for d in wave if (end := state.devices[d].finished_at) is not None]
        finished_at = max(ends, default=finished_at)
        offset += size
    return range(0)


def _settle_cancel(state: ExecutionState, now: datetime) -> list[Event]:
    """Devices not started end canceled; running ones are told to stop by the shell."""
    reason = "canceled before it started"
    return [
        _result(state, d, "canceled", now, error=reason)
        for d in state.targets
        if state.devices[d].status == "pending"
        or (state.devices[d].status == "waiting" and state.devices[d].dispatched_at is None)
    ]


def completion(state: ExecutionState, now: datetime) -> ExecutionCompleted:
    statuses = [state.devices[d].status for d in state.targets]
    succeeded = statuses.count("success")
    failed = len(statuses) - succeeded
    budget = error_budget(state.delivery, len(statuses))
    if state.cancel is not None:
        status, error = (
            "canceled",
            "canceled" + (f": {state.cancel.reason}" if state.cancel.reason else ""),
        )
    elif not statuses:
        status, error = "failed", "no target devices: the task names none and its groups are empty"
    elif "skipped" in statuses:
        failures = sum(1 for s in statuses if s in FAILED)
        status = "failed"
        error = (
            f"stopped after {failures} of {len(statuses)} devices failed (more than "
            f"max_errors {budget}); {statuses.count('skipped')} not started"
        )
    elif failed:
        status, error = "failed", f"{failed} of {len(statuses)} devices did not succeed"
    else:
        status, error = "success", None
    return ExecutionCompleted(
        execution_id=state.execution_id,
        task_id=_task_id(state),
        status=status,
        completed_at=now,
        error_message=error,
        devices_targeted=len(statuses),
        devices_succeeded=succeeded,
        devices_failed=failed,
    )


def abandon(state: ExecutionState, now: datetime) -> list[Event]:
    """The reconciler's end of a run nobody finished: what is out timed out, the rest was
    never started, and the run is failed."""
    if state.completed is not None:
        return []
    events: list[Event] = []
    for device in state.targets:
        status = state.devices[device].status
        if status in ("running", "waiting") and state.devices[device].dispatched_at is not None:
            error = "no result was recorded before the deadline (its executor stopped)"
            events.append(_result(state, device, "timeout", now, error=error))
        elif status not in FINAL:
            error = "never started: its executor stopped before its turn"
            events.append(_result(state, device, "skipped", now, error=error))
    for event in events:
        state = evolve(state, event)
    ended = completion(state, now)
    reason = (
        "finished by the reconciler: no executor completed it before its deadline"
        if state.started is not None
        else "never started: no executor took it within an hour of being due"
    )
    status = "canceled" if state.cancel is not None else "failed"
    return [*events, msgspec.structs.replace(ended, status=status, error_message=reason)]


def _result(
    state: ExecutionState, device: str, status: str, now: datetime, **fields: object
) -> DeviceResultRecorded:
    return DeviceResultRecorded(
        execution_id=state.execution_id,
        task_id=_task_id(state),
        device_id=device,
        status=status,
        recorded_at=now,
        **fields,  # type: ignore[arg-type]
    )


def _unreachable(
    state: ExecutionState, device: str, now: datetime, presence: Presence
) -> DeviceResultRecorded:
    seen = presence.last_seen.get(device)
    reason = offline_reason(seen, now) if seen else NEVER_CONNECTED
    return _result(state, device, "unreachable", now, error=reason or NEVER_CONNECTED)


def offline_reason(last_seen: datetime, now: datetime) -> str:
    """ "the device is offline: offline for 3 min (last heartbeat 2026-11-30 22:23:55 UTC)"."""
    stamp = last_seen.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    span = time_span((now - last_seen).total_seconds())
    return f"the device is offline: offline for {span} (last heartbeat {stamp})"


def time_span(seconds: float) -> str:
    """A span in the largest fitting unit, rounded down: "40 s", "3 min", "2 h 5 min", "4 days"."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    if whole < 86400:
        hours, minutes = divmod(whole // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days = whole // 86400
    return f"{days} day{'s' if days != 1 else ''}"


def _waiting(
    state: ExecutionState, devices: Sequence[str], now: datetime, per_event: int
) -> list[Event]:
    return [
        DevicesWaiting(
            execution_id=state.execution_id,
            task_id=_task_id(state),
            device_ids=part,
            since=now,
        )
        for part in chunked(devices, per_event)
    ]


def _task_id(state: ExecutionState) -> str:
    return state.task_id
