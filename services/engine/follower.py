"""Following the log: a step run on every append (LISTEN wakes it), retried through outages."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from services.infra.clock import Backoff, wait_first
from services.infra.db import UNAVAILABLE, describe, reconnect_backoff
from services.infra.listen import Listener
from services.infra.store import EVENTS_CHANNEL, Connection, has_events_past

log = structlog.get_logger("deployx.follower")

# One step: handle the next batch after the reader's checkpoint; how many events it took.
Step = Callable[[Connection], Awaitable[int]]


async def follow_log(
    pool: asyncpg.Pool,
    stop: asyncio.Event,
    checkpoint: str,
    step: Step,
    *,
    session_url: str | None = None,
    pace: float = 0.0,
) -> None:
    """Runs step until it finds nothing, then waits for the next append; until stop.

    A failed step moved nothing (its transaction rolled back), so the same batch is tried
    again, after a pause that grows while it keeps failing.

    pace: the least time (seconds) from the start of a step that took events to the start of
    the next. While appends keep coming, each step then takes in one batch (one transaction,
    one set of statements) what gathered meanwhile, instead of a batch per append; the first
    append after a quiet spell is taken at once.
    """
    wake = asyncio.Event()
    listener = Listener(
        pool,
        EVENTS_CHANNEL,
        on_notify=lambda _: wake.set(),
        on_gap=wake.set,
        session_url=session_url,
    )
    await listener.start()
    held_back = Backoff(first=0.002, limit=0.1)
    failures, outage = Backoff(first=0.5, limit=30.0), reconnect_backoff()
    took_at = -math.inf
    try:
        while not stop.is_set():
            if (gap := took_at + pace - time.monotonic()) > 0:
                await wait_first(stop, timeout=gap)
                continue
            wake.clear()
            started = time.monotonic()
            try:
                async with pool.acquire() as conn:
                    done = await step(conn)
                    if done:
                        took_at = started
                    # After a step that took events, no second step just to find nothing: an
                    # append committed since sends a wake-up (wake is set), and one committed
                    # before it but not yet readable is what has_events_past finds.
                    waiting = (not done or not wake.is_set()) and await has_events_past(
                        conn, [checkpoint]
                    )
                failures.reset()
                outage.reset()
            except UNAVAILABLE as exc:
                log.warning("reader_failed", reader=checkpoint, error=describe(exc))
                await wait_first(stop, timeout=outage.next())
                continue
            except Exception:
                log.exception("reader_failed", reader=checkpoint)
                await wait_first(stop, timeout=failures.next())
                continue
            if done or not waiting:
                held_back.reset()
            if done and (waiting or wake.is_set()):
                continue  # more to read already
            if waiting:
                # Committed, but behind an older open transaction whose commit wakes no one.
                await asyncio.sleep(held_back.next())
                continue
            await wait_first(wake, stop, timeout=5.0)
    finally:
        await listener.stop()
