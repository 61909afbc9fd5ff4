"""The API and projector of one test, in-process, on a real loopback port."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import asyncpg

from services.api.app import create_app
from services.api.server import start_api
from services.engine.projector import run_projector
from services.infra.auth import create_token
from services.infra.db import create_pool
from services.infra.embedded import free_port
from services.infra.settings import Settings


class Client:
    """An HTTP client speaking for one user; returns (status, parsed JSON or None)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None) -> None:
        self.session, self.base_url, self.token = session, base_url, token

    async def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        data: bytes | io.BytesIO | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        sent = dict(headers or {})
        if self.token is not None:
            sent["Authorization"] = f"Bearer {self.token}"
        async with self.session.request(
            method, self.base_url + path, json=json, data=data, headers=sent
        ) as response:
            body = await response.read()
            if response.content_type == "application/json" and body:
                return response.status, await response.json()
            return response.status, body.decode() or None

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.call("GET", path)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("POST", path, json, **kwargs)

    async def put(self, path: str, json: Any = None) -> tuple[int, Any]:
        return await self.call("PUT", path, json)

    async def delete(self, path: str) -> tuple[int, Any]:
        return await self.call("DELETE", path)


class Stack:
    def __init__(self, base_url: str, pool: asyncpg.Pool, session: aiohttp.ClientSession) -> None:
        self.base_url, self.pool, self.session = base_url, pool, session

    async def client(self, user: str, role: str) -> Client:
        return Client(self.session, self.base_url, await create_token(self.pool, user, role))

    def anonymous(self) -> Client:
        return Client(self.session, self.base_url, None)


@asynccontextmanager
async def running_stack(database_url: str, nats_url: str, **settings: Any) -> AsyncIterator[Stack]:
    """The API (with its real middlewares and settings) and a projector, until the block ends."""
    port = free_port()
    config = Settings(database_url=database_url, nats_url=nats_url, port=port, **settings)
    runner = await start_api(create_app(config), config)
    pool = await create_pool(database_url, max_size=4)
    stop = asyncio.Event()
    projector = asyncio.create_task(run_projector(pool, stop))
    try:
        async with aiohttp.ClientSession() as session:
            yield Stack(f"http://127.0.0.1:{port}", pool, session)
    finally:
        stop.set()
        await projector
        await runner.cleanup()
        await pool.close()
