"""The file deployment kind: an uploaded file written to a path, with its mode and owner."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
from msgspec import Meta

from services.domain.field_reasons import FILE_MODE_PATTERN
from services.domain.kinds.base import TaskKind
from services.domain.payload_rules import check_file_id, check_path, matches

# A user and group as names or numeric ids; either may be left out ("user", ":group").
OWNER = re.compile(r"(?=.)([A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?")


class FilePayload(msgspec.Struct, forbid_unknown_fields=True):
    file_id: Annotated[str, Meta(min_length=1, max_length=200)]
    destination: Annotated[str, Meta(min_length=1, max_length=4096)]
    mode: Annotated[str, Meta(pattern=FILE_MODE_PATTERN)] = "0644"
    owner: Annotated[str, Meta(max_length=65)] | None = None
    timeout_seconds: Annotated[int, Meta(ge=1, le=86400)] = 600


def check(prefix: str, payload: FilePayload) -> None:
    check_file_id(f"{prefix}.file_id", payload.file_id)
    check_path(f"{prefix}.destination", payload.destination, destination=True)
    if payload.owner is not None:
        reason = 'must be "user", "user:group" or ":group", as names or numeric ids'
        matches(f"{prefix}.owner", payload.owner, OWNER, reason)


KIND = TaskKind(
    name="file_deployment",
    payload_key="file_payload",
    payload_type=FilePayload,
    check=check,
    agent_module="services.agent.file",
    file_field="file_id",
)
