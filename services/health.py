"""GET /healthz and /readyz on DEPLOYX_HEALTH_PORT, for services that have no HTTP API."""

from __future__ import annotations

import asyncio

import asyncpg
import nats.aio.client
from aiohttp import web

from services.bus import connect_nats
from services.db import create_pool
from services.settings import Settings


async def readiness(
    pool: asyncpg.Pool, client: nats.aio.client.Client
) -> tuple[bool, dict[str, object]]:
    """Whether PostgreSQL answers and NATS is connected, with the reason for each that is not."""
    checks = {"database": "ok", "nats": "ok"}
    try:
        await pool.fetchval("SELECT 1", timeout=2)
    except Exception as exc:  # any failure means not ready, and says why
        checks["database"] = f"unavailable: {exc}"
    if not client.is_connected:
        checks["nats"] = "unavailable: not connected"
    ready = all(value == "ok" for value in checks.values())
    return ready, {"status": "ready" if ready else "not_ready", "checks": checks}


async def serve_health(settings: Settings, stop: asyncio.Event) -> None:
    """Live while the event loop answers; ready while PostgreSQL and NATS are reachable."""
    pool = await create_pool(settings.database_url, max_size=1)
    client = await connect_nats(settings.nats_url, "deployx-health")

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        ready, body = await readiness(pool, client)
        return web.json_response(body, status=200 if ready else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    assert settings.health_port is not None
    await web.TCPSite(runner, "0.0.0.0", settings.health_port).start()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await client.drain()
        await pool.close()
