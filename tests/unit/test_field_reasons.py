"""The API's field errors in a user's words: msgspec's and croniter's texts never reach a user."""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest

from services.domain.errors import ValidationFailed
from services.domain.field_reasons import PATTERN_REASONS, human_reason
from services.domain.group import GroupInput, GroupPatch
from services.domain.kinds import KINDS
from services.domain.recurrence import parse_schedule
from services.domain.run_requests import RerunInput, RunInput
from services.domain.task_spec import TaskInput, TaskPatch, canonical_payload, from_msgspec_error
from services.domain.webhooks import WebhookInput

TASK = {"name": "n", "task_type": "command", "recurrence_type": "daily"}
# What msgspec, croniter or a regex would have said: none of it may reach a user.
INTERNALS = ("expected `", "Expected", "regex", "^", "$", "not acceptable", "[", "enum")


def refused(body: dict[str, Any], shape: type[Any] = TaskInput) -> ValidationFailed:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert(body, shape)
    return from_msgspec_error(caught.value, shape=shape)


def payload_refusal(task_type: str, payload: dict[str, Any]) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        canonical_payload(task_type, {KINDS[task_type].payload_key: payload})
    return caught.value


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"name": ""}, "name", "must not be empty"),
        ({"name": "n" * 201}, "name", "must hold at most 200 characters"),
        ({"jitter_seconds": -1}, "jitter_seconds", "must be at least 0 seconds"),
        (
            {"misfire_grace_seconds": 10**9},
            "misfire_grace_seconds",
            "must be at most 31,622,400 seconds (366 days)",
        ),
        ({"max_runs": 0}, "max_runs", "must be at least 1"),
        ({"max_runs": True}, "max_runs", "must be a whole number or null, not true or false"),
        ({"pause_on_failure": "yes"}, "pause_on_failure", "must be true or false, not text"),
        ({"device_ids": "web-1"}, "device_ids", "must be a list, not text"),
        ({"device_ids": [1]}, "device_ids.0", "must be text, not a number"),
        (
            {"device_ids": ["web-1.example.com"]},
            "device_ids.0",
            "must hold only letters, digits, _, : and - (like web-1)",
        ),
        ({"group_ids": [1.5]}, "group_ids.0", "must be a whole number, not a decimal number"),
        (
            {"end_at": "next tuesday"},
            "end_at",
            "must be an ISO 8601 date and time like 2026-12-01T14:00:00+01:00",
        ),
        (
            {"recurrence_type": "hourly"},
            "recurrence_type",
            "must be one of custom, daily, interval, monthly, once, weekly, got 'hourly'",
        ),
        ({"group_ids": [10**30]}, "group_ids.0", "must be at most 2,147,483,647"),
    ],
)
def test_a_task_field_is_refused_in_words(body: dict[str, Any], field: str, reason: str) -> None:
    error = refused(TASK | body)

    assert (error.field, error.reason) == (field, reason)
    assert error.message == f"{field}: {reason}"


