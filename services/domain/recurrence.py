"""Recurrence: validating a task's recurrence_config into a Schedule, and previewing fire times."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, ClassVar, Protocol, TypeGuard
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.domain.errors import ValidationFailed
from services.domain.wallclock import (
    CronSchedule,
    DailySchedule,
    MonthlySchedule,
    OnceSchedule,
    WeeklySchedule,
    cron_problem,
    parse_time_of_day,
    require_aware,
    wall_to_instant,
)

RECURRENCE_TYPES: tuple[str, ...] = ("once", "daily", "weekly", "monthly", "custom", "interval")
PREVIEW_MAX = 1000
MAX_EVERY_SECONDS = 366 * 24 * 3600
# The instants a schedule may be given (run_at, start_at, a preview's `after`): far enough
# inside datetime's years 1..9999 that no UTC offset, interval step or walk ahead leaves them.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_OPTIONAL_KEYS = ("timezone", "start_at")  # null counts as absent for these
_KEYS: dict[str, tuple[str, ...]] = {
    "once": ("run_at", "timezone"),
    "daily": ("time", "timezone"),
    "weekly": ("time", "days", "timezone"),
    "monthly": ("time", "day_of_month", "timezone"),
    "custom": ("cron", "timezone"),
    "interval": ("every_seconds", "start_at", "timezone"),
}


class Schedule(Protocol):
    """When a task fires: the first fire instant after a given instant, and the config to store."""

    @property
    def recurrence_type(self) -> str: ...

    def next_after(self, after: datetime) -> datetime | None: ...

    def canonical_config(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class IntervalSchedule:
    every_seconds: int
    first: datetime  # in UTC; then every `every_seconds` of elapsed time, whatever wall clocks do
    start_at: datetime | None  # as given, when given
    zone: ZoneInfo
    recurrence_type: ClassVar[str] = "interval"

    def next_after(self, after: datetime) -> datetime | None:
        step = timedelta(seconds=self.every_seconds)
        try:
            return self.first + max(0, (require_aware(after) - self.first) // step + 1) * step
        except OverflowError:
            return None

    def canonical_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"every_seconds": self.every_seconds, "timezone": self.zone.key}
        if self.start_at is not None:
            config["start_at"] = self.start_at.isoformat()
        return config


def parse_schedule(
    recurrence_type: str, config: Mapping[str, Any], *, anchor: datetime | None = None
) -> Schedule:
    """Validate a recurrence, naming the bad field; `anchor` is the task's creation time."""
    if not isinstance(recurrence_type, str) or recurrence_type not in _KEYS:
        reason = f"must be one of {', '.join(RECURRENCE_TYPES)}, got {_shown(recurrence_type)}"
        raise ValidationFailed("recurrence_type", reason)
    if not isinstance(config, Mapping):
        got = type(config).__name__
        raise ValidationFailed("recurrence_config", f"must be a JSON object, got {got}")
    allowed = _KEYS[recurrence_type]
    for key in config:
        if key not in allowed:
            expected = ", ".join(allowed)
            reason = f"unknown field for {recurrence_type} recurrence; expected one of {expected}"
            raise ValidationFailed(f"recurrence_config.{key}", reason)
    values = {k: v for k, v in config.items() if not (k in _OPTIONAL_KEYS and v is None)}
    for key in allowed:
        if key not in values and key not in _OPTIONAL_KEYS:
            reason = f"is required for {recurrence_type} recurrence"
            raise ValidationFailed(f"recurrence_config.{key}", reason)
    zone = _zone(values.get("timezone", "UTC"))
    return _PARSERS[recurrence_type](values, zone, anchor)


