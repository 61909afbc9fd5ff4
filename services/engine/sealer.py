"""The sealer: follows the log in order and seals each event into the audit hash chain."""

from __future__ import annotations

import asyncio

import asyncpg

from services.domain.audit_chain import seal_all
from services.engine.follower import follow_log
from services.infra import audit_store
from services.infra.store import Connection, load_checkpoint, never_appending, save_checkpoint

CHECKPOINT = "audit_sealer"
BATCH = 5000
# While appends keep coming, a batch at most this often (seconds; see follow_log): the seal lag
# grows by up to this much, the sealer's statements per append shrink with the batch.
PACE = 0.1
# Replicas take turns per batch: the chain has one head, and each batch continues it.
_LOCK = 7_240_013


async def seal_next(conn: Connection, batch: int = BATCH) -> int:
    """Seals the next batch of the log in one transaction; how many events it sealed.

    Appends never wait for this: it reads committed rows only, and the one lock it takes is
    its own.
    """
    async with never_appending(conn):  # it writes its own table only: readers need not wait
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        cursor = await load_checkpoint(conn, CHECKPOINT)
        events = await audit_store.read_unsealed(conn, cursor, batch)
        if not events:
            return 0
        head = await audit_store.head(conn)
        seals = seal_all(head.hash, head.seq + 1, [item.event for item in events])
        await audit_store.insert_seals(conn, seals)
        await save_checkpoint(conn, CHECKPOINT, events[-1].cursor)
    return len(events)


async def seal_all_visible(conn: Connection) -> int:
    """Seals until nothing visible is left (tests, and the sealer's catching up)."""
    total = 0
    while sealed := await seal_next(conn):
        total += sealed
    return total


async def run_sealer(
    pool: asyncpg.Pool, stop: asyncio.Event, *, session_url: str | None = None
) -> None:
    """Seals on every append until stop."""
    await follow_log(pool, stop, CHECKPOINT, seal_next, session_url=session_url, pace=PACE)
