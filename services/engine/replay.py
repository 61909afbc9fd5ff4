"""`deployx replay`: rebuild read tables from the event log alone, beside the live ones.

Readers and the projector keep using the live tables while the copies fill; one short
transaction then swaps them in (services/engine/shadow.py, docs/operations.md).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Sequence

import asyncpg
import structlog

from events.codec import RecordedEvent
from projections import PROJECTIONS
from projections.base import Db, Projection
from projections.counts import REFRESH, counts_partly
from services.engine import bulk_rebuild, shadow
from services.engine.projector import catch_up
from services.infra.store import Connection

log = structlog.get_logger(__name__)

# One rebuild at a time per database (`deployx replay` or a projector's background rebuild).
REPLAY_LOCK = "deployx:replay"
# A rebuild reads and writes in bigger transactions than the live projector: nobody waits on
# the copies, and each statement's fixed cost is spread over more rows.
REPLAY_BATCH = 10_000
# What the swap may make a reader wait: a lock not had within this is let go and tried again.
SWAP_LOCK_TIMEOUT_MS = 50
SWAP_ATTEMPTS = 200
# Catch the copies up outside the swap until at most this many events are left for it.
SWAP_AT_MOST = 500


class Took:
    """Seconds each step of a rebuild took, for its log line: took("step") ends a step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._since = time.perf_counter()

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = round(self.seconds.get(step, 0.0) + now - self._since, 3)
        self._since = now


class UnknownProjection(ValueError):
    """--projection named none of the projections."""


class Rebuilding:
    """A projection under its rebuild name: its own checkpoint, lock and dead letters."""

    def __init__(self, projection: Projection) -> None:
        self.live = projection
        self.name = shadow.shadow_name(projection)
        self.tables = projection.tables
        self.version = projection.version

    async def apply(self, conn: Db, recorded: RecordedEvent) -> None:
        await self.live.apply(conn, recorded)

    async def apply_batch(self, conn: Db, batch: Sequence[RecordedEvent]) -> None:
        await self.live.apply_batch(conn, batch)


def choose(names: Sequence[str] | None) -> tuple[Projection, ...]:
    if not names:
        return PROJECTIONS
    known = {projection.name: projection for projection in PROJECTIONS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UnknownProjection(
            f"projection: no projection is called {', '.join(unknown)}; "
            f"the projections are {', '.join(known)}"
        )
    return tuple(known[name] for name in dict.fromkeys(names))


async def rebuild(
    database_url: str,
    on_progress: Callable[[int], None] | None = None,
    projections: tuple[Projection, ...] = PROJECTIONS,
) -> int:
    """Rebuilds projections into shadow tables, then swaps them in; returns the events applied
    (counted once per event, not per projection)."""
    conn = await asyncpg.connect(database_url)
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", REPLAY_LOCK):
            raise RuntimeError("another replay is running on this database; wait for it")
        return await rebuild_on(conn, projections, on_progress)
    finally:
        await conn.close()


async def rebuild_on(
    conn: Connection,
    projections: tuple[Projection, ...],
    on_progress: Callable[[int], None] | None = None,
) -> int:
    copies = tuple(Rebuilding(projection) for projection in projections)
    took = Took()
    folding = bulk_rebuild.folds(projections, await bulk_rebuild.zone_of(conn))
    folded_tables = [table for f in folding for table in f.projection.tables]
    await shadow.create(conn, projections, keys_later=folded_tables)
    await conn.execute(f"SET search_path = {shadow.SHADOW}, public")
    try:
        # The bulk folded in memory and copied in; then the projections without a fold (or
        # whose fold the tables refused) from the start, and the others from where it ended.
        took("create")
        folded, read = await bulk_rebuild.load(conn, folding, on_progress, took)
        applied = read * len(folded)
        await shadow.add_keys(conn, folded_tables)
        took("keys")
        applied += await catch_up(conn, copies, REPLAY_BATCH, on_applied=on_progress)
        took("statements")
        await shadow.add_indexes(conn, projections)
        took("indexes")
        # The log moved on meanwhile: close the gap without holding anyone up, then swap.
        while (more := await catch_up(conn, copies, REPLAY_BATCH, on_progress)) > SWAP_AT_MOST:
            applied += more
        took("catch_up")
        applied += more + await _swap(conn, projections, copies, on_progress)
        took("swap")
    finally:
        await conn.execute("RESET search_path")
    if counts_partly(table for projection in projections for table in projection.tables):
        # Live tables the rebuild did not swap moved on meanwhile; count them together again.
        await conn.execute(REFRESH)
    await shadow.drop(conn)
    took("drop")
    log.info(
        "projections_rebuilt",
        projections=[p.name for p in projections],
        folded=folded,
        events=applied,
        seconds=took.seconds,
    )
    return applied // len(projections)


async def _swap(
    conn: Connection,
    projections: tuple[Projection, ...],
    copies: tuple[Rebuilding, ...],
    on_progress: Callable[[int], None] | None,
) -> int:
    """The last events into the copies and the copies in, in one transaction; tried again
    (after a pause) while a lock is not had within SWAP_LOCK_TIMEOUT_MS."""
    for attempt in range(SWAP_ATTEMPTS):
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = {SWAP_LOCK_TIMEOUT_MS}")
                for projection in projections:
                    # The live projector's lock: it pauses for the swap and then carries on
                    # from the copies' checkpoint.
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext('projection:' || $1))",
                        projection.name,
                    )
                applied = await catch_up(conn, copies, REPLAY_BATCH, on_progress)
                await shadow.swap(conn, projections)
        except asyncpg.LockNotAvailableError:
            log.info("replay_swap_waiting", attempt=attempt + 1)
            await asyncio.sleep(min(0.01 * (attempt + 1), 0.5))
            continue
        await shadow.drop_retired(conn)
        return applied
    raise RuntimeError(
        f"replay: could not take the read tables' locks within {SWAP_LOCK_TIMEOUT_MS} ms "
        f"in {SWAP_ATTEMPTS} attempts; a long transaction is holding them"
    )


async def replay_command(database_url: str, names: Sequence[str] | None = None) -> None:
    projections = choose(names)
    conn = await asyncpg.connect(database_url)
    try:
        total = int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()
    started = time.perf_counter()
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total * len(projections), unit="ev", unit_scale=True) as bar:
            applied = await rebuild(database_url, bar.update, projections)
    else:
        applied = await rebuild(database_url, projections=projections)
    elapsed = time.perf_counter() - started
    rate = applied / elapsed if elapsed else 0.0
    print(
        f"replayed {applied} events into {len(projections)} projections "
        f"in {elapsed:.2f} s ({rate:,.0f} events/s)"
    )
