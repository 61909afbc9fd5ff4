"""What a run does, whatever started it: a task as it stood when it fired, or an ad-hoc request."""

from __future__ import annotations

from typing import Any

import msgspec

from events.execution import Delivery
from events.task import TaskDue
from services.domain.kinds import stored_payload
from services.domain.task import TaskState, evolve
from services.infra.db import Db
from services.infra.store import read_stream


class RunSpec(msgspec.Struct, frozen=True, kw_only=True):
    task_id: str | None  # None for an ad-hoc run
    name: str
    task_type: str
    task_payload: dict[str, Any]
    device_ids: list[str]
    group_ids: list[int]
    delivery: Delivery = Delivery()

    @property
    def timeout_seconds(self) -> int:
        return stored_payload(self.task_type, self.task_payload).timeout_seconds


async def task_as_fired(db: Db, task_id: str, due_version: int) -> TaskState:
    """The task as it stood when the TaskDue at due_version was appended."""
    state = TaskState(task_id=task_id)
    for recorded in await read_stream(db, task_id):
        if recorded.version > due_version:
            break
        state = evolve(state, recorded.event)
    return state


async def spec_of_due(db: Db, due: TaskDue, due_version: int) -> RunSpec:
    """The task as it stood when this TaskDue was appended (a later edit does not change a run
    already due)."""
    task = await task_as_fired(db, due.task_id, due_version)
    spec = task.spec
    if spec is None:
        raise LookupError(f"task {due.task_id} has no TaskCreated before version {due_version}")
    return RunSpec(
        task_id=spec.task_id,
        name=spec.name,
        task_type=spec.task_type,
        task_payload=spec.task_payload,
        device_ids=spec.device_ids,
        group_ids=spec.group_ids,
    )
