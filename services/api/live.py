"""GET /api/live: the event stream as Server-Sent Events, each user seeing only their tasks'."""

from __future__ import annotations

import asyncio

from aiohttp import web

from services.api.keys import LIVE, principal_of

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
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    with request.app[LIVE].listen() as queue:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEP_ALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if item is None:
                break
            message, owner = item
            if owner is None or principal.may_see(owner):
                await response.write(message)
    return response