@pytest.mark.parametrize(
    ("task_type", "payload", "field", "reason"),
    [
        ("command", {"command": "ls", "timeout_seconds": 0}, "timeout_seconds",
         "must be at least 1 second"),
        ("command", {"command": "ls", "timeout_seconds": 86401}, "timeout_seconds",
         "must be at most 86,400 seconds (1 day)"),
        ("command", {"command": "ls", "shell": "fish"}, "shell",
         "must be one of bash, cmd, powershell, pwsh, python3, sh, zsh, got 'fish'"),
        ("command", {"command": "ls", "env": {"A": 1}}, "env.*", "must be text, not a number"),
        ("file_deployment", {"file_id": "f", "destination": "/x", "mode": "999"}, "mode",
         "must be an octal mode like 0644 or 755"),
        ("file_deployment", {"file_id": "f", "destination": "/x", "mode": "rw-r--r--"}, "mode",
         "must be an octal mode like 0644 or 755"),
        ("script", {"file_id": "f", "args": ["a"] * 257}, "args", "must hold at most 256 items"),
        ("software_deployment", {"package": "nginx", "action": "reinstall"}, "action",
         "must be one of install, uninstall, upgrade, got 'reinstall'"),
    ],
)  # fmt: skip
def test_a_payload_field_is_refused_in_words(
    task_type: str, payload: dict[str, Any], field: str, reason: str
) -> None:
    error = payload_refusal(task_type, payload)

    assert error.field == f"task_payload.{KINDS[task_type].payload_key}.{field}"
    assert error.reason == reason


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("61 * * * *", "minute 61 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("0 8 0 * *", "day of month 0 is out of range 1-31"),
        ("0 8 * 13 *", "month 13 is out of range 1-12"),
        ("0 8 * * 8", "weekday 8 is out of range 0-7"),
        ("0 8 * * 1-9", "weekday 9 is out of range 0-7"),
        ("0,15,75 * * * *", "minute 75 is out of range 0-59"),
        ("*/0 * * * *", "minute step must be at least 1, got '*/0'"),
        ("0 8 * foo *", "month 'foo' is not a number (1-12 or jan-dec)"),
        ("0 8 * * 1#9", "'0 8 * * 1#9' is not a valid cron expression "
         "(minute hour day-of-month month weekday)"),
        ("0 8 31 2 *", "'0 8 31 2 *' never fires: no date matches it"),
    ],
)  # fmt: skip
def test_a_cron_field_is_refused_in_words(cron: str, reason: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_schedule("custom", {"cron": cron})

    assert (caught.value.field, caught.value.reason) == ("recurrence_config.cron", reason)


@pytest.mark.parametrize("cron", ["0 8 * * mon-fri", "*/15 8-18 * jan,jul *", "0 0 L * *"])
def test_cron_syntax_croniter_reads_is_still_accepted(cron: str) -> None:
    assert parse_schedule("custom", {"cron": cron}).recurrence_type == "custom"


@pytest.mark.parametrize(
    ("reason", "field", "words"),
    [
        ("Expected `int` >= 1", "timeout_seconds", "must be at least 1 second"),
        ("Expected `float` >= 0.0", "ratio", "must be at least 0"),
        ("Expected `int` > 5", "count", "must be more than 5"),
        ("Expected `str` of length >= 3", "code", "must hold at least 3 characters"),
        ("Expected `object` of length <= 1", "env", "must hold at most 1 entry"),
        ("Expected `str` matching regex '^x$'", "code", "is not in the accepted form"),
        ("Invalid enum value 'z'", "kind", "'z' is not one of the accepted values"),
        ("Number out of range", "n", "is a number out of range"),
        ("Something msgspec adds later", "n", "something msgspec adds later"),
    ],
)
def test_each_message_form_reads_in_words(reason: str, field: str, words: str) -> None:
    assert human_reason(reason, field) == words


def _patterns(shape: Any) -> set[str]:
    """Every Meta(pattern=...) reachable from a request shape."""
    found: set[str] = set()
    pending: list[Any] = [mi.type_info(shape)]
    seen: set[int] = set()
    while pending:
        kind = pending.pop()
        if id(kind) in seen:
            continue
        seen.add(id(kind))
        if getattr(kind, "pattern", None):
            found.add(kind.pattern)
        if isinstance(kind, mi.StructType):
            pending += [field.type for field in kind.fields]
        for attribute in ("type", "item_type", "key_type", "value_type"):
            if hasattr(kind, attribute):
                pending.append(getattr(kind, attribute))
        pending += list(getattr(kind, "types", ()))
    return found


REQUEST_SHAPES = [TaskInput, TaskPatch, GroupInput, GroupPatch, RunInput, RerunInput, WebhookInput]


def test_every_pattern_a_request_is_checked_against_has_words() -> None:
    shapes = REQUEST_SHAPES + [kind.payload_type for kind in KINDS.values()]
    patterns = set().union(*(_patterns(shape) for shape in shapes))

    assert patterns, "the walk found no pattern at all: it is broken"
    assert patterns <= set(PATTERN_REASONS), patterns - set(PATTERN_REASONS)


@pytest.mark.parametrize(
    "body",
    [
        {"name": 5},
        {"name": ""},
        {"device_ids": ["a b"]},
        {"jitter_seconds": -1},
        {"end_at": "soon"},
        {"task_type": "x"},
    ],
)
def test_no_refusal_shows_the_decoders_internals(body: dict[str, Any]) -> None:
    reason = refused(TASK | body).reason

    assert not any(text in reason for text in INTERNALS), reason
