"""What a task payload may hold beyond its types: the paths, names and sizes a device can
take safely, each refused with the field named."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from services.domain.errors import ValidationFailed

PATH_MAX_BYTES = 4096  # PATH_MAX on Linux
MAX_ENV_VARIABLES = 256
MAX_ENV_VALUE = 32 * 1024
NUL = "\x00"
# What apt, dnf and pip take in a package name or version (epochs, revisions, tildes): a
# letter or digit first, so that no name is read as an option; nothing a shell would act on.
PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_:~-]*")
PACKAGE_REASON = "must be a letter or digit followed by letters, digits and . + - _ : ~"
MANAGER = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
FILE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")
# A user and group as names or numeric ids; either may be left out ("user", ":group").
OWNER = re.compile(r"(?=.)([A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?")


def check_payload(key: str, payload: dict[str, Any]) -> None:
    """Raises ValidationFailed naming the first field of payload (task_payload.<key>) that a
    device should not be given."""
    _CHECKS[key](f"task_payload.{key}", payload)


def _command(prefix: str, payload: dict[str, Any]) -> None:
    _no_nul(f"{prefix}.command", payload["command"])
    env: dict[str, str] = payload["env"]
    if len(env) > MAX_ENV_VARIABLES:
        raise ValidationFailed(f"{prefix}.env", f"may hold at most {MAX_ENV_VARIABLES} variables")
    for name, value in env.items():
        if not ENV_NAME.fullmatch(name):
            reason = f"{name[:40]!r} is not a variable name: a letter or _, then letters, digits, _"
            raise ValidationFailed(f"{prefix}.env", reason)
        if NUL in value or len(value) > MAX_ENV_VALUE:
            reason = f"the value of {name} must be at most {MAX_ENV_VALUE} characters, no NUL"
            raise ValidationFailed(f"{prefix}.env.{name}", reason)
    if payload["working_dir"] is not None:
        _path(f"{prefix}.working_dir", payload["working_dir"], destination=False)


def _software(prefix: str, payload: dict[str, Any]) -> None:
    _matches(f"{prefix}.package", payload["package"], PACKAGE, PACKAGE_REASON)
    if payload["version"] is not None:
        _matches(f"{prefix}.version", payload["version"], PACKAGE, PACKAGE_REASON)
    if payload["manager"] is not None:
        reason = "must be a package manager's name: lowercase letters, digits, - and _"
        _matches(f"{prefix}.manager", payload["manager"], MANAGER, reason)


def _file(prefix: str, payload: dict[str, Any]) -> None:
    reason = "must be the file_id of an upload: letters, digits, . - _ (no slashes)"
    _matches(f"{prefix}.file_id", payload["file_id"], FILE_ID, reason)
    _path(f"{prefix}.destination", payload["destination"], destination=True)
    if payload["owner"] is not None:
        reason = 'must be "user", "user:group" or ":group", as names or numeric ids'
        _matches(f"{prefix}.owner", payload["owner"], OWNER, reason)


def _path(field: str, path: str, *, destination: bool) -> None:
    """A path a device can take; a destination also says exactly where, with no climbing."""
    _no_nul(field, path)
    if len(path.encode()) > PATH_MAX_BYTES:
        raise ValidationFailed(field, f"must be at most {PATH_MAX_BYTES} bytes (UTF-8)")
    if destination and not path.startswith("/"):
        raise ValidationFailed(field, "must be an absolute path, starting with /")
    if destination and ".." in path.split("/"):
        raise ValidationFailed(field, "must not have a .. component")


def _matches(field: str, value: str, pattern: re.Pattern[str], reason: str) -> None:
    _no_nul(field, value)
    if not pattern.fullmatch(value):
        raise ValidationFailed(field, reason)


def _no_nul(field: str, value: str) -> None:
    if NUL in value:
        raise ValidationFailed(field, "must not contain the NUL character (\\u0000)")


_CHECKS: dict[str, Callable[[str, dict[str, Any]], None]] = {
    "command_payload": _command,
    "software_payload": _software,
    "file_payload": _file,
}
