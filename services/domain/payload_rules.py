"""What a task payload may hold beyond its types, in checks the kinds share: paths, names,
environments and upload ids a device can take safely, each refused with the field named."""

from __future__ import annotations

import re

from services.domain.errors import ValidationFailed

PATH_MAX_BYTES = 4096  # PATH_MAX on Linux
MAX_ENV_VARIABLES = 256
MAX_ENV_VALUE = 32 * 1024
NUL = "\x00"
FILE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
FILE_ID_REASON = "must be the file_id of an upload: letters, digits, . - _ (no slashes)"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")


def check_env(field: str, env: dict[str, str]) -> None:
    """Variables a process can be given: names of letters, digits and _, bounded values."""
    if len(env) > MAX_ENV_VARIABLES:
        raise ValidationFailed(field, f"may hold at most {MAX_ENV_VARIABLES} variables")
    for name, value in env.items():
        if not ENV_NAME.fullmatch(name):
            reason = f"{name[:40]!r} is not a variable name: a letter or _, then letters, digits, _"
            raise ValidationFailed(field, reason)
        if NUL in value or len(value) > MAX_ENV_VALUE:
            reason = f"the value of {name} must be at most {MAX_ENV_VALUE} characters, no NUL"
            raise ValidationFailed(f"{field}.{name}", reason)


def check_file_id(field: str, file_id: str) -> None:
    matches(field, file_id, FILE_ID, FILE_ID_REASON)


def check_path(field: str, path: str, *, destination: bool) -> None:
    """A path a device can take; a destination also says exactly where, with no climbing."""
    no_nul(field, path)
    if len(path.encode()) > PATH_MAX_BYTES:
        raise ValidationFailed(field, f"must be at most {PATH_MAX_BYTES} bytes (UTF-8)")
    if destination and not path.startswith("/"):
        raise ValidationFailed(field, "must be an absolute path, starting with /")
    if destination and ".." in path.split("/"):
        raise ValidationFailed(field, "must not have a .. component")


def matches(field: str, value: str, pattern: re.Pattern[str], reason: str) -> None:
    no_nul(field, value)
    if not pattern.fullmatch(value):
        raise ValidationFailed(field, reason)


def no_nul(field: str, value: str) -> None:
    if NUL in value:
        raise ValidationFailed(field, "must not contain the NUL character (\\u0000)")
