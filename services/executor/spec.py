"""What a run does, whatever started it: a task as it stood when it fired, or a request (an
ad-hoc run, a rerun) that carries it all."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from events.execution import Delivery, ExecutionRequested, ExecutionStarted
from events.task import TaskDue
from services.domain.kinds import stored_payload
from services.domain.run_requests import RunSource
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


class RunOrder(msgspec.Struct, frozen=True, kw_only=True):
    """The event that starts a run: a TaskDue (at due_version of its task) or a request."""

    execution_id: str
    task_id: str | None
    trigger: str
    scheduled_for: datetime
    due_at: datetime  # when it was due (a TaskDue's, with jitter) or asked for
    due_version: int = 0
    request: ExecutionRequested | None = None

    @classmethod
    def of_due(cls, due: TaskDue, version: int) -> RunOrder:
        return cls(
            execution_id=due.execution_id,
            task_id=due.task_id,
            trigger=due.trigger,
            scheduled_for=due.scheduled_for,
            due_at=due.due_at,
            due_version=version,
        )

    @classmethod
    def of_request(cls, request: ExecutionRequested) -> RunOrder:
        return cls(
            execution_id=request.execution_id,
            task_id=request.task_id,
            trigger=request.trigger,
            scheduled_for=request.requested_at,
            due_at=request.requested_at,
            request=request,
        )


def order_of(event: object, version: int) -> RunOrder:
    """The run a TaskDue (at that version of its task) or an ExecutionRequested starts."""
    if isinstance(event, TaskDue):
        return RunOrder.of_due(event, version)
    if isinstance(event, ExecutionRequested):
        return RunOrder.of_request(event)
    raise TypeError(f"expected a TaskDue or an ExecutionRequested, got {type(event).__name__}")


async def spec_of(db: Db, order: RunOrder) -> RunSpec:
    if order.request is not None:
        request = order.request
        return RunSpec(
            task_id=request.task_id,
            name=request.name,
            task_type=request.task_type,
            task_payload=request.task_payload,
            device_ids=request.device_ids,
            group_ids=request.group_ids,
            delivery=request.delivery,
        )
    assert order.task_id is not None
    return await _spec_of_task(db, order.task_id, order.due_version)


async def source_of(db: Db, execution_id: str) -> RunSource | None:
    """What an earlier run ran, for a rerun; None if the log knows no such run."""
    history = await read_stream(db, execution_id)
    first = history[0].event if history else None
    if isinstance(first, ExecutionRequested):
        return RunSource(
            task_id=first.task_id,
            name=first.name,
            task_type=first.task_type,
            task_payload=first.task_payload,
        )
    started = next((r.event for r in history if isinstance(r.event, ExecutionStarted)), None)
    if started is None:
        return None
    due_version = await db.fetchval(_DUE_VERSION, started.task_id, execution_id)
    if due_version is None:
        return None
    spec = await _spec_of_task(db, started.task_id, int(due_version))
    return RunSource(
        task_id=spec.task_id,
        name=spec.name,
        task_type=spec.task_type,
        task_payload=spec.task_payload,
    )


_DUE_VERSION = (
    "SELECT version FROM events WHERE stream_id = $1 AND type = 'TaskDue' "
    "AND data ->> 'execution_id' = $2"
)


async def task_as_fired(db: Db, task_id: str, due_version: int) -> TaskState:
    """The task as it stood when the TaskDue at due_version was appended."""
    state = TaskState(task_id=task_id)
    for recorded in await read_stream(db, task_id):
        if recorded.version > due_version:
            break
        state = evolve(state, recorded.event)
    return state


async def _spec_of_task(db: Db, task_id: str, due_version: int) -> RunSpec:
    """The task as it stood when its TaskDue was appended (a later edit does not change a run
    already due)."""
    task = await task_as_fired(db, task_id, due_version)
    spec = task.spec
    if spec is None:
        raise LookupError(f"task {task_id} has no TaskCreated before version {due_version}")
    return RunSpec(
        task_id=spec.task_id,
        name=spec.name,
        task_type=spec.task_type,
        task_payload=spec.task_payload,
        device_ids=spec.device_ids,
        group_ids=spec.group_ids,
        delivery=spec.delivery,
    )
