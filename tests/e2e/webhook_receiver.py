"""A webhook receiver for the tests: a real aiohttp server on 127.0.0.1 that records every
request and answers as each path's plan says (a status, or no answer at all)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from services.infra.embedded import free_port

HANG = 0  # a plan's answer: hold the request open without answering


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived
    status: int  # what the receiver answered (HANG: nothing)

    @property
    def delivery(self) -> str:
        return self.headers["X-DeployX-Delivery"]


Plan = Callable[[str, list["Received"]], int]  # (delivery id, earlier requests) -> answer


class Receiver:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.got: list[Received] = []
        self.plans: dict[str, Plan] = {}
        self.closing = asyncio.Event()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    def at(self, path: str) -> list[Received]:
        return [request for request in self.got if request.path == path]

    def answered(self, path: str, status: int = 200) -> list[Received]:
        return [request for request in self.at(path) if request.status == status]

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["name"]
        body = await request.read()
        delivery = request.headers.get("X-DeployX-Delivery", "")
        earlier = [r for r in self.at(path) if r.delivery == delivery]
        plan = self.plans.get(path)
        status = plan(delivery, earlier) if plan is not None else 200
        self.got.append(Received(path, dict(request.headers), body, time.monotonic(), status))
        if status == HANG:
            await self.closing.wait()
            return web.Response(status=504)
        return web.Response(status=status, text="" if status < 300 else "receiver says no")


@asynccontextmanager
async def running_receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    receiver = Receiver(f"http://127.0.0.1:{port}")
    app = web.Application()
    app.router.add_post("/{name}", receiver.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield receiver
    finally:
        receiver.closing.set()
        await runner.cleanup()
