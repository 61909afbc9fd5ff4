"""The task kinds in the OpenAPI document: each kind's payload schema, and task_payload on
create and update as one key of them, the kind's (from the registry, like the task_type enum)."""

from __future__ import annotations

from typing import Any

from services.domain.kinds import KINDS

PAYLOAD_TYPES: list[Any] = [kind.payload_type for kind in KINDS.values()]


def describe_task_payloads(components: dict[str, Any], schema_of: dict[Any, Any]) -> None:
    """Replaces TaskInput's and TaskPatch's free-form task_payload with the kinds' shapes."""
    shapes = [
        {
            "title": f"{kind.name} task",
            "type": "object",
            "properties": {kind.payload_key: schema_of[kind.payload_type]},
            "required": [kind.payload_key],
            "additionalProperties": False,
        }
        for kind in KINDS.values()
    ]
    described = {
        "description": "One key, the task_type's: "
        + ", ".join(f"{kind.payload_key} ({kind.name})" for kind in KINDS.values()),
        "oneOf": shapes,
    }
    for body in ("TaskInput", "TaskPatch"):
        components[body]["properties"]["task_payload"] = described
