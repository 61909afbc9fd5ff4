"""Keeps read tables caught up with the log: each projection's rows and checkpoint move together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import structlog

from events.codec import RecordedEvent
from projections import PROJECTIONS, Projection
from services.store import Connection, Executor, LogCursor, has_events_after, read_after

PROJECTED_CHANNEL = "deployx_projected"
EVENTS_CHANNEL = "deployx_events"

log = structlog.get_logger(__name__)


async def load_checkpoint(db: Executor, name: str) -> LogCursor:
    row = await db.fetchrow(
        "SELECT tx_id::text::bigint AS tx_id, position FROM checkpoints WHERE name = $1", name
    )
    return LogCursor(row["tx_id"], row["position"]) if row else LogCursor()


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
        await conn.execute(
            """
            INSERT INTO checkpoints (name, tx_id, position, updated_at)
            VALUES ($1, $2::text::xid8, $3, now())
            ON CONFLICT (name) DO UPDATE SET tx_id = EXCLUDED.tx_id,
                position = EXCLUDED.position, updated_at = EXCLUDED.updated_at
            """,
            projection.name,
            str(last.tx_id),
            last.position,
        )
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

    def on_notify(*_: object) -> None:
        wake.set()

    listener = await pool.acquire()
    await listener.add_listener(EVENTS_CHANNEL, on_notify)
    retry = Backoff(first=0.002, limit=0.1)
    failures = Backoff(first=0.5, limit=30.0)
    try:
        while not stop.is_set():
            wake.clear()
            try:
                async with pool.acquire() as conn:
                    applied = await catch_up(conn, projections)
                    failures.reset()
                    if applied:
                        retry.reset()
                        continue
                    # A committed event may be held back behind an older open transaction whose
                    # commit sends no wake-up: look again soon instead of waiting for one.
                    cursor = min([await load_checkpoint(conn, p.name) for p in projections])
                    held_back = await has_events_after(conn, cursor)
            except Exception:
                # Keep the projector alive through a bad event or a database outage; the
                # checkpoint did not move, so the same batch is tried again.
                log.exception("projection_failed")
                await _wait_any(asyncio.Event(), stop, failures.next())
                continue
            if held_back:
                await asyncio.sleep(retry.next())
                continue
            retry.reset()
            await _wait_any(wake, stop, timeout=5.0)
    finally:
        await listener.remove_listener(EVENTS_CHANNEL, on_notify)
        await pool.release(listener)


class Backoff:
    """Doubling delays from first up to limit; reset() after a success."""

    def __init__(self, first: float, limit: float) -> None:
        self.first, self.limit, self.current = first, limit, 0.0

    def next(self) -> float:
        self.current = min(max(self.current * 2, self.first), self.limit)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


async def _wait_any(wake: asyncio.Event, stop: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
