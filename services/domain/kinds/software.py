"""The software deployment kind: install, upgrade or remove a package with a package manager."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.domain.kinds.base import TaskKind
from services.domain.payload_rules import matches

# What apt, dnf and pip take in a package name or version (epochs, revisions, tildes): a
# letter or digit first, so that no name is read as an option; nothing a shell would act on.
PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_:~-]*")
PACKAGE_REASON = "must be a letter or digit followed by letters, digits and . + - _ : ~"
MANAGER = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class SoftwarePayload(msgspec.Struct, forbid_unknown_fields=True):
    package: Annotated[str, Meta(min_length=1, max_length=256)]
    version: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    action: Literal["install", "upgrade", "uninstall"] = "install"
    manager: Annotated[str, Meta(max_length=32)] | None = None
    timeout_seconds: Annotated[int, Meta(ge=1, le=86400)] = 1800


def check(prefix: str, payload: SoftwarePayload) -> None:
    matches(f"{prefix}.package", payload.package, PACKAGE, PACKAGE_REASON)
    if payload.version is not None:
        matches(f"{prefix}.version", payload.version, PACKAGE, PACKAGE_REASON)
    if payload.manager is not None:
        reason = "must be a package manager's name: lowercase letters, digits, - and _"
        matches(f"{prefix}.manager", payload.manager, MANAGER, reason)


KIND = TaskKind(
    name="software_deployment",
    payload_key="software_payload",
    payload_type=SoftwarePayload,
    check=check,
    agent_module="services.agent.software",
)
