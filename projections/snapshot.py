"""Several reads that must agree (a page and its total): one read-only snapshot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from projections.base import Db


@asynccontextmanager
async def one_snapshot(db: Db) -> AsyncIterator[asyncpg.Connection | PoolConnectionProxy]:
    """A connection whose reads all see the same committed state (REPEATABLE READ, read only);
    one already in a transaction reads in that."""
    if isinstance(db, asyncpg.Pool):
        async with (
            db.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield conn
    elif db.is_in_transaction():
        yield db
    else:
        async with db.transaction(isolation="repeatable_read", readonly=True):
            yield db
