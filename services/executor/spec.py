"""What a run does, whatever started it: a task as it stood when it fired, or a request (an
ad-hoc run, a rerun) that carries it all."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from events.execution import Delivery, ExecutionRequested
from events.task import TaskCreated, TaskDue
from services.domain.kinds import stored_payload
from services.engine.run_sources import task_as_fired
from services.infra.db import Db


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
    """What the run does: its request's, or its task's as it stood when the TaskDue fired."""
    source: ExecutionRequested | TaskCreated | None = order.request
    if source is None:
        assert order.task_id is not None
        source = await task_as_fired(db, order.task_id, order.due_version)
    return RunSpec(
        task_id=source.task_id,
        name=source.name,
        task_type=source.task_type,
        task_payload=source.task_payload,
        device_ids=source.device_ids,
        group_ids=source.group_ids,
        delivery=source.delivery,
    )
