"""Several reads that must agree (a page and its total): one read-only snapshot."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from projections.base import Db

T = TypeVar("T")
Reader = Callable[[asyncpg.Connection | PoolConnectionProxy], Awaitable[T]]

# A column's type changed under a prepared statement (a migration, or an operator's fix).
# asyncpg retries such a query itself, but not inside a transaction: the snapshot is retried
# here, once, after asyncpg has dropped the stale statements.
STALE_PLAN = (asyncpg.InvalidCachedStatementError, asyncpg.OutdatedSchemaCacheError)


async def in_one_snapshot(db: Db, read: Reader[T]) -> T:
    """`read` on a connection whose reads all see the same committed state (REPEATABLE READ,
    read only); one already in a transaction reads in that, and is not retried."""
    if not isinstance(db, asyncpg.Pool) and db.is_in_transaction():
        return await read(db)
    try:
        return await _read_once(db, read)
    except STALE_PLAN:
        return await _read_once(db, read)


async def _read_once(db: Db, read: Reader[T]) -> T:
    if isinstance(db, asyncpg.Pool):
        async with (
            db.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await read(conn)
    async with db.transaction(isolation="repeatable_read", readonly=True):
        return await read(db)