def preview(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The next `count` fire instants strictly after `after` (fewer when the schedule ends)."""
    if not _is_int(count, 1, PREVIEW_MAX):
        got = _shown(count)
        raise ValidationFailed("count", f"must be an integer from 1 to {PREVIEW_MAX}, got {got}")
    times: list[datetime] = []
    cursor: datetime | None = require_aware(after)
    while len(times) < count and cursor is not None:
        cursor = schedule.next_after(cursor)
        if cursor is not None:
            times.append(cursor)
    return times


def require_in_range(field: str, value: datetime) -> datetime:
    """`value`, unless it lies outside [EARLIEST, LATEST); a naive one is read as UTC."""
    if not EARLIEST <= (value if value.tzinfo else value.replace(tzinfo=UTC)) < LATEST:
        reason = f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}, got {value}"
        raise ValidationFailed(field, reason)
    return value


def _interval(values: Mapping[str, Any], zone: ZoneInfo, anchor: datetime | None) -> Schedule:
    every = _integer(values, "every_seconds", 1, MAX_EVERY_SECONDS)
    start_at = _iso_datetime(values, "start_at") if "start_at" in values else None
    if start_at is not None:
        first = start_at.astimezone(UTC) if start_at.tzinfo else wall_to_instant(start_at, zone)
    elif anchor is None:
        raise ValueError("an interval without start_at needs the anchor (task creation time)")
    else:
        first = require_aware(anchor).astimezone(UTC) + timedelta(seconds=every)
    return IntervalSchedule(every_seconds=every, first=first, start_at=start_at, zone=zone)


_PARSERS: dict[str, Callable[[Mapping[str, Any], ZoneInfo, datetime | None], Schedule]] = {
    "once": lambda v, zone, _: OnceSchedule(zone=zone, run_at=_iso_datetime(v, "run_at")),
    "daily": lambda v, zone, _: DailySchedule(zone=zone, at=_time_of_day(v)),
    "weekly": lambda v, zone, _: WeeklySchedule(zone=zone, at=_time_of_day(v), days=_days(v)),
    "monthly": lambda v, zone, _: MonthlySchedule(
        zone=zone, at=_time_of_day(v), day_of_month=_integer(v, "day_of_month", 1, 31)
    ),
    "custom": lambda v, zone, _: CronSchedule(zone=zone, cron=_cron(v)),
    "interval": _interval,
}


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _zone(value: object) -> ZoneInfo:
    try:
        if isinstance(value, str) and 0 < len(value) <= 64:
            return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass  # ValueError: a path rather than a key; OSError: a directory such as "America"
    reason = f"must be an IANA time zone name like 'Europe/Berlin', got {_shown(value)}"
    raise ValidationFailed("recurrence_config.timezone", reason)


def _time_of_day(values: Mapping[str, Any]) -> time:
    if (parsed := parse_time_of_day(values["time"])) is None:
        reason = f"must be HH:MM or HH:MM:SS (24-hour), got {_shown(values['time'])}"
        raise ValidationFailed("recurrence_config.time", reason)
    return parsed


def _iso_datetime(values: Mapping[str, Any], key: str) -> datetime:
    value = values[key]
    if isinstance(value, str) and ("T" in value or " " in value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return require_in_range(f"recurrence_config.{key}", parsed)
    example = "'2026-12-01T14:00:00+01:00'"
    reason = f"must be an ISO 8601 date and time like {example}, got {_shown(value)}"
    raise ValidationFailed(f"recurrence_config.{key}", reason)


def _is_int(value: object, low: int, high: int) -> TypeGuard[int]:
    # JSON true/false decode to bool, a subclass of int; they are not numbers here.
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _integer(values: Mapping[str, Any], key: str, low: int, high: int) -> int:
    if not _is_int(value := values[key], low, high):
        reason = f"must be an integer from {low} to {high}, got {_shown(value)}"
        raise ValidationFailed(f"recurrence_config.{key}", reason)
    return value


def _days(values: Mapping[str, Any]) -> tuple[int, ...]:
    days = values["days"]
    if not isinstance(days, list | tuple) or not days or not all(_is_int(d, 0, 7) for d in days):
        names = "1 = Monday ... 6 = Saturday, 0 or 7 = Sunday"
        reason = f"must be a non-empty list of integers from 0 to 7 ({names}), got {_shown(days)}"
        raise ValidationFailed("recurrence_config.days", reason)
    return tuple(sorted({day % 7 for day in days}))


def _cron(values: Mapping[str, Any]) -> str:
    value = values["cron"]
    fields = value.split() if isinstance(value, str) and len(value) <= 200 else []
    if len(fields) != 5:
        reason = "must be a five-field cron expression (minute hour day-of-month month weekday)"
        raise ValidationFailed("recurrence_config.cron", f"{reason}, got {_shown(value)}")
    expression = " ".join(fields)
    if (problem := cron_problem(expression)) is not None:
        raise ValidationFailed("recurrence_config.cron", problem)
    return expression
