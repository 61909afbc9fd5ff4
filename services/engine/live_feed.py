"""The live feed: one NATS subscription on the event stream, fanned out to browsers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import msgspec
import nats.aio.client
import nats.aio.msg
import nats.aio.subscription
import nats.errors

QUEUE_LIMIT = 1000


class _Head(msgspec.Struct):
    """The part of an envelope the feed needs to route it."""

    type: str
    position: int
    data: dict[str, object]
    metadata: dict[str, object] = {}


_head = msgspec.json.Decoder(_Head)
Item = tuple[bytes, str | None]  # a ready SSE message, and the user who owns it (None: everyone)


class LiveFeed:
    """One NATS subscription per API process, fanned out to every connected browser."""

    def __init__(self, pool: asyncpg.Pool, client: nats.aio.client.Client) -> None:
        self._pool, self._nc = pool, client
        self._listeners: set[asyncio.Queue[Item | None]] = set()
        self._owners: dict[str, str] = {}
        # Subscribed only while someone listens: every event of the log (100,000 results of
        # one run of a big fleet) would otherwise come to every API process for nobody, on
        # the connection its device registry hears heartbeats on.
        self._subscription: nats.aio.subscription.Subscription | None = None
        self._changing = asyncio.Lock()

    async def start(self) -> None:
        """Nothing to do until the first listener (kept for the app's start-up order)."""

    async def stop(self) -> None:
        self.end_streams()
        async with self._changing:
            await self._unsubscribe()

    async def _unsubscribe(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()

    def end_streams(self) -> None:
        """Tells every open stream to finish (on shutdown, so no handler holds it up)."""
        for queue in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[Item | None]]:
        """A queue of what happens from now on: once this returns, the server sends this
        process every event published after it."""
        queue: asyncio.Queue[Item | None] = asyncio.Queue(QUEUE_LIMIT)
        async with self._changing:
            if self._subscription is None:
                self._subscription = await self._nc.subscribe("deployx.events.>", cb=self._on_event)
                await self._nc.flush()  # the server has the subscription before we go on
            self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)
            async with self._changing:
                if not self._listeners:
                    await self._unsubscribe()

    async def _on_event(self, msg: nats.aio.msg.Msg) -> None:
        try:
            head = _head.decode(msg.data)
        except msgspec.DecodeError:
            return
        owner = await self._owner(head)
        message = (
            f"event: {head.type}\nid: {head.position}\n".encode() + b"data: " + msg.data + b"\n\n"
        )
        for queue in list(self._listeners):
            try:
                queue.put_nowait((message, owner))
            except asyncio.QueueFull:
                # A browser that cannot keep up is dropped; it reconnects and reloads.
                self._listeners.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)

    async def _owner(self, head: _Head) -> str | None:
        task_id = head.data.get("task_id")
        execution_id = head.data.get("execution_id")
        if not task_id and isinstance(execution_id, str):
            # An ad-hoc run, or a rerun of one: no task (task_id "" or null); its owner is
            # whoever asked for it, the user of its first event, ExecutionRequested.
            return await self._requester(head, execution_id)
        if not isinstance(task_id, str):
            return None  # device and group events are everyone's
        user = head.data.get("user_id")
        if head.type == "TaskCreated" and isinstance(user, str):
            self._remember(task_id, user)
        if task_id not in self._owners:
            row = await self._pool.fetchrow(
                "SELECT user_id FROM tasks WHERE id = $1::uuid", task_id
            ) or await self._pool.fetchrow(
                "SELECT data ->> 'user_id' AS user_id FROM events "
                "WHERE stream_id = $1 AND version = 1",
                task_id,
            )
            self._remember(task_id, row["user_id"] if row else "")
        return self._owners[task_id]

    async def _requester(self, head: _Head, execution_id: str) -> str:
        user = head.metadata.get("user")
        if head.type == "ExecutionRequested" and isinstance(user, str):
            self._remember(execution_id, user)
        if execution_id not in self._owners:
            # Looked up once per run, not once per event: the log has it even when the
            # executions table is behind.
            requester = await self._pool.fetchval(
                "SELECT metadata ->> 'user' FROM events WHERE stream_id = $1 AND version = 1",
                execution_id,
            )
            self._remember(execution_id, requester if isinstance(requester, str) else "")
        return self._owners[execution_id]

    def _remember(self, stream_id: str, owner: str) -> None:
        if len(self._owners) > 100_000:
            self._owners.clear()
        self._owners[stream_id] = owner
