"""Events of one execution (one run of a task): one stream per execution, stream id = its id."""

from __future__ import annotations

from datetime import datetime

from events.base import Event


class ExecutionStarted(Event, frozen=True, kw_only=True, tag="ExecutionStarted"):
    execution_id: str
    task_id: str
    trigger: str
    scheduled_for: datetime
    started_at: datetime
    device_ids: list[str]
    deadline: datetime | None = None


class DeviceResultRecorded(Event, frozen=True, kw_only=True, tag="DeviceResultRecorded"):
    execution_id: str
    task_id: str
    device_id: str
    status: str  # "success" | "failed" | "timeout" | "unreachable"
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    recorded_at: datetime


class ExecutionCompleted(Event, frozen=True, kw_only=True, tag="ExecutionCompleted"):
    execution_id: str
    task_id: str
    status: str  # "success" | "failed"
    completed_at: datetime
    error_message: str | None = None
    devices_targeted: int = 0
    devices_succeeded: int = 0
    devices_failed: int = 0


EXECUTION_EVENTS = (ExecutionStarted, DeviceResultRecorded, ExecutionCompleted)
