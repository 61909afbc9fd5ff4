"""Follows the projections' checkpoints: a write waits until the read tables show it."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Iterable

import asyncpg
import structlog

from events.codec import RecordedEvent
from services.infra.db import DATABASE_ERRORS, describe
from services.infra.listen import Listener
from services.infra.store import PROJECTED_CHANNEL, LogCursor

log = structlog.get_logger(__name__)


class ProjectionLagging(Exception):
    """The projector did not reach a write in time; the write itself is stored."""


class _Waiter:
    """A write waiting for `remaining` projections to reach its events."""

    __slots__ = ("future", "remaining")

    def __init__(self, future: asyncio.Future[None], remaining: int) -> None:
        self.future, self.remaining = future, remaining


class ProjectionWatcher:
    """Follows every projection's checkpoint through NOTIFY, with a poll as a safety net (also
    for the moments the LISTEN connection is down)."""

    def __init__(
        self, pool: asyncpg.Pool, poll_interval: float = 0.5, *, session_url: str | None = None
    ) -> None:
        self._pool = pool
        self._poll_interval = poll_interval
        self._cursors: dict[str, LogCursor] = {}
        # Per projection, the writes waiting for it, lowest target first: a checkpoint that
        # moves wakes exactly the writes it reached, and looks at no other.
        self._waiting: dict[str, list[tuple[LogCursor, int, _Waiter]]] = {}
        self._order = itertools.count()
        self._listener = Listener(pool, PROJECTED_CHANNEL, self._on_notify, session_url=session_url)
        self._poller: asyncio.Task[None] | None = None
        self._on_advance: list[Callable[[str], None]] = []

    def on_advance(self, callback: Callable[[str], None]) -> None:
        """Calls callback(projection name) whenever a projection moves forward."""
        self._on_advance.append(callback)

    async def start(self) -> None:
        await self._listener.start()
        await self._refresh()
        self._poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        await self._listener.stop()

    async def wait_for(
        self, recorded: Iterable[RecordedEvent], projections: Iterable[str], timeout: float
    ) -> None:
        target = max((LogCursor.of(event) for event in recorded), default=None)
        if target is None:
            return
        behind = [
            name for name in set(projections) if self._cursors.get(name, LogCursor()) < target
        ]
        if not behind:
            return
        waiter = _Waiter(asyncio.get_running_loop().create_future(), len(behind))
        for name in behind:
            heapq.heappush(self._waiting.setdefault(name, []), (target, next(self._order), waiter))
        try:
            async with asyncio.timeout(timeout):
                await waiter.future
        finally:
            waiter.remaining = -1  # gone: its heap entries are dropped when reached

    def _on_notify(self, payload: str) -> None:
        name, tx_id, position = payload.rsplit(":", 2)
        self._advance(name, LogCursor(int(tx_id), int(position)))

    def _advance(self, name: str, cursor: LogCursor) -> None:
        if cursor > self._cursors.get(name, LogCursor()):
            self._cursors[name] = cursor
            for callback in self._on_advance:
                callback(name)
            waiting = self._waiting.get(name, [])
            while waiting and waiting[0][0] <= cursor:
                waiter = heapq.heappop(waiting)[2]
                waiter.remaining -= 1
                if waiter.remaining == 0 and not waiter.future.done():
                    waiter.future.set_result(None)

    async def _refresh(self) -> None:
        rows = await self._pool.fetch(
            "SELECT name, tx_id::text::bigint AS tx_id, position FROM checkpoints"
        )
        for row in rows:
            self._advance(row["name"], LogCursor(row["tx_id"], row["position"]))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                await self._refresh()
            except DATABASE_ERRORS as exc:
                log.warning("projection_watch_failed", error=describe(exc))
