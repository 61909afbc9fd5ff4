"""The clock seam: services ask it the time and sleep on it, so tests can drive time."""

from __future__ import annotations

import asyncio
from collections.abc import Sized
from datetime import UTC, datetime
from typing import Protocol


async def more_within(more: asyncio.Event, pending: Sized, seconds: float) -> bool:
    """Whether pending has something now or gets some within seconds; whoever adds to it sets
    more. For a worker keeping its connection a moment for the next burst."""
    more.clear()
    if len(pending):
        return True
    try:
        async with asyncio.timeout(seconds):
            await more.wait()
    except TimeoutError:
        return False
    return bool(len(pending))


async def wait_first(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Returns when any of events is set, or after timeout seconds."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class Backoff:
    """Doubling delays from first up to limit; reset() after a success."""

    def __init__(self, first: float, limit: float) -> None:
        self.first, self.limit, self.current = first, limit, 0.0

    def next(self) -> float:
        self.current = min(max(self.current * 2, self.first), self.limit)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, instant: datetime, wake: asyncio.Event) -> None:
        """Returns at instant, or earlier when wake is set."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, instant: datetime, wake: asyncio.Event) -> None:
        delay = (instant - self.now()).total_seconds()
        if delay > 0 and not wake.is_set():
            await wait_first(wake, timeout=delay)


class ManualClock:
    """A clock that moves only when a test sets it."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._moved = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> None:
        self._now = max(self._now, instant)
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def sleep_until(self, instant: datetime, wake: asyncio.Event) -> None:
        while self._now < instant and not wake.is_set():
            await wait_first(self._moved, wake)
