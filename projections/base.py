"""What a projection is: a named reader of the log that keeps its own read tables."""

from __future__ import annotations

from typing import Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from events.codec import RecordedEvent

# Anything queries can run on: a pool, a connection, or a connection borrowed from a pool.
Db = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy


class Projection(Protocol):
    """Applies events to read tables inside the runner's transaction; must tolerate re-apply."""

    name: str
    tables: tuple[str, ...]

    async def apply(self, conn: Db, recorded: RecordedEvent) -> None: ...
