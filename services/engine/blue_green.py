"""Deploying a new or changed projection: it rebuilds itself beside the live tables, in the
background, and is switched in once caught up (blue/green, docs/operations.md).

Each checkpoint row records the version of the projection that built the tables behind it. A
projector that finds another version there rebuilds that projection from the log into shadow
tables while it keeps the live ones moving, and swaps them in with the new version recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import structlog
from prometheus_client import Gauge

from projections.base import Projection
from services.engine.replay import REPLAY_LOCK, rebuild_on
from services.infra.clock import wait_first
from services.infra.store import Connection

log = structlog.get_logger(__name__)

REBUILD_EVENTS = Gauge(
    "deployx_projection_rebuild_events",
    "Events a projection's background rebuild has applied so far (0: none under way)",
    ["projection"],
)
REBUILD_BEHIND = Gauge(
    "deployx_projection_rebuild_behind_events",
    "Events of the log a projection's background rebuild has still to apply",
    ["projection"],
)
LIVE_VERSION = Gauge(
    "deployx_projection_version", "The projection version whose tables are live", ["projection"]
)
RETRY_AFTER = 30.0


async def stale(conn: Connection, projections: tuple[Projection, ...]) -> tuple[Projection, ...]:
    """The projections whose live tables another version built. Tables of no recorded version
    (a new database, or one from before versions were recorded) are taken as this one's."""
    for projection in projections:
        await conn.execute(
            """
            INSERT INTO checkpoints (name, projection_version) VALUES ($1, $2)
            ON CONFLICT (name) DO UPDATE SET projection_version =
                coalesce(checkpoints.projection_version, EXCLUDED.projection_version)
            """,
            projection.name,
            projection.version,
        )
    rows = await conn.fetch(
        "SELECT name, projection_version FROM checkpoints WHERE name = ANY ($1::text[])",
        [projection.name for projection in projections],
    )
    recorded: dict[str, int] = {row["name"]: row["projection_version"] for row in rows}
    for projection in projections:
        LIVE_VERSION.labels(projection.name).set(recorded[projection.name])
    return tuple(p for p in projections if recorded[p.name] != p.version)


async def upgrade(conn: Connection, projections: tuple[Projection, ...]) -> list[str]:
    """Rebuilds and swaps in each stale projection, one at a time; the names it rebuilt.
    Nothing when another process holds the replay lock (it is rebuilding them already)."""
    todo = await stale(conn, projections)
    if not todo:
        return []
    if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", REPLAY_LOCK):
        log.info("projection_rebuild_elsewhere", projections=[p.name for p in todo])
        return []
    try:
        todo = await stale(conn, todo)  # another process may have finished them meanwhile
        for projection in todo:
            await _rebuild(conn, projection)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", REPLAY_LOCK)
    return [projection.name for projection in todo]


async def _rebuild(conn: Connection, projection: Projection) -> None:
    name = projection.name
    total = int(await conn.fetchval("SELECT count(*) FROM events"))
    log.info("projection_rebuild_started", projection=name, version=projection.version)
    REBUILD_EVENTS.labels(name).set(0)
    REBUILD_BEHIND.labels(name).set(total)

    done = 0

    def progress(applied: int) -> None:
        nonlocal done
        done += applied
        REBUILD_EVENTS.labels(name).set(done)
        REBUILD_BEHIND.labels(name).set(max(total - done, 0))

    applied = await rebuild_on(conn, (projection,), progress)
    REBUILD_BEHIND.labels(name).set(0)
    LIVE_VERSION.labels(name).set(projection.version)
    log.info("projection_rebuilt", projection=name, version=projection.version, events=applied)


@asynccontextmanager
async def _session(pool: asyncpg.Pool, session_url: str | None) -> AsyncIterator[Connection]:
    # The rebuild sets search_path for its session: not through a pooler in transaction mode.
    if session_url is None:
        async with pool.acquire() as pooled:
            try:
                yield pooled
            except BaseException:
                # The projector's pool skips the reset query (the projector's own statements
                # leave no session state): a rebuild cut short may have left its search_path
                # or lock behind, so this connection goes, not back to the pool.
                pooled.terminate()
                raise
        return
    own = await asyncpg.connect(session_url)
    try:
        yield own
    finally:
        await own.close()


async def keep_versions(
    pool: asyncpg.Pool,
    stop: asyncio.Event,
    projections: tuple[Projection, ...],
    session_url: str | None = None,
) -> None:
    """The projector's background task: upgrade once at start, again after a failure."""
    while not stop.is_set():
        try:
            async with _session(pool, session_url) as conn:
                await upgrade(conn, projections)
            return
        except Exception:
            log.exception("projection_rebuild_failed")
            await wait_first(stop, timeout=RETRY_AFTER)
