"""The script kind: an uploaded script run with arguments and environment, output captured."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.domain.kinds.base import TaskKind
from services.domain.payload_rules import check_env, check_file_id, check_path, no_nul

MAX_ARGS = 256
MAX_ARG_LENGTH = 4096  # characters of one argument
Argument = Annotated[str, Meta(max_length=MAX_ARG_LENGTH)]


class ScriptPayload(msgspec.Struct, forbid_unknown_fields=True):
    file_id: Annotated[str, Meta(min_length=1, max_length=200)]
    args: Annotated[list[Argument], Meta(max_length=MAX_ARGS)] = []
    env: dict[str, str] = {}
    # None: the script is run itself, so its #! line says what runs it.
    interpreter: Literal["bash", "sh", "zsh", "python3"] | None = None
    timeout_seconds: Annotated[int, Meta(ge=1, le=86400)] = 300
    working_dir: Annotated[str, Meta(max_length=4096)] | None = None


def check(prefix: str, payload: ScriptPayload) -> None:
    check_file_id(f"{prefix}.file_id", payload.file_id)
    for number, argument in enumerate(payload.args):
        no_nul(f"{prefix}.args.{number}", argument)
    check_env(f"{prefix}.env", payload.env)
    if payload.working_dir is not None:
        check_path(f"{prefix}.working_dir", payload.working_dir, destination=False)


KIND = TaskKind(
    name="script",
    payload_key="script_payload",
    payload_type=ScriptPayload,
    check=check,
    agent_module="services.agent.script",
    file_field="file_id",
)
