"""Reading the fields of a recurrence_config, each refused with the field named and why."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time
from typing import Any, TypeGuard
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.domain.errors import ValidationFailed
from services.domain.wallclock import cron_problem, parse_time_of_day

# The instants a schedule may be given (run_at, start_at, a preview's `after`): far enough
# inside datetime's years 1..9999 that no UTC offset, interval step or walk ahead leaves them.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def require_in_range(field: str, value: datetime) -> datetime:
    """`value`, unless it lies outside [EARLIEST, LATEST); a naive one is read as UTC."""
    if not EARLIEST <= (value if value.tzinfo else value.replace(tzinfo=UTC)) < LATEST:
        reason = f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}, got {value}"
        raise ValidationFailed(field, reason)
    return value


def shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def zone_of(value: object) -> ZoneInfo:
    try:
        if isinstance(value, str) and 0 < len(value) <= 64:
            return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass  # ValueError: a path rather than a key; OSError: a directory such as "America"
    reason = f"must be an IANA time zone name like 'Europe/Berlin', got {shown(value)}"
    raise ValidationFailed("recurrence_config.timezone", reason)


def time_of_day(values: Mapping[str, Any]) -> time:
    if (parsed := parse_time_of_day(values["time"])) is None:
        reason = f"must be HH:MM or HH:MM:SS (24-hour), got {shown(values['time'])}"
        raise ValidationFailed("recurrence_config.time", reason)
    return parsed


def iso_datetime(values: Mapping[str, Any], key: str) -> datetime:
    value = values[key]
    if isinstance(value, str) and ("T" in value or " " in value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return require_in_range(f"recurrence_config.{key}", parsed)
    example = "'2026-12-01T14:00:00+01:00'"
    reason = f"must be an ISO 8601 date and time like {example}, got {shown(value)}"
    raise ValidationFailed(f"recurrence_config.{key}", reason)


def is_int(value: object, low: int, high: int) -> TypeGuard[int]:
    # JSON true/false decode to bool, a subclass of int; they are not numbers here.
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def integer(values: Mapping[str, Any], key: str, low: int, high: int) -> int:
    if not is_int(value := values[key], low, high):
        reason = f"must be an integer from {low} to {high}, got {shown(value)}"
        raise ValidationFailed(f"recurrence_config.{key}", reason)
    return value


def days(values: Mapping[str, Any]) -> tuple[int, ...]:
    given = values["days"]
    if not isinstance(given, list | tuple) or not given or not all(is_int(d, 0, 7) for d in given):
        names = "1 = Monday ... 6 = Saturday, 0 or 7 = Sunday"
        reason = f"must be a non-empty list of integers from 0 to 7 ({names}), got {shown(given)}"
        raise ValidationFailed("recurrence_config.days", reason)
    return tuple(sorted({day % 7 for day in given}))


def cron(values: Mapping[str, Any]) -> str:
    value = values["cron"]
    fields = value.split() if isinstance(value, str) and len(value) <= 200 else []
    if len(fields) != 5:
        reason = "must be a five-field cron expression (minute hour day-of-month month weekday)"
        raise ValidationFailed("recurrence_config.cron", f"{reason}, got {shown(value)}")
    expression = " ".join(fields)
    if (problem := cron_problem(expression)) is not None:
        raise ValidationFailed("recurrence_config.cron", problem)
    return expression
