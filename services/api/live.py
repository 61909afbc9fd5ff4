"""GET /api/live: the event stream as Server-Sent Events, each user seeing only their tasks'."""

from __future__ import annotations

import asyncio
from typing import Literal

from aiohttp import web

from services.api.keys import BEARER, LIVE, TOKENS, principal_of
from services.engine.live_feed import Item

routes = web.RouteTableDef()
KEEP_ALIVE_SECONDS = 15.0


@routes.get("/api/live")
async def live(request: web.Request) -> web.StreamResponse:
    principal = principal_of(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    tokens = request.app[TOKENS]
    # Listening before the first byte goes out: whatever the browser does once it sees the
    # stream open, the stream carries its events.
    async with request.app[LIVE].listen() as queue:
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        while True:
            seen, changed = tokens.generation, tokens.changed
            item = await _next(queue, changed)
            if tokens.generation != seen and await tokens.principal(request[BEARER]) is None:
                break  # this stream's token was revoked: the stream ends with it
            if item == "idle":
                await response.write(b": keep-alive\n\n")
                continue
            if item == "revoked":
                continue
            if item is None:
                break
            message, owner = item
            if owner is None or principal.may_see(owner):
                await response.write(message)
    return response


async def _next(
    queue: asyncio.Queue[Item | None], revoked: asyncio.Event
) -> Item | Literal["idle", "revoked"] | None:
    """The next item, or word that KEEP_ALIVE_SECONDS passed or some token was revoked."""
    getting = asyncio.ensure_future(queue.get())
    waiting = asyncio.ensure_future(revoked.wait())
    try:
        done, _ = await asyncio.wait(
            (getting, waiting), timeout=KEEP_ALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        waiting.cancel()
        if not getting.done():
            getting.cancel()  # an item it did not take stays in the queue
    if getting in done:
        return getting.result()
    return "revoked" if done else "idle"
