"""The command kind: a shell command, run with its output captured."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.domain.kinds.base import TaskKind
from services.domain.payload_rules import check_env, check_path, no_nul


class CommandPayload(msgspec.Struct, forbid_unknown_fields=True):
    command: Annotated[str, Meta(min_length=1, max_length=65536)]
    shell: Literal["bash", "sh", "zsh", "powershell", "pwsh", "cmd", "python3"] = "bash"
    timeout_seconds: Annotated[int, Meta(ge=1, le=86400)] = 300
    env: dict[str, str] = {}
    working_dir: Annotated[str, Meta(max_length=4096)] | None = None


def check(prefix: str, payload: CommandPayload) -> None:
    no_nul(f"{prefix}.command", payload.command)
    check_env(f"{prefix}.env", payload.env)
    if payload.working_dir is not None:
        check_path(f"{prefix}.working_dir", payload.working_dir, destination=False)


KIND = TaskKind(
    name="command",
    payload_key="command_payload",
    payload_type=CommandPayload,
    check=check,
    agent_module="services.agent.command",
)
