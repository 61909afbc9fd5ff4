"""What a run ran, read back from the log: the task as it stood when it fired, or the request
that carried it all. The API reads it for a rerun, the file server for what a run may hand out,
the executor for what to start."""

from __future__ import annotations

from events.execution import ExecutionRequested, ExecutionStarted
from events.task import TaskCreated
from services.domain.run_requests import RunSource
from services.engine.task_definitions import TaskDefinitions
from services.infra.db import Db
from services.infra.store import read_stream

# What each task was at each of its edits, as far as this process has read its stream.
_fired = TaskDefinitions()

_DUE_VERSION = (
    "SELECT version FROM events WHERE stream_id = $1 AND type = 'TaskDue' "
    "AND data ->> 'execution_id' = $2"
)


async def task_as_fired(db: Db, task_id: str, due_version: int) -> TaskCreated:
    """The task as it stood when the TaskDue at due_version was appended (a later edit does
    not change a run already due)."""
    return await _fired.at(db, task_id, due_version)


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
    spec = await task_as_fired(db, started.task_id, int(due_version))
    return RunSource(
        task_id=spec.task_id,
        name=spec.name,
        task_type=spec.task_type,
        task_payload=spec.task_payload,
    )
