"""Webhooks from the log: each event read in order becomes a delivery per matching subscription."""

from __future__ import annotations

import asyncio

import asyncpg

from services.engine.follower import follow_log
from services.infra.store import Connection, load_checkpoint, never_appending, save_checkpoint
from services.infra.webhook_queue import enqueue_next, promote

CHECKPOINT = "webhooks"
BATCH = 2000
# While appends keep coming, a batch at most this often (seconds; see follow_log): a webhook
# may leave up to this much later, the enqueuer's statements per append shrink with the batch.
PACE = 0.1
# Replicas take turns per batch; the checkpoint moves in the same transaction as the rows.
_LOCK = 7_240_014


async def enqueue_step(conn: Connection, give_up_seconds: float, batch: int = BATCH) -> int:
    """Enqueues the next batch of the log; 0 when there was nothing to read."""
    async with never_appending(conn):  # it writes its own table only: readers need not wait
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        cursor = await load_checkpoint(conn, CHECKPOINT)
        enqueued = await enqueue_next(conn, cursor, batch, give_up_seconds)
        if enqueued is None:
            return 0
        await save_checkpoint(conn, CHECKPOINT, enqueued.cursor)
    # After the commit, so that a sender ending a queue's head meanwhile is seen (or sees us).
    await promote(conn, enqueued.keys)
    return 1


async def run_enqueuer(
    pool: asyncpg.Pool,
    stop: asyncio.Event,
    give_up_seconds: float,
    *,
    session_url: str | None = None,
) -> None:
    async def step(conn: Connection) -> int:
        return await enqueue_step(conn, give_up_seconds)

    await follow_log(pool, stop, CHECKPOINT, step, session_url=session_url, pace=PACE)
