"""What a projection is: a named reader of the log that keeps its own read tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from events.codec import RecordedEvent

# Anything queries can run on: a pool, a connection, or a connection borrowed from a pool.
Db = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy


class Projection(Protocol):
    """Applies events to read tables inside the runner's transaction; must tolerate re-apply.

    apply_batch takes a batch of the log in order and must leave the tables exactly as apply()
    of each event in turn would; apply() alone is what the dead-letter path uses, one event in
    its own savepoint. `version` changes whenever the tables' contents would: a projector
    that finds another version recorded beside the checkpoint rebuilds the tables.
    """

    name: str
    tables: tuple[str, ...]
    version: int

    async def apply(self, conn: Db, recorded: RecordedEvent) -> None: ...

    async def apply_batch(self, conn: Db, batch: Sequence[RecordedEvent]) -> None: ...
