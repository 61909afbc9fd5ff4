"""A run's delivery policy: checked on input, and turned into numbers for a count of targets."""

from __future__ import annotations

import math
import re

from events.execution import Delivery
from services.domain.errors import ValidationFailed

MAX_WAIT_SECONDS = 30 * 24 * 3600  # a device may come back within a month, no later
MAX_WAVES = 100
_PERCENT = re.compile(r"^([1-9][0-9]?|100)%$")
_PERCENT_OR_ZERO = re.compile(r"^([0-9]|[1-9][0-9]|100)%$")


def checked(delivery: Delivery, field: str = "delivery") -> Delivery:
    """delivery if every field is in range; ValidationFailed naming the first that is not."""
    _seconds(delivery.offline_wait_seconds, f"{field}.offline_wait_seconds")
    _seconds(delivery.wave_pause_seconds, f"{field}.wave_pause_seconds")
    if delivery.max_concurrency is not None:
        _size(delivery.max_concurrency, f"{field}.max_concurrency", low=1)
    if delivery.max_errors is not None:
        _size(delivery.max_errors, f"{field}.max_errors", low=0)
    if len(delivery.waves) > MAX_WAVES:
        raise ValidationFailed(f"{field}.waves", f"at most {MAX_WAVES} waves")
    for index, size in enumerate(delivery.waves):
        _size(size, f"{field}.waves[{index}]", low=1)
    return delivery


def _seconds(value: int, field: str) -> None:
    if not 0 <= value <= MAX_WAIT_SECONDS:
        raise ValidationFailed(field, f"must be between 0 and {MAX_WAIT_SECONDS} seconds")


def _size(value: int | str, field: str, low: int) -> None:
    if isinstance(value, str):
        pattern = _PERCENT if low else _PERCENT_OR_ZERO
        if not pattern.match(value):
            floor = "1%" if low else "0%"
            raise ValidationFailed(field, f"must be a whole percentage from {floor} to 100%")
    elif not low <= value <= 1_000_000:
        raise ValidationFailed(field, f"must be a number from {low} to 1000000, or a percentage")


def count_of(value: int | str, total: int, *, round_up: bool) -> int:
    """A size for `total` targets: an int as it is, "N%" of total (up, at least 1, or down)."""
    if isinstance(value, int):
        return value
    share = total * int(value.rstrip("%")) / 100
    return max(1, math.ceil(share)) if round_up else math.floor(share)


def wave_sizes(delivery: Delivery, total: int) -> list[int]:
    """The size of each wave until `total` devices are covered (the last size repeats)."""
    if not delivery.waves:
        return [total] if total else []
    sizes: list[int] = []
    covered = 0
    steps = [count_of(size, total, round_up=True) for size in delivery.waves]
    while covered < total:
        size = min(steps[min(len(sizes), len(steps) - 1)], total - covered)
        sizes.append(size)
        covered += size
    return sizes


def concurrency(delivery: Delivery, total: int) -> int:
    if delivery.max_concurrency is None:
        return max(total, 1)
    return max(1, count_of(delivery.max_concurrency, total, round_up=True))


def error_budget(delivery: Delivery, total: int) -> int | None:
    """How many devices may fail before no further device starts (None: no limit)."""
    if delivery.max_errors is None:
        return None
    return count_of(delivery.max_errors, total, round_up=False)


def in_words(delivery: Delivery) -> str:
    """The policy as a sentence, for logs and error messages."""
    parts = []
    if delivery.waves:
        parts.append("waves of " + ", ".join(str(size) for size in delivery.waves))
    if delivery.max_concurrency is not None:
        parts.append(f"at most {delivery.max_concurrency} at a time")
    if delivery.max_errors is not None:
        parts.append(f"stop after more than {delivery.max_errors} failures")
    if delivery.offline_wait_seconds:
        parts.append(f"wait up to {delivery.offline_wait_seconds} s for offline devices")
    return "; ".join(parts) or "every device at once"
