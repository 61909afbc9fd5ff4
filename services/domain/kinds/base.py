"""What a task kind is: its name, its payload's shape and checks, and who runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import msgspec


class Payload(Protocol):
    """What every kind's payload holds: how long a device may take over it."""

    @property
    def timeout_seconds(self) -> int: ...


P = TypeVar("P", bound=Payload)


@dataclass(frozen=True, kw_only=True)
class TaskKind(Generic[P]):
    """One kind of task. Its name is the task_type, the events' category and the executor's
    --type; everything that lists, validates, routes or runs kinds reads it from here."""

    name: str
    # The one key of task_payload, e.g. "command_payload", and what it holds: a msgspec
    # Struct whose annotations are the constraints and whose defaults are the defaults.
    payload_key: str
    payload_type: type[P]
    # What a device can take safely beyond the types: raises ValidationFailed naming the
    # field under the prefix it is given ("task_payload.<payload_key>").
    check: Callable[[str, P], None]
    # The agent's module that runs it: `async def run(payload, context) -> JobOutcome`.
    agent_module: str
    # The payload field naming an upload (POST /api/files) the device may fetch, if any.
    file_field: str | None = None

    def parse(self, raw: Any) -> P:
        """The payload as its Struct (msgspec.ValidationError if it is not one)."""
        return msgspec.convert(raw, self.payload_type)
