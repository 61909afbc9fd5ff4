"""`deployx up` says it is up only once it is: the API answers and every demo agent is heard."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp
import asyncpg

from services.api.server import api_url
from services.cli.lifecycle import Service
from services.infra.clock import wait_first
from services.infra.db import UNAVAILABLE, open_pool
from services.infra.settings import Settings

POLL = 0.1


def announce_when_ready(devices: Sequence[str], banner: str) -> Service:
    """A service that prints banner once /readyz answers 200 and each device has a presence
    row, so that a run started on local-1 right after it reaches that agent."""

    async def announce(settings: Settings, stop: asyncio.Event) -> None:
        pool = await open_pool(settings, max_size=1)
        try:
            async with aiohttp.ClientSession() as session:
                while not stop.is_set() and not await _ready(session, settings, pool, devices):
                    await wait_first(stop, timeout=POLL)
            if not stop.is_set():
                print(banner, flush=True)
            await stop.wait()
        finally:
            await pool.close()

    return announce


async def _ready(
    session: aiohttp.ClientSession, settings: Settings, pool: asyncpg.Pool, devices: Sequence[str]
) -> bool:
    try:
        async with session.get(f"{api_url(settings)}readyz", ssl=False) as response:
            if response.status != 200:
                return False
        heard = await pool.fetchval(
            "SELECT count(*) FROM device_presence WHERE device_id = ANY($1::text[])",
            list(devices),
        )
    except aiohttp.ClientError:
        return False
    except UNAVAILABLE:
        return False
    return bool(heard == len(devices))
