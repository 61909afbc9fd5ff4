"""What the ticker does with a due task: fire it, or record the run as missed or skipped."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec

from events.base import Event
from events.task import RunMissed, RunSkipped, TaskDue, TaskPaused
from services.domain.limits import END_AT, failure_reason, limited
from services.domain.recurrence import Schedule, parse_schedule

_IDS = uuid.UUID("0b5d0c38-9d5f-4a8e-8f7e-3c1f2a4b6d90")
_IDS_BYTES = _IDS.bytes
# Older missed occurrences beyond this many are recorded as one RunMissed with missed_count.
MISSED_ONE_BY_ONE = 100
_MISSED_SCAN_LIMIT = 10_000


class DueTask(msgspec.Struct, frozen=True, kw_only=True):
    """A task whose next occurrence has come, as the tasks read table has it at `version`."""

    task_id: str
    version: int
    task_type: str
    recurrence_type: str
    recurrence_config: dict[str, Any]
    next_run_time: datetime
    misfire_grace_seconds: int = 3600
    overlap_policy: str = "skip"
    jitter_seconds: int = 0
    running_executions: int = 0
    end_at: datetime | None = None
    max_runs: int | None = None
    scheduled_runs: int = 0


class FailedRun(msgspec.Struct, frozen=True, kw_only=True):
    """A task with pause_on_failure whose scheduled run failed while it was scheduled and not
    paused, as the tasks read table has it at `version`: it owes a TaskPaused."""

    task_id: str
    version: int
    task_type: str
    execution_id: str
    error_message: str | None = None


def name_id(name: str) -> str:
    """str(uuid.uuid5(_IDS, name)), a few times faster (a burst derives tens of thousands)."""
    digest = bytearray(hashlib.sha1(_IDS_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def event_id(task: DueTask | FailedRun) -> str:
    """Whatever the ticker decides for a task at one version gets one id: racing tickers
    produce the same event, and the version check lets exactly one of them append it."""
    return name_id(f"{task.task_id}/{task.version}")


def execution_id(due_event_id: str) -> str:
    return name_id(f"execution/{due_event_id}")


def schedule_of(task: DueTask) -> Schedule:
    # An interval counts on from its current occurrence, whatever created or last reset it.
    anchor = task.next_run_time
    if task.recurrence_type == "interval" and "start_at" not in task.recurrence_config:
        anchor -= timedelta(seconds=int(task.recurrence_config["every_seconds"]))
    return parse_schedule(task.recurrence_type, task.recurrence_config, anchor=anchor)


def following_of(task: DueTask, schedule: Schedule, after: datetime) -> datetime | None:
    """The task's next occurrence after `after`, none past its end_at."""
    following = schedule.next_after(after)
    if following is None or task.end_at is None or following <= task.end_at:
        return following
    return None


def fire_at(task: DueTask, following: datetime | None) -> datetime:
    """The occurrence plus the task's deterministic jitter, never at or past the next one."""
    if task.jitter_seconds <= 0:
        return task.next_run_time
    digest = int.from_bytes(hashlib.sha256(task.task_id.encode()).digest()[:8], "big")
    offset = timedelta(seconds=digest % (task.jitter_seconds + 1))
    if following is not None:
        half = (following - task.next_run_time) / 2
        if offset >= half:
            # Wrap into [0, half) rather than clamp to half: strictly before half-way, and
            # tasks with a jitter wider than their period stay spread instead of piling up.
            offset = timedelta(microseconds=digest % max(1, half // timedelta(microseconds=1)))
    return task.next_run_time + offset


def decide_fire(task: DueTask, now: datetime, due_id: str | None = None) -> Event | None:
    """One event for a task whose occurrence is due at `now`; None while jitter holds it back.

    due_id: event_id(task), if the caller has it already (a burst derives tens of thousands).
    """
    schedule = schedule_of(task)
    scheduled = task.next_run_time
    following = following_of(task, schedule, scheduled)
    # Past end_at there is no occurrence: if that leaves none, the task is completed.
    ended = END_AT if following is None and schedule.next_after(scheduled) is not None else None
    if following is not None and following <= now:
        return _missed_older(task, schedule, following, now)
    planned = fire_at(task, following)
    if planned > now:
        return None
    lateness = (now - planned).total_seconds()
    if lateness > task.misfire_grace_seconds:
        once = task.recurrence_type == "once"
        return RunMissed(
            task_id=task.task_id,
            scheduled_for=scheduled,
            reason=f"due {lateness:.0f} s ago, beyond misfire_grace_seconds "
            f"({task.misfire_grace_seconds} s)",
            recorded_at=now,
            next_run_time=following,
            task_failed=once,
            completed_by=ended,
        )
    if task.running_executions > 0 and task.overlap_policy == "skip":
        return RunSkipped(
            task_id=task.task_id,
            scheduled_for=scheduled,
            reason="the previous run is still running (overlap_policy skip)",
            recorded_at=now,
            next_run_time=following,
            completed_by=ended,
        )
    # This run counts toward max_runs: the last one allowed leaves no next occurrence.
    following, ended_by = limited(
        following,
        end_at=None,
        max_runs=task.max_runs,
        scheduled_runs=task.scheduled_runs + 1,
    )
    if due_id is None:
        due_id = event_id(task)
    return TaskDue(
        task_id=task.task_id,
        execution_id=execution_id(due_id),
        scheduled_for=scheduled,
        trigger="schedule",
        due_at=now,
        next_run_time=following,
        lateness_seconds=round(lateness, 6),
        completed_by=ended_by or ended,
    )


def decide_pause(task: FailedRun, now: datetime) -> tuple[TaskPaused, str]:
    """pause_on_failure: the TaskPaused a failed scheduled run owes its task, and the reason
    for the event's metadata."""
    paused = TaskPaused(task_id=task.task_id, paused_at=now)
    return paused, failure_reason(task.execution_id, task.error_message)


def _missed_older(
    task: DueTask, schedule: Schedule, following: datetime, now: datetime
) -> RunMissed:
    """A later occurrence is due too: this one is missed (only the latest may still fire)."""
    count, latest = 1, following
    upcoming = following_of(task, schedule, following)
    while upcoming is not None and upcoming <= now and count < _MISSED_SCAN_LIMIT:
        count, latest, upcoming = count + 1, upcoming, following_of(task, schedule, upcoming)
    reason = "a later occurrence was due before this one could run (scheduler not running)"
    if count <= MISSED_ONE_BY_ONE:
        return RunMissed(
            task_id=task.task_id,
            scheduled_for=task.next_run_time,
            reason=reason,
            recorded_at=now,
            next_run_time=following,
        )
    return RunMissed(
        task_id=task.task_id,
        scheduled_for=task.next_run_time,
        reason=reason,
        recorded_at=now,
        next_run_time=latest,
        missed_count=count,
    )
