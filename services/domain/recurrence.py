"""Recurrence: the registry of recurrence kinds, validating a task's recurrence_config into a
Schedule, and previewing fire times."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol
from zoneinfo import ZoneInfo

from services.domain.errors import ValidationFailed
from services.domain.recurrence_fields import (
    cron,
    days,
    integer,
    is_int,
    iso_datetime,
    shown,
    time_of_day,
    zone_of,
)
from services.domain.wallclock import (
    CronSchedule,
    DailySchedule,
    MonthlySchedule,
    OnceSchedule,
    WeeklySchedule,
    require_aware,
    wall_to_instant,
)

PREVIEW_MAX = 1000
MAX_EVERY_SECONDS = 366 * 24 * 3600
_OPTIONAL_KEYS = ("timezone", "start_at")  # null counts as absent for these


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
    if not isinstance(recurrence_type, str) or recurrence_type not in RECURRENCE_KINDS:
        reason = f"must be one of {', '.join(RECURRENCE_TYPES)}, got {shown(recurrence_type)}"
        raise ValidationFailed("recurrence_type", reason)
    if not isinstance(config, Mapping):
        got = type(config).__name__
        raise ValidationFailed("recurrence_config", f"must be a JSON object, got {got}")
    kind = RECURRENCE_KINDS[recurrence_type]
    allowed = kind.keys
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
    return kind.parse(values, zone_of(values.get("timezone", "UTC")), anchor)


def preview(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The next `count` fire instants strictly after `after` (fewer when the schedule ends)."""
    if not is_int(count, 1, PREVIEW_MAX):
        got = shown(count)
        raise ValidationFailed("count", f"must be an integer from 1 to {PREVIEW_MAX}, got {got}")
    times: list[datetime] = []
    cursor: datetime | None = require_aware(after)
    while len(times) < count and cursor is not None:
        cursor = schedule.next_after(cursor)
        if cursor is not None:
            times.append(cursor)
    return times


def _interval(values: Mapping[str, Any], zone: ZoneInfo, anchor: datetime | None) -> Schedule:
    every = integer(values, "every_seconds", 1, MAX_EVERY_SECONDS)
    start_at = iso_datetime(values, "start_at") if "start_at" in values else None
    if start_at is not None:
        first = start_at.astimezone(UTC) if start_at.tzinfo else wall_to_instant(start_at, zone)
    elif anchor is None:
        raise ValueError("an interval without start_at needs the anchor (task creation time)")
    else:
        first = require_aware(anchor).astimezone(UTC) + timedelta(seconds=every)
    return IntervalSchedule(every_seconds=every, first=first, start_at=start_at, zone=zone)


@dataclass(frozen=True, slots=True)
class RecurrenceKind:
    """One recurrence_type: the recurrence_config keys it takes and how they become a Schedule."""

    name: str
    keys: tuple[str, ...]
    parse: Callable[[Mapping[str, Any], ZoneInfo, datetime | None], Schedule]


RECURRENCE_KINDS: dict[str, RecurrenceKind] = {
    kind.name: kind
    for kind in (
        RecurrenceKind(
            "once",
            ("run_at", "timezone"),
            lambda v, zone, _: OnceSchedule(zone=zone, run_at=iso_datetime(v, "run_at")),
        ),
        RecurrenceKind(
            "daily",
            ("time", "timezone"),
            lambda v, zone, _: DailySchedule(zone=zone, at=time_of_day(v)),
        ),
        RecurrenceKind(
            "weekly",
            ("time", "days", "timezone"),
            lambda v, zone, _: WeeklySchedule(zone=zone, at=time_of_day(v), days=days(v)),
        ),
        RecurrenceKind(
            "monthly",
            ("time", "day_of_month", "timezone"),
            lambda v, zone, _: MonthlySchedule(
                zone=zone, at=time_of_day(v), day_of_month=integer(v, "day_of_month", 1, 31)
            ),
        ),
        RecurrenceKind(
            "custom", ("cron", "timezone"), lambda v, zone, _: CronSchedule(zone=zone, cron=cron(v))
        ),
        RecurrenceKind("interval", ("every_seconds", "start_at", "timezone"), _interval),
    )
}
RECURRENCE_TYPES: tuple[str, ...] = tuple(RECURRENCE_KINDS)

if TYPE_CHECKING:
    RecurrenceType = str
else:  # the enum msgspec validates recurrence_type against and OpenAPI shows
    RecurrenceType = Literal[RECURRENCE_TYPES]
