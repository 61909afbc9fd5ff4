"""`deployx replay`: rebuild every read table from the event log alone."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import asyncpg

from projections import PROJECTIONS
from services.engine.projector import catch_up


async def rebuild(database_url: str, on_progress: Callable[[int], None] | None = None) -> int:
    """Empties the read tables and applies every event again, in one transaction.

    Readers see the old tables until the commit; projector replicas wait on the same locks.
    Returns how many events were applied (counted once per event, not per projection).
    """
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            for projection in PROJECTIONS:
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('projection:' || $1))", projection.name
                )
            tables = ", ".join(table for p in PROJECTIONS for table in p.tables)
            await conn.execute(f"TRUNCATE {tables}")
            names = [p.name for p in PROJECTIONS]
            await conn.execute("DELETE FROM checkpoints WHERE name = ANY ($1::text[])", names)
            # Rebuilt from nothing, a projection sets aside again whatever still fails.
            await conn.execute("DELETE FROM dead_letters WHERE consumer = ANY ($1::text[])", names)
            applied = await catch_up(conn, PROJECTIONS, batch_size=2000, on_applied=on_progress)
        return applied // len(PROJECTIONS)
    finally:
        await conn.close()


async def replay_command(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        total = int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()
    started = time.perf_counter()
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total * len(PROJECTIONS), unit="ev", unit_scale=True) as bar:
            applied = await rebuild(database_url, bar.update)
    else:
        applied = await rebuild(database_url)
    elapsed = time.perf_counter() - started
    rate = applied / elapsed if elapsed else 0.0
    print(
        f"replayed {applied} events into {len(PROJECTIONS)} projections "
        f"in {elapsed:.2f} s ({rate:,.0f} events/s)"
    )
