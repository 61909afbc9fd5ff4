"""What each edit of a task changed: old and new value per field, folded from its events
(a TaskUpdated carries only the new values)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from msgspec import UNSET

from events.base import Event
from events.codec import Envelope
from events.task import TaskCreated, TaskUpdated
from services.domain.task_spec import WRITABLE_FIELDS


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """One field of one edit, as the Task shows it (null when it had no value)."""

    field: str
    old: Any
    new: Any


class HistoryEntry(Envelope, frozen=True, kw_only=True, omit_defaults=True):
    """An event of GET /api/schedule/tasks/{id}/events: the envelope, and for an edit
    (TaskUpdated) `changes`, each changed field's old and new value."""

    changes: list[Change] | None = None


def task_changes(events: Sequence[Event]) -> list[list[Change] | None]:
    """For each event of a task's history in log order: the fields its edit changed (only
    those whose value differs), or None for an event that is not an edit."""
    state: dict[str, Any] = {}
    out: list[list[Change] | None] = []
    for event in events:
        if isinstance(event, TaskCreated):
            state = {name: msgspec.to_builtins(getattr(event, name)) for name in WRITABLE_FIELDS}
            out.append(None)
        elif isinstance(event, TaskUpdated):
            changes: list[Change] = []
            for name in WRITABLE_FIELDS:
                if (value := getattr(event, name)) is UNSET:
                    continue
                new = msgspec.to_builtins(value)
                if state.get(name) != new:
                    changes.append(Change(field=name, old=state.get(name), new=new))
                state[name] = new
            out.append(changes)
        else:
            out.append(None)
    return out
