"""Reads of single tasks by id, batched: the requests of one moment share one query.

Every write answers with its task as the read table shows it (read-your-writes); under load
many answers are due at once, and one `WHERE id = ANY(...)` on one connection replaces a pool
checkout, a query and a connection reset per request.
"""

from __future__ import annotations

import asyncio

import asyncpg

from projections.task_views import Task, get_tasks
from services.infra.clock import more_within

# The most ids one query takes.
MAX_BATCH = 500
# How long the reader keeps its connection after its last batch, for the next one (the answers
# of a wave of writes come together): a checkout and reset query per wave saved.
LINGER = 0.1


class TaskReads:
    """get(id) for many callers; while one query runs, the next batch gathers."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._waiting: dict[str, list[asyncio.Future[Task | None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._more = asyncio.Event()  # set on every get: wakes a lingering reader
        self.queries = 0  # how many queries served how many reads: for tests and benchmarks

    async def get(self, task_id: str) -> Task | None:
        future: asyncio.Future[Task | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(task_id, []).append(future)
        self._more.set()
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read())
        return await future

    async def _read(self) -> None:
        while self._waiting:
            batch = self._next_batch()
            try:
                # One connection while batches keep coming: a checkout and a reset per burst.
                async with self._pool.acquire() as conn:
                    while True:
                        found = await get_tasks(conn, list(batch))
                        self.queries += 1
                        for task_id, futures in batch.items():
                            for future in futures:
                                if not future.done():
                                    future.set_result(found.get(task_id))
                        if not await more_within(self._more, self._waiting, LINGER):
                            break
                        batch = self._next_batch()
            except Exception as exc:  # each caller gets the error its own query would have
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)

    def _next_batch(self) -> dict[str, list[asyncio.Future[Task | None]]]:
        ids = list(self._waiting)[:MAX_BATCH]
        return {task_id: self._waiting.pop(task_id) for task_id in ids}
