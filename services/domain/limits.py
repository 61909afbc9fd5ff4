"""When a task ends: end_at and max_runs cut its schedule short; pause_on_failure stops it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from services.domain.recurrence_fields import require_in_range, zone_of
from services.domain.wallclock import wall_to_instant

END_AT = "end_at"
MAX_RUNS = "max_runs"


def end_instant(end_at: datetime | None, config: Mapping[str, Any]) -> datetime | None:
    """end_at as an instant: without an offset it is wall time in the task's time zone (a
    time in a DST gap is the gap's end, a repeated time its first occurrence, as for run_at)."""
    if end_at is None:
        return None
    require_in_range(END_AT, end_at)
    if end_at.tzinfo is not None and end_at.utcoffset() is not None:
        return end_at.astimezone(UTC)
    return wall_to_instant(end_at, zone_of(config.get("timezone", "UTC")))


def limited(
    next_run: datetime | None,
    *,
    end_at: datetime | None,
    max_runs: int | None,
    scheduled_runs: int,
) -> tuple[datetime | None, str | None]:
    """The occurrence the task may still run after `scheduled_runs` scheduled runs, and which
    limit ended it when that leaves none ("end_at", "max_runs"; None if the schedule did)."""
    if next_run is None:
        return None, None
    if max_runs is not None and scheduled_runs >= max_runs:
        return None, MAX_RUNS
    if end_at is not None and next_run > end_at:
        return None, END_AT
    return next_run, None


def failure_reason(execution_id: str, error_message: str | None) -> str:
    """Why pause_on_failure paused a task: the run and what went wrong, for the audit log."""
    return f"run {execution_id} failed: {error_message or 'no error message'}"
