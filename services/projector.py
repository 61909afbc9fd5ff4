"""Keeps read tables caught up with the log: each projection's rows and checkpoint move together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import structlog

from events.codec import RecordedEvent
from projections import PROJECTIONS, Projection
from services.clock import Backoff, wait_first
from services.db import UNAVAILABLE, describe, reconnect_backoff
from services.listen import Listener
from services.store import (
    EVENTS_CHANNEL,
    PROJECTED_CHANNEL,
    Connection,
    LogCursor,
    has_events_after,
    load_checkpoint,
    read_after,
    save_checkpoint,
)

log = structlog.get_logger(__name__)


async def apply_batch(
    conn: Connection, projection: Projection, batch_size: int
) -> list[RecordedEvent]:
    """One transaction: read the next batch after the checkpoint, apply it, move the checkpoint."""
    async with conn.transaction():
        # An advisory lock, not SELECT ... FOR UPDATE: it serialises replicas of the projector
        # without giving this transaction an xid, which would hold back other readers' view.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('projection:' || $1))", projection.name
        )
        cursor = await load_checkpoint(conn, projection.name)
        events = await read_after(conn, cursor, batch_size)
        if not events:
            return events
        for recorded in events:
            await projection.apply(conn, recorded)
        last = LogCursor.of(events[-1])
        await save_checkpoint(conn, projection.name, last)
        await conn.execute(
            "SELECT pg_notify($1, $2)",
            PROJECTED_CHANNEL,
            f"{projection.name}:{last.tx_id}:{last.position}",
        )
        return events


async def catch_up(
    conn: Connection,
    projections: tuple[Projection, ...] = PROJECTIONS,
    batch_size: int = 500,
    on_applied: Callable[[int], None] | None = None,
) -> int:
    """Applies every visible event to every projection; returns how many events were applied."""
    applied = 0
    for projection in projections:
        while True:
            events = await apply_batch(conn, projection, batch_size)
            applied += len(events)
            if on_applied is not None and events:
                on_applied(len(events))
            if len(events) < batch_size:
                break
    return applied


async def run_projector(
    pool: asyncpg.Pool, stop: asyncio.Event, projections: tuple[Projection, ...] = PROJECTIONS
) -> None:
    """The projector service: catch up, then again on every append (LISTEN is only a wake-up)."""
    wake = asyncio.Event()
    listener = Listener(pool, EVENTS_CHANNEL, on_notify=lambda _: wake.set(), on_gap=wake.set)
    await listener.start()
    retry = Backoff(first=0.002, limit=0.1)
    failures = Backoff(first=0.5, limit=30.0)
    outage = reconnect_backoff()
    try:
        while not stop.is_set():
            wake.clear()
            try:
                async with pool.acquire() as conn:
                    applied = await catch_up(conn, projections)
                    failures.reset()
                    outage.reset()
                    if applied:
                        retry.reset()
                        continue
                    # A committed event may be held back behind an older open transaction whose
                    # commit sends no wake-up: look again soon instead of waiting for one.
                    cursor = min([await load_checkpoint(conn, p.name) for p in projections])
                    held_back = await has_events_after(conn, cursor)
            except UNAVAILABLE as exc:
                # The database is away (the checkpoint did not move): look again shortly.
                log.warning("projection_failed", error=describe(exc))
                await wait_first(stop, timeout=outage.next())
                continue
            except Exception:
                # Keep the projector alive through a bad event; the checkpoint did not move,
                # so the same batch is tried again.
                log.exception("projection_failed")
                await wait_first(stop, timeout=failures.next())
                continue
            if held_back:
                await asyncio.sleep(retry.next())
                continue
            retry.reset()
            await wait_first(wake, stop, timeout=5.0)
    finally:
        await listener.stop()
