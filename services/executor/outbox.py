"""A run's sending, in a task of its own: jobs, resends and cancels go out in the order they
were handed over, while the run goes on recording the results that come back meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable

Send = Callable[[], Awaitable[None]]


class Outbox:
    """Sends one at a time, in order. What a send raises fails the outbox: `check`, `put` and
    `drain` raise it in the run, and `on_failure` wakes the run to find out."""

    def __init__(self, on_failure: Callable[[], None]) -> None:
        self._sends: deque[Send] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._on_failure = on_failure

    def check(self) -> None:
        """Raises what a send raised, if one did."""
        worker = self._worker
        if worker is not None and worker.done() and not worker.cancelled():
            failure = worker.exception()
            if failure is not None:
                raise failure

    def put(self, send: Send) -> None:
        self.check()
        self._sends.append(send)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
            self._worker.add_done_callback(self._ended)

    async def drain(self) -> None:
        """Until everything handed over has gone out."""
        while (worker := self._worker) is not None and not worker.done():
            await worker
        self.check()

    async def close(self) -> None:
        """Stops sending: what is not out yet stays unsent."""
        self._sends.clear()
        worker, self._worker = self._worker, None
        if worker is None:
            return
        worker.cancel()
        with contextlib.suppress(BaseException):  # its failure is the run's no longer
            await worker

    async def _work(self) -> None:
        while self._sends:
            await self._sends[0]()
            self._sends.popleft()

    def _ended(self, worker: asyncio.Task[None]) -> None:
        if not worker.cancelled() and worker.exception() is not None:
            self._on_failure()
