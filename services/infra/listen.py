"""LISTEN that outlives its connection: taken up again, with backoff, once the server is back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from services.infra.clock import wait_first
from services.infra.db import CONNECT_TIMEOUT, UNAVAILABLE, describe, reconnect_backoff

log = structlog.get_logger(__name__)

# A connection that died without a word (a network partition sends no reset) is found out by
# a query this often.
PROBE_EVERY = 30.0
PROBE_TIMEOUT = 5.0


class Listener:
    """LISTENs on one channel through a pool connection kept for it.

    NOTIFY is only ever a wake-up, and notifications sent while the connection is down are
    gone: on_gap is called when the loss is noticed and again once the LISTEN is back, so that
    the reader looks for itself (and finds the database away, or what it missed).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        channel: str,
        on_notify: Callable[[str], None],
        on_gap: Callable[[], None] = lambda: None,
        *,
        session_url: str | None = None,
    ) -> None:
        """session_url: LISTEN on a connection of its own there rather than one of the pool's
        (behind PgBouncer in transaction mode, a pooled connection cannot LISTEN)."""
        self._pool, self._channel, self._session_url = pool, channel, session_url
        self._on_notify, self._on_gap = on_notify, on_gap
        self._conn: PoolConnectionProxy | asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """LISTENs before it returns (a reader that looks next misses nothing), then keeps it."""
        await self._listen()
        self._keeper = asyncio.create_task(self._keep())

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        await self._release()

    async def _listen(self) -> None:
        self._lost.clear()
        if self._session_url is None:
            self._conn = await self._pool.acquire()
        else:
            self._conn = await asyncpg.connect(self._session_url, timeout=CONNECT_TIMEOUT)
        try:
            self._conn.add_termination_listener(self._on_terminated)
            await self._conn.add_listener(self._channel, self._notified)
        except BaseException:
            await self._release()
            raise

    async def _keep(self) -> None:
        backoff = reconnect_backoff()
        while True:
            await wait_first(self._lost, timeout=PROBE_EVERY)
            if not self._lost.is_set() and await self._alive():
                continue
            await self._release()
            log.warning("listen_lost", channel=self._channel)
            self._on_gap()
            while True:
                await asyncio.sleep(backoff.next())
                try:
                    await self._listen()
                    break
                except UNAVAILABLE as exc:
                    log.info("listen_retry", channel=self._channel, error=describe(exc))
            backoff.reset()
            log.info("listen_restored", channel=self._channel)
            self._on_gap()

    async def _alive(self) -> bool:
        conn = self._conn
        assert conn is not None
        try:
            await conn.execute("SELECT 1", timeout=PROBE_TIMEOUT)
        except UNAVAILABLE:
            with contextlib.suppress(*UNAVAILABLE):
                conn.terminate()  # without a word to the server: it may never answer
            return False
        return True

    async def _release(self) -> None:
        """Gives the connection back; a lost one the pool has taken back already."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(*UNAVAILABLE):
            conn.remove_termination_listener(self._on_terminated)
            await conn.remove_listener(self._channel, self._notified)
        with contextlib.suppress(*UNAVAILABLE):
            if isinstance(conn, PoolConnectionProxy):
                await self._pool.release(conn)
            else:
                await conn.close(timeout=PROBE_TIMEOUT)

    def _on_terminated(self, _conn: object) -> None:
        self._lost.set()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        assert isinstance(payload, str)
        self._on_notify(payload)
