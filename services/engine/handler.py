"""The one generic command handler: load the stream, fold, decide, append; retry on a race."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import msgspec

from events.base import Event
from events.codec import RecordedEvent
from events.task import TaskCreated
from services.domain import group, task
from services.infra.db import Db
from services.infra.group_commit import GroupCommit
from services.infra.store import ConcurrencyError, append, read_stream

State = TypeVar("State")
Command = TypeVar("Command")

# A command that lost a race re-reads the stream and decides again this many times.
ATTEMPTS = 5


class Aggregate(msgspec.Struct, Generic[State, Command], frozen=True):
    """How one kind of aggregate folds its events and decides on commands."""

    initial: Callable[[str], State]
    evolve: Callable[[State, Event], State]
    decide: Callable[[State, Command], list[Event]]
    category: Callable[[State, Sequence[Event]], str]


class Outcome(msgspec.Struct, Generic[State], frozen=True):
    state: State
    recorded: list[RecordedEvent]


async def handle(
    db: Db,
    aggregate: Aggregate[State, Command],
    stream_id: str,
    command: Command,
    *,
    metadata: dict[str, Any],
    event_ids: Sequence[str] | None = None,
    new_stream: bool = False,
    group: GroupCommit | None = None,
) -> Outcome[State]:
    """Runs command against the stream. new_stream skips the read for a freshly minted id;
    group commits the append together with other requests' (the API's writes)."""
    for attempt in range(ATTEMPTS):
        state = aggregate.initial(stream_id)
        version = 0
        if not new_stream:
            for recorded in await read_stream(db, stream_id):
                state = aggregate.evolve(state, recorded.event)
                version = recorded.version
        events = aggregate.decide(state, command)
        category = aggregate.category(state, events)
        try:
            if group is None:
                appended = await append(
                    db,
                    stream_id,
                    category,
                    events,
                    expected_version=version,
                    metadata=metadata,
                    event_ids=event_ids,
                )
            else:
                appended = await group.append(
                    stream_id,
                    category,
                    events,
                    expected_version=version,
                    metadata=metadata,
                    event_ids=event_ids,
                )
        except ConcurrencyError:
            # A freshly minted id taken meanwhile means this very request is running twice (an
            # Idempotency-Key repeat): deciding again could only say "already exists", so the
            # race goes to the caller, which waits for the first run's answer.
            if new_stream or attempt == ATTEMPTS - 1:
                raise
            continue
        for event in events:
            state = aggregate.evolve(state, event)
        return Outcome(state=state, recorded=appended)
    raise AssertionError("unreachable")


def _task_category(state: task.TaskState, events: Sequence[Event]) -> str:
    if state.spec is not None:
        return state.spec.task_type
    created = events[0]
    assert isinstance(created, TaskCreated)
    return created.task_type


TASKS: Aggregate[task.TaskState, task.TaskCommand] = Aggregate(
    initial=lambda stream_id: task.TaskState(task_id=stream_id),
    evolve=task.evolve,
    decide=task.decide,
    category=_task_category,
)

GROUPS: Aggregate[group.GroupState, group.GroupCommand] = Aggregate(
    initial=lambda stream_id: group.GroupState(group_id=int(stream_id.removeprefix("group-"))),
    evolve=group.evolve,
    decide=group.decide,
    category=lambda _state, _events: "devices",
)
