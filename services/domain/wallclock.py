"""Wall-clock schedules: local times in an IANA zone, mapped to instants under the DST rules."""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, date, datetime, time, timedelta
from itertools import count
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

from services.domain.cron_words import expression_problem

# Candidates that map at or before `after` are skipped; in practice only those inside one DST
# gap or repeated hour, so reaching this bound means a bug, never a slow schedule.
_MAX_SKIPPED = 10_000
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?")


def require_aware(value: datetime) -> datetime:
    """`value`, unless it is naive: callers must pass instants, so that is a programming error."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got {value!r}")
    return value


def wall_to_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of naive wall time `wall` in `zone`.

    A time that occurs twice maps to its first occurrence; a time that does not exist (it falls
    in a gap) maps to the first instant after the gap.
    """
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # In a gap, fold=0 reads the wall time with the offset before the transition and fold=1
    # with the one after, so the transition lies between the two readings. zoneinfo does not
    # expose its transitions: bisect whole seconds, tzdata's resolution.
    readings = sorted(wall.replace(tzinfo=zone, fold=fold).timestamp() for fold in (0, 1))
    low, high = math.floor(readings[0]), math.ceil(readings[1])
    target = datetime.fromtimestamp(high, zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def first_instant_after(
    walls: Iterable[datetime], zone: ZoneInfo, after: datetime
) -> datetime | None:
    """The first instant strictly after `after` among the ascending naive wall times `walls`.

    Ascending wall times map to instants that never go backwards, so this skips exactly the
    candidates collapsed into a gap's end or falling in a repeated hour's second pass.
    """
    try:
        for skipped, wall in enumerate(walls):
            instant = wall_to_instant(wall, zone)
            if instant > after:
                return instant
            if skipped >= _MAX_SKIPPED:
                raise RuntimeError(f"no fire time after {after.isoformat()} in {skipped} tries")
    except OverflowError:
        pass  # beyond year 9999 there is no next time to give
    return None


def parse_time_of_day(value: object) -> time | None:
    """The time of day spelled "HH:MM" or "HH:MM:SS" (24-hour), or None for anything else."""
    match = _TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None or int(match[1]) > 23 or int(match[2]) > 59 or int(match[3] or 0) > 59:
        return None
    return time(int(match[1]), int(match[2]), int(match[3] or 0))


def format_time_of_day(value: time) -> str:
    """The canonical spelling of a time of day: seconds only when they are not zero."""
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


@dataclass(frozen=True, slots=True, kw_only=True)
class _WallClockSchedule:
    zone: ZoneInfo

    def next_after(self, after: datetime) -> datetime | None:
        # The wall time of `after` itself maps at or before `after` (fold=0 is the earlier
        # reading), so starting the candidates there cannot miss one.
        start = require_aware(after).astimezone(self.zone).replace(tzinfo=None, fold=0)
        return first_instant_after(self._walls(start), self.zone, after)

    def canonical_config(self) -> dict[str, Any]:
        return {**self._config(), "timezone": self.zone.key}

    def _walls(self, start: datetime) -> Iterator[datetime]:
        """Ascending wall times, the first no later than the first one after `start`."""
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class OnceSchedule(_WallClockSchedule):
    run_at: datetime  # as given; naive means a wall-clock time in `zone`
    recurrence_type: ClassVar[str] = "once"

    def next_after(self, after: datetime) -> datetime | None:
        if self.run_at.tzinfo is None:
            return _WallClockSchedule.next_after(self, after)
        instant = self.run_at.astimezone(UTC)
        return instant if instant > require_aware(after) else None

    def _walls(self, start: datetime) -> Iterator[datetime]:
        yield self.run_at

    def _config(self) -> dict[str, Any]:
        return {"run_at": self.run_at.isoformat()}


@dataclass(frozen=True, slots=True, kw_only=True)
class DailySchedule(_WallClockSchedule):
    at: time
    recurrence_type: ClassVar[str] = "daily"

    def _walls(self, start: datetime) -> Iterator[datetime]:
        for days in count():
            yield datetime.combine(start.date() + timedelta(days=days), self.at)

    def _config(self) -> dict[str, Any]:
        return {"time": format_time_of_day(self.at)}


@dataclass(frozen=True, slots=True, kw_only=True)
class WeeklySchedule(_WallClockSchedule):
    at: time
    days: tuple[int, ...]  # the contract's numbering (0 = Sunday), sorted and unique
    recurrence_type: ClassVar[str] = "weekly"

    def _walls(self, start: datetime) -> Iterator[datetime]:
        weekdays = {(day - 1) % 7 for day in self.days}  # Python's numbering, 0 = Monday
        for days in count():
            candidate = start.date() + timedelta(days=days)
            if candidate.weekday() in weekdays:
                yield datetime.combine(candidate, self.at)

    def _config(self) -> dict[str, Any]:
        return {"time": format_time_of_day(self.at), "days": list(self.days)}


@dataclass(frozen=True, slots=True, kw_only=True)
class MonthlySchedule(_WallClockSchedule):
    at: time
    day_of_month: int  # 1..31; past the month's end means its last day
    recurrence_type: ClassVar[str] = "monthly"

    def _walls(self, start: datetime) -> Iterator[datetime]:
        year, month = start.year, start.month
        while year <= MAXYEAR:
            day = min(self.day_of_month, calendar.monthrange(year, month)[1])
            yield datetime.combine(date(year, month, day), self.at)
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)

    def _config(self) -> dict[str, Any]:
        return {"time": format_time_of_day(self.at), "day_of_month": self.day_of_month}


@dataclass(frozen=True, slots=True, kw_only=True)
class CronSchedule(_WallClockSchedule):
    cron: str  # five fields, single-spaced, already validated
    recurrence_type: ClassVar[str] = "custom"

    def _walls(self, start: datetime) -> Iterator[datetime]:
        # Naive datetimes make croniter do plain calendar arithmetic, with no DST handling of
        # its own to get wrong; wall_to_instant applies the contract's rules afterwards.
        walls = croniter(self.cron, start, ret_type=datetime)
        try:
            while True:
                yield walls.get_next(datetime)
        except CroniterBadDateError:
            return
        except (ValueError, OverflowError):
            return  # croniter stepped past year 9999, where there is no next time to give

    def _config(self) -> dict[str, Any]:
        return {"cron": self.cron}


def cron_problem(expression: str) -> str | None:
    """Why the five-field cron `expression` is unusable, in words, or None when it is fine."""
    if (problem := expression_problem(expression.split())) is not None:
        return problem
    try:
        croniter(expression, datetime(2000, 1, 1), ret_type=datetime).get_next(datetime)
    except CroniterBadDateError:  # croniter searched 50 years of dates
        return f"{expression!r} never fires: no date matches it"
    except (CroniterError, ValueError, TypeError, KeyError, IndexError):
        # croniter's own text ("[...] is not acceptable") says nothing a user can act on.
        fields = "minute hour day-of-month month weekday"
        return f"{expression!r} is not a valid cron expression ({fields})"
    return None
