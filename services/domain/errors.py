"""Domain errors that every entry point maps to one HTTP status and one error code."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class: a request the domain refuses, with a code and a message a user can act on."""

    code = "domain_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationFailed(DomainError):
    """Input that cannot be accepted; `field` is the dotted path of the offending field."""

    code = "validation_failed"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", {"field": field, "reason": reason})
        self.field = field
        self.reason = reason


class Conflict(DomainError):
    """The command does not fit the aggregate's current state (e.g. pausing a paused task)."""

    code = "conflict"


class NotFound(DomainError):
    """The aggregate does not exist, was deleted, or is not visible to the caller."""

    code = "not_found"


class TooLarge(DomainError):
    """Input whose size the system refuses to store or carry (an event over the log's bound)."""

    code = "too_large"
