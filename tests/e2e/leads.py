"""How far ahead to schedule a burst of tasks: measured, not guessed.

A test that schedules N tasks due from `begin` on must finish creating them before `begin`.
A fixed lead that a fast machine meets, a slower one overruns without any bug; so the lead is
derived from the time creating tasks takes here, measured on a sample that is never due.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

SAMPLE = 20
# Twice the measured time: the machine may slow down while the burst is created.
SAFETY = 2.0


def seconds_until(instant: datetime) -> float:
    """What a wait for the burst's work adds to its own timeout: the time left before it
    begins (longer on a machine where creating it took longer)."""
    return max(0.0, (instant - datetime.now(UTC)).total_seconds())


def never_due() -> datetime:
    """A run time no test lives to see: the sample's tasks never fire."""
    return datetime.now(UTC) + timedelta(days=30)


async def measured_lead(
    create: Callable[[int], Awaitable[object]],
    size: int,
    floor: timedelta,
    sample: int = SAMPLE,
) -> timedelta:
    """The lead for `size` tasks: `create(sample)` makes that many tasks due never, the way
    the burst will be made; the lead is SAFETY times what `size` of them take at that rate, or
    `floor` if that is longer."""
    await create(1)  # the first one pays for connections and plans: not part of the rate
    started = time.monotonic()
    await create(sample)
    per_task = (time.monotonic() - started) / sample
    return max(floor, timedelta(seconds=SAFETY * per_task * size))
