"""The registry of task kinds: the API's enum, validation, the executors, the file server's
grants and the agent's dispatch all read the kinds from KINDS, and nowhere else.

A new kind is a module beside these (its payload Struct, checks and TaskKind) and one line
below; docs/architecture.md lists what else it brings (an agent module, a console module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from services.domain.errors import ValidationFailed
from services.domain.kinds import command, file, script, software
from services.domain.kinds.base import Payload, TaskKind

KINDS: dict[str, TaskKind[Any]] = {
    kind.name: kind for kind in (command.KIND, software.KIND, file.KIND, script.KIND)
}
TASK_TYPES: tuple[str, ...] = tuple(KINDS)

if TYPE_CHECKING:
    TaskType = str
else:  # the enum msgspec validates task_type against and OpenAPI shows
    TaskType = Literal[TASK_TYPES]


def kind_of(task_type: str) -> TaskKind[Any]:
    """The kind named task_type; ValidationFailed naming task_type if there is none."""
    kind = KINDS.get(task_type)
    if kind is None:
        raise ValidationFailed("task_type", f"must be one of {', '.join(TASK_TYPES)}")
    return kind


def stored_payload(task_type: str, task_payload: dict[str, Any]) -> Payload:
    """A task's stored (validated, canonical) task_payload as its kind's Struct."""
    kind = kind_of(task_type)
    parsed: Payload = kind.parse(task_payload[kind.payload_key])
    return parsed


def file_id_of(task_type: str, task_payload: dict[str, Any]) -> str | None:
    """The upload a task of this kind hands its devices, if its kind takes one."""
    kind = KINDS.get(task_type)
    if kind is None or kind.file_field is None:
        return None
    value = (task_payload.get(kind.payload_key) or {}).get(kind.file_field)
    return None if value is None else str(value)
